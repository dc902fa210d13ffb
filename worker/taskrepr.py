"""What Celery shows of a task's arguments: ids, never payloads or card data.

Celery copies a message's ``argsrepr``/``kwargsrepr`` headers into the worker's "Received task"
log line, its ``task-received`` event (what Flower displays), ``celery inspect active`` and its
failure logs. Our own producers set them to ``order_pk=123`` (``ids_argsrepr``), but billing
publishes ``flexmit.intake.declines`` with its own client, whose default ``argsrepr`` is the
whole decline. So the worker never trusts the header: ``SafeRequest`` recomputes both from the
arguments themselves (see ``task_annotations`` in worker/celeryconfig.py).
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from celery.worker.request import Request

from worker.pan import redact_text

INTAKE_TASK = "flexmit.intake.declines"
SHOWN_ORDER_IDS = 5
SHOWN_IDS = 20
_PLAIN_ID = re.compile(r"^[\w.:#/@+-]{1,100}$")
# The one argument of each id-carrying task, named as in its signature (tasks/*.py).
ID_LABELS = {"flexmit.webhook": "event_pk", "flexmit.push": "push_pk"}


def ids_argsrepr(task: str, pk: int | list[int]) -> str:
    """``order_pk=123`` (or ``event_pk=7`` for a webhook, ``order_pks=[1, 2]`` for a batch):
    the argsrepr a producer sends."""
    if isinstance(pk, list):
        return f"order_pks={_value(pk)}"
    return f"{ID_LABELS.get(task, 'order_pk')}={int(pk)}"


def _value(value: Any) -> str:
    # Numbers and flags are ids and counters; anything else might carry customer data.
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, list) and all(type(v) is int for v in value):  # a batch of ids
        more = f", +{len(value) - SHOWN_IDS}" if len(value) > SHOWN_IDS else ""
        return f"[{', '.join(map(str, value[:SHOWN_IDS]))}{more}]"
    return f"<{type(value).__name__}>"


def _order_id(raw: Any) -> str:
    text = raw if isinstance(raw, str) else ""
    return text if _PLAIN_ID.match(text) and redact_text(text) == text else "<withheld>"


def declines_argsrepr(body: Any) -> str:
    """``declines=2 orderIds=[inv-1, inv-2]`` for an intake body; nothing else of the decline."""
    items = body.get("declines") if isinstance(body, dict) and "declines" in body else [body]
    if not isinstance(items, list):
        return "declines=<malformed>"
    ids = [_order_id(item.get("orderId") if isinstance(item, dict) else None) for item in items]
    more = f", +{len(ids) - SHOWN_ORDER_IDS}" if len(ids) > SHOWN_ORDER_IDS else ""
    return f"declines={len(ids)} orderIds=[{', '.join(ids[:SHOWN_ORDER_IDS])}{more}]"


def _param_names(task: Any) -> list[str]:
    try:
        params = inspect.signature(task.run).parameters.values()
    except (TypeError, ValueError, AttributeError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def safe_reprs(name: str, task: Any, args: Any, kwargs: Any) -> tuple[str, str]:
    """``(argsrepr, kwargsrepr)`` for a task call, built only from ids and counters."""
    args = list(args) if isinstance(args, list | tuple) else [args]
    kwargs = kwargs if isinstance(kwargs, dict) else {}
    if name == INTAKE_TASK:
        body = args[0] if args else kwargs.get("body")
        return declines_argsrepr(body), "{}"
    names = _param_names(task)
    shown = [f"{names[i] if i < len(names) else f'arg{i}'}={_value(v)}"
             for i, v in enumerate(args)]
    kw = ", ".join(f"{k!s}={_value(v)}" for k, v in kwargs.items())
    return ", ".join(shown), "{" + kw + "}"


class SafeRequest(Request):
    """A worker request whose argsrepr/kwargsrepr are recomputed, whatever the message said."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        argsrepr, kwargsrepr = safe_reprs(self._type, self._task, self._args, self._kwargs)
        self._argsrepr, self._kwargsrepr = argsrepr, kwargsrepr
        # The pool child logs failures and successes from this dict, not from the attributes.
        self._request_dict["argsrepr"] = argsrepr
        self._request_dict["kwargsrepr"] = kwargsrepr

    def info(self, safe: bool = False) -> dict[str, Any]:
        """What ``celery inspect active/reserved`` (and Flower's worker page) show: never args."""
        return dict(super().info(safe=True))
