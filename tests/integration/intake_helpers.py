"""Helpers for the intake-door tests: the table of bad declines, batch files, the card-number
scan of everything stored, the CLI runner and the raw Celery message billing publishes."""

from __future__ import annotations

import base64
import csv
import json
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner, Result
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import TEST_TOKEN
from tests.factories import REMOVE, make_valid_decline
from worker.cli import main
from worker.db.models import Base, RejectedDecline
from worker.runtime import Runtime, reset_runtime
from worker.settings import Settings, get_settings

MERCHANT_TZ = "America/New_York"
# The instant every table case is judged at: today, 15:00 UTC = 10:00 or 11:00 in New York, so
# UTC and the merchant agree on the date and "00:30 UTC today" is yesterday evening in New York.
NOW = datetime.combine(datetime.now(UTC).date(), time(15, 0), tzinfo=UTC)
VISA, MASTERCARD, AMEX = "4111111111111111", "5555555555554444", "378282246310005"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def iso(moment: datetime) -> str:
    """UTC ISO 8601 with a Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Case:
    """One bad decline: what to change in a valid one, the field the error must name."""

    name: str
    changes: dict[str, Any]
    field: str
    pan: str | None = None
    csv: bool = True  # False where a CSV cell cannot carry the bad value (cells are text)
    extra: dict[str, Any] = field(default_factory=dict)

    def decline(self) -> dict[str, Any]:
        """A fresh decline (its own orderId unless the case changes it) with the fault."""
        changes = {"orderId": f"bad-{uuid.uuid4().hex[:12]}", **self.changes}
        return make_valid_decline(NOW, **changes)


REQUIRED = [
    "orderId", "declinedAt", "amount", "currency", "isRecurring",
    "decline", "decline.pspTransactionId", "decline.responseCode",
    "card", "card.token", "card.expMonth", "card.expYear", "payer", "payer.email",
    "billingAddress", "billingAddress.firstName", "billingAddress.lastName",
    "billingAddress.addressLine1", "billingAddress.city", "billingAddress.zipCode",
    "billingAddress.countryCode",
    "billingAddress.state",  # required when countryCode is US, as it is here
    "subscription.id", "subscription.interval",  # required when isRecurring is true
]

CASES: list[Case] = [
    Case("stale_yesterday_in_new_york", {"declinedAt": iso(NOW.replace(hour=0, minute=30))},
         "declinedAt"),
    Case("stale_two_days", {"declinedAt": iso(NOW - timedelta(days=2))}, "declinedAt"),
    Case("future_declined_at", {"declinedAt": iso(NOW + timedelta(hours=2))}, "declinedAt"),
    Case("declined_at_without_zone", {"declinedAt": NOW.strftime("%Y-%m-%dT%H:%M:%S")},
         "declinedAt"),
    Case("amount_decimal", {"amount": 19.99}, "amount"),
    Case("amount_string", {"amount": "1999"}, "amount", csv=False),
    Case("amount_zero", {"amount": 0}, "amount"),
    Case("amount_negative", {"amount": -5}, "amount"),
    Case("amount_bool", {"amount": True}, "amount"),
    Case("currency_lowercase", {"currency": "usd"}, "currency"),
    Case("currency_not_iso", {"currency": "usd1"}, "currency"),
    Case("currency_xxx_no_currency", {"currency": "XXX"}, "currency"),
    *[Case(f"missing_{path.replace('.', '_')}", {path: REMOVE}, path) for path in REQUIRED],
    Case("token_blank", {"card.token": "  "}, "card.token"),
    Case("recurring_not_bool", {"isRecurring": "yes"}, "isRecurring"),
    Case("email_malformed", {"payer.email": "ada.example.com"}, "payer.email"),
    Case("country_not_alpha2", {"billingAddress.countryCode": "USA"},
         "billingAddress.countryCode"),
    Case("order_id_bad_chars", {"orderId": "inv 2026/11"}, "orderId"),
    Case("exp_month_13", {"card.expMonth": 13}, "card.expMonth"),
    Case("expiry_10_days", {"expiryDateUtc": iso(NOW + timedelta(days=10))}, "expiryDateUtc"),
    Case("expiry_just_under_14_days",
         {"expiryDateUtc": iso(NOW + timedelta(days=14) - timedelta(minutes=1))},
         "expiryDateUtc"),
    Case("card_expired", {"card.expYear": NOW.year - 1}, "card.expYear"),
    Case("pan_as_token", {"card.token": VISA}, "card.token", pan=VISA),
    Case("pan_unknown_top_level_field", {"note": f"card {MASTERCARD} declined"}, "note",
         pan=MASTERCARD),
    Case("pan_in_address_with_spaces", {"billingAddress.addressLine1": "4111 1111 1111 1111"},
         "billingAddress.addressLine1", pan="4111 1111 1111 1111"),
    Case("pan_as_json_number", {"payer.id": int(VISA)}, "payer.id", pan=VISA),
    Case("pan_amex_dashed_in_description", {"decline.responseDescription": "3782-822463-10005"},
         "decline.responseDescription", pan="3782-822463-10005"),
    Case("pan_in_phone", {"payer.phone": AMEX}, "payer.phone", pan=AMEX),
    Case("pan_as_a_key", {VISA: "x"}, "[PAN REDACTED]", pan=VISA),
]


# ---------------------------------------------------------------- batch files


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"card": {"token": t}}`` -> ``{"card.token": t}`` (the CSV column names)."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_csv(path: Path, declines: list[dict[str, Any]]) -> Path:
    """A daily batch as CSV: dotted header, one row per decline."""
    rows = [flatten(d) for d in declines]
    columns = list(dict.fromkeys(name for row in rows for name in row))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row.get(name)) for name in columns])
    return path


def write_jsonl(path: Path, declines: list[dict[str, Any]]) -> Path:
    """A daily batch as JSON Lines."""
    path.write_text("".join(json.dumps(d) + "\n" for d in declines), encoding="utf-8")
    return path


def write_batch(path: Path, declines: list[dict[str, Any]]) -> Path:
    """CSV or JSON Lines, by the file's extension."""
    return write_csv(path, declines) if path.suffix == ".csv" else write_jsonl(path, declines)


