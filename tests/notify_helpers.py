"""Helpers for the billing-push and order-listing tests: a runtime, orders, state moves."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from tests.factories import make_valid_decline
from worker.db.models import BillingPush, Order
from worker.intake_store import store_batch
from worker.orders import State, transition
from worker.runtime import Runtime
from worker.settings import Settings

CALLBACK_URL = "http://billing.test/flexmit-callback"
SECRET = "billing-callback-secret-0123456789"
TOKEN = "test-intake-token-0123456789"


def notify_settings(database_url: str, tmp_path: Path, **overrides: Any) -> Settings:
    """Embedded settings with a billing callback; ``overrides`` use environment names."""
    values: dict[str, Any] = {
        "FLEXMIT_DATABASE_URL": database_url,
        "FLEXMIT_REDIS_URL": f"file://{tmp_path / 'state'}",
        "FLEXMIT_BROKER_URL": f"filesystem://{tmp_path / 'broker'}",
        "FLEXMIT_INTAKE_TOKEN": TOKEN,
        "FLEXMIT_BILLING_CALLBACK_URL": CALLBACK_URL,
        "FLEXMIT_BILLING_CALLBACK_SECRET": SECRET,
        "FLEXMIT_LOG_FORMAT": "console",
    }
    values.update(overrides)
    (tmp_path / "state").mkdir(exist_ok=True)
    return Settings(**values)


def add_orders(rt: Runtime, count: int, *, prefix: str = "ord", now: datetime | None = None,
               amount: int = 1999) -> list[str]:
    """Create ``count`` QUEUED orders (through intake) and return their order ids."""
    now = now or datetime.now(UTC)
    ids = [f"{prefix}-{i:04d}" for i in range(count)]
    declines = [make_valid_decline(now, orderId=oid, amount=amount) for oid in ids]
    with rt.sessions() as session:
        outcome = store_batch(session, declines, settings=rt.settings, source="api", now=now)
        assert all(r.accepted for r in outcome.results)
        session.commit()
    return ids


def move(rt: Runtime, order_id: str, *states: State, now: datetime | None = None) -> None:
    """Walk ``order_id`` through ``states`` (each a legal transition), committing once."""
    with rt.sessions() as session:
        order = session.scalar(select(Order).where(Order.order_id == order_id))
        assert order is not None
        for state in states:
            transition(session, order, state, cause="test", now=now)
        session.commit()


def pushes(rt: Runtime) -> list[BillingPush]:
    """Every outbox row, oldest first."""
    with rt.sessions() as session:
        return list(session.scalars(select(BillingPush).order_by(BillingPush.id)))


@dataclass
class Billing:
    """A scripted billing endpoint for ``httpx.MockTransport``: records every request."""

    answer: Callable[[httpx.Request], int] = lambda _request: 200
    requests: list[httpx.Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self, request: httpx.Request) -> httpx.Response:
        request.read()
        with self.lock:
            self.requests.append(request)
        return httpx.Response(self.answer(request))

    def client(self) -> httpx.Client:
        """An httpx client whose every request lands here."""
        return httpx.Client(transport=httpx.MockTransport(self.handler))

    def event_ids(self) -> list[str]:
        with self.lock:
            return [r.headers["flexmit-event-id"] for r in self.requests]


class FakeCelery:
    """Records ``send_task`` calls (the sweep's only use of the Celery app)."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[Any]]] = []

    def producer_or_acquire(self) -> AbstractContextManager[None]:
        return nullcontext()

    def send_task(self, name: str, args: list[Any], **_: Any) -> None:
        self.sent.append((name, list(args)))
