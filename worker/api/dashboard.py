"""``GET /dashboard``: a read-only status page for operators (plain HTML, no script, no CDN).

Protected by the intake token, given either as a bearer (``Authorization: Bearer``) or, so a
browser can open it directly, as the password of HTTP Basic auth (any user name): the browser
asks for it once. ``GET /dashboard/data`` answers the same figures as JSON. The page reloads
itself every 10 s. Every figure comes from ``worker.opsview``, as ``flexmit status`` / ``report``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Sequence
from datetime import datetime
from html import escape
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.responses import HTMLResponse

from worker import opsview
from worker.api.deps import RuntimeDep, get_rt
from worker.api.views import iso
from worker.orders import State, as_utc
from worker.runtime import Runtime

REFRESH_S = 10
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _presented_token(header: str) -> str | None:
    """The token in a Bearer header, or the password of a Basic one."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip()
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


def require_operator(request: Request, rt: Annotated[Runtime, Depends(get_rt)]) -> None:
    """401 (with a Basic challenge, so browsers prompt) unless the intake token is presented."""
    expected = rt.settings.intake_token
    token = _presented_token(request.headers.get("authorization", ""))
    if (expected is None or token is None
            or not hmac.compare_digest(token.encode(), expected.get_secret_value().encode())):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "the intake token is required",
                            headers={"WWW-Authenticate": 'Basic realm="flexmit", charset="UTF-8"'})


router = APIRouter(prefix="/dashboard", dependencies=[Depends(require_operator)])


def as_json(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot with datetimes as ISO strings."""
    oldest = {state: None if found is None else {"orderId": found[0], "since": iso(found[1])}
              for state, found in snap["oldest"].items()}
    failures = [{**f, "since": iso(f["since"])} for f in snap["failures"]]
    return {**snap, "now": iso(snap["now"]), "oldest": oldest, "failures": failures}


@router.get("/data")
def dashboard_data(rt: RuntimeDep) -> dict[str, Any]:
    """The dashboard's figures as JSON."""
    return as_json(opsview.snapshot(rt))


@router.get("", response_class=HTMLResponse)
def dashboard(rt: RuntimeDep) -> HTMLResponse:
    """The status page: today's funnel, orders by state, rescued, oldest waiting, failures."""
    return HTMLResponse(render(opsview.snapshot(rt)), headers=HEADERS)


def _when(value: datetime) -> str:
    """UTC to the second, for people (the JSON keeps full ISO precision)."""
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%SZ")


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _rows(pairs: Sequence[tuple[str, str, object]]) -> str:
    """``<tr data-key=…><th>label</th><td>value</td></tr>`` for each (key, label, value)."""
    return "".join(f'<tr data-key="{_e(k)}"><th>{_e(label)}</th>'
                   f'<td{" class=zero" if v == 0 else ""}>{_e(v)}</td></tr>'
                   for k, label, v in pairs)


def _funnel(funnel: dict[str, Any]) -> str:
    rows = _rows([(k, k.replace("_", " "), funnel[k]) for k in opsview.FUNNEL_ROWS])
    rescued = opsview.money_text(funnel["rescued"])
    return (f'<section><h2>Today&#39;s funnel <small>{_e(funnel["day"])}</small></h2>'
            f'<p class="big">Amount rescued: <strong id="rescued">{_e(rescued)}</strong>'
            f' &middot; rescue rate <strong id="rescue-rate">'
            f'{_e(format(funnel["rescue_rate"], ".1%"))}</strong></p>'
            f'<table id="funnel">{rows}</table></section>')


def _states(by_state: dict[str, int]) -> str:
    pairs = [(s.value, s.value, by_state.get(s, 0)) for s in State]
    pairs.append(("total", "total", sum(by_state.values())))
    return (f'<section><h2>Orders by state</h2><table id="by-state">{_rows(pairs)}</table>'
            "</section>")


def _oldest(snap: dict[str, Any]) -> str:
    items = []
    for state, found in snap["oldest"].items():
        if found is None:
            text = "none"
        else:
            age = opsview.age_text((snap["now"] - found[1]).total_seconds())
            text = f"{age} ({found[0]}, since {_when(found[1])})"
        items.append((state, f"oldest {state}", text))
    items.append(("due", "due now (QUEUED/UNKNOWN)", snap["due_now"]))
    box = snap["outbox"]
    items.append(("pushes", "billing pushes undelivered (parked)",
                  f'{box["pushes_undelivered"]} ({box["pushes_parked"]})'))
    items.append(("webhooks", "webhook events unprocessed", box["webhooks_unprocessed"]))
    return f'<section><h2>Waiting</h2><table id="oldest">{_rows(items)}</table></section>'


def _failures(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return '<section><h2>Recent failures</h2><p id="failures">none</p></section>'
    head = "".join(f"<th>{h}</th>" for h in ("order", "state", "since", "amount", "checks",
                                              "error"))
    body = "".join(
        f'<tr><td>{_e(f["orderId"])}</td><td>{_e(f["state"])}</td><td>{_e(_when(f["since"]))}'
        f'</td><td>{_e(f["amount"])}</td><td>{_e(f["checks"])}</td><td>{_e(f["error"])}</td>'
        "</tr>" for f in failures)
    return (f'<section><h2>Recent failures <small>FAILED and UNKNOWN, newest first</small>'
            f'</h2><table id="failures" class="wide"><tr>{head}</tr>{body}</table></section>')


STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .2em}h2{font-size:1.1em;margin:1.2em 0 .4em}
small{color:#666;font-weight:normal}.big{font-size:1.2em}
main{display:flex;flex-wrap:wrap;gap:0 3em}section{min-width:16em}
table{border-collapse:collapse;background:#fff}th,td{padding:.25em .7em;border:1px solid #ddd;
text-align:left}td{text-align:right;font-variant-numeric:tabular-nums}
table.wide td,#oldest td{text-align:left}#failures-wrap{flex-basis:100%}
td.zero{color:#aaa}
"""


def render(snap: dict[str, Any]) -> str:
    """The whole page for one snapshot (every value escaped)."""
    local = snap["now"].astimezone(ZoneInfo(snap["tz"])).strftime("%Y-%m-%d %H:%M:%S")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_S}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>flexmit status</title><style>{STYLE}</style></head><body>"
        f'<h1>flexmit status</h1><p><small>as of <time id="as-of">{_e(_when(snap["now"]))}</time>'
        f" = {_e(local)} {_e(snap['tz'])} (the merchant's day)"
        f"; refreshes every {REFRESH_S} s; read-only</small></p>"
        f"<main>{_funnel(snap['funnel'])}{_states(snap['by_state'])}{_oldest(snap)}"
        f'<div id="failures-wrap">{_failures(snap["failures"])}</div></main></body></html>'
    )