# ---------------------------------------------------------------- the card-number scan


def stored_text(session: Session) -> str:
    """Every value of every row of every table, as text."""
    parts: list[str] = []
    for table in Base.metadata.sorted_tables:
        for row in session.execute(select(table)):
            parts.append(json.dumps(list(row), default=str, ensure_ascii=False))
    return "\n".join(parts)


def sqlite_bytes(database_url: str) -> bytes:
    """The raw bytes of a SQLite database and its WAL (empty for other databases)."""
    if not database_url.startswith("sqlite:///"):
        return b""
    db = Path(database_url.removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def assert_no_pan(pan: str, *texts: str | bytes) -> None:
    """Neither the card number as sent nor its bare digits appear in any of ``texts``."""
    forms = {pan, re.sub(r"\D", "", pan)}
    for text in texts:
        blob = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for form in forms:
            assert form not in blob, f"card number {form!r} leaked"


# ---------------------------------------------------------------- the CLI


def run_submit(settings: Settings, path: Path, monkeypatch: pytest.MonkeyPatch) -> Result:
    """``flexmit submit PATH`` in this process, configured by ``settings`` through the env."""
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_runtime()
    try:
        return CliRunner().invoke(main, ["submit", str(path)])
    finally:
        reset_runtime()
        get_settings.cache_clear()


# ---------------------------------------------------------------- the queue message


def celery_message(payload: object, task_id: str, queue: str = "flexmit",
                   delivery_tag: str | None = None) -> dict[str, Any]:
    """The Celery protocol 2 message for ``flexmit.intake.declines``, as kombu's Redis transport
    stores it in the list named ``queue`` (docs/intake-message.md), built without Celery."""
    body = [[payload], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    return {
        "body": base64.b64encode(json.dumps(body).encode()).decode("ascii"),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {
            "lang": "py", "task": "flexmit.intake.declines", "id": task_id, "shadow": None,
            "eta": None, "expires": None, "group": None, "group_index": None, "retries": 0,
            "timelimit": [None, None], "root_id": task_id, "parent_id": None,
            "argsrepr": "(...)", "kwargsrepr": "{}", "origin": "billing@host1",
            "ignore_result": True, "replaced_task_nesting": 0, "stamped_headers": None,
            "stamps": {},
        },
        "properties": {
            "correlation_id": task_id, "reply_to": "", "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue}, "priority": 0,
            "body_encoding": "base64", "delivery_tag": delivery_tag or str(uuid.uuid4()),
        },
    }


def publish_intake(runtime: Runtime, payloads: list[object], *, raw_redis_url: str) -> list[str]:
    """Put one intake message per payload on the broker; returns the task ids.

    On Redis (``raw_redis_url``) the documented envelope is LPUSHed by hand, as a billing system
    in another language would; otherwise (the filesystem broker) Celery's send_task publishes.
    """
    ids = [str(uuid.uuid4()) for _ in payloads]
    if raw_redis_url.startswith("redis"):
        import redis

        client = redis.Redis.from_url(raw_redis_url)
        for payload, task_id in zip(payloads, ids, strict=True):
            client.lpush("flexmit", json.dumps(celery_message(payload, task_id)))
        client.close()
    else:
        for payload, task_id in zip(payloads, ids, strict=True):
            runtime.celery.send_task("flexmit.intake.declines", args=[payload], queue="flexmit",
                                     task_id=task_id)
    return ids


# ---------------------------------------------------------------- the HTTP door


@dataclass
class Door:
    """The API over a TestClient, and what it stored."""

    settings: Settings
    runtime: Runtime
    client: TestClient

    def post(self, body: object = None, *, content: bytes | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        """``POST /v1/declines`` with the bearer (unless ``headers`` says otherwise)."""
        return self.client.post("/v1/declines", json=body, content=content,
                                headers=AUTH if headers is None else headers)

    def results(self, body: object) -> list[dict[str, Any]]:
        """The per-item answers of a 202."""
        resp = self.post(body)
        assert resp.status_code == 202, resp.text
        return list(resp.json()["results"])

    def order(self, order_id: str) -> dict[str, Any]:
        """``GET /v1/orders/{orderId}`` (must answer 200)."""
        resp = self.client.get(f"/v1/orders/{order_id}", headers=AUTH)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


def rejects(runtime: Runtime) -> list[RejectedDecline]:
    """Every stored reject, oldest first."""
    with runtime.sessions() as session:
        return list(session.scalars(select(RejectedDecline).order_by(RejectedDecline.id)))


def count(runtime: Runtime, model: type[Base]) -> int:
    """Rows in ``model``'s table."""
    with runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def counts(runtime: Runtime) -> dict[str, int]:
    """Rows per table: what "creates nothing" is checked against."""
    with runtime.sessions() as session:
        return {t.name: session.scalar(select(func.count()).select_from(t)) or 0
                for t in Base.metadata.sorted_tables}


def everything_stored(runtime: Runtime) -> tuple[str, bytes]:
    """All stored values as text, and the raw database file when it is SQLite."""
    with runtime.sessions() as session:
        text = stored_text(session)
    return text, sqlite_bytes(runtime.settings.database_url)
