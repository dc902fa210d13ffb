"""Webhook test helpers: a runtime, orders in a chosen state, signed deliveries, a served API."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from typing import Any

import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from tests.factories import make_valid_decline
from tests.pipeline import stack_settings
from worker.db.models import Order, OrderEvent, WebhookEvent
from worker.flexfactor.signing import sign_webhook
from worker.intake_store import store_batch
from worker.orders import State, transition
from worker.runtime import Runtime
from worker.sandbox.config import DEFAULT_WEBHOOK_KEY_B64

KEY = DEFAULT_WEBHOOK_KEY_B64
HOST = "testserver"  # what FastAPI's TestClient sends as Host

# How to reach each state from QUEUED through allowed transitions.
PATHS: dict[State, list[State]] = {
    State.QUEUED: [],
    State.UNKNOWN: [State.UNKNOWN],
    State.PENDING: [State.PENDING],
    State.APPROVED: [State.PENDING, State.APPROVED],
    State.PARTIALLY_REFUNDED: [State.PENDING, State.APPROVED, State.PARTIALLY_REFUNDED],
    State.REFUNDED: [State.PENDING, State.APPROVED, State.REFUNDED],
    State.CANCELLED: [State.PENDING, State.CANCELLED],
    State.DECLINED: [State.DECLINED],
}


def make_runtime(database_url: str, shared: tuple[str, str], **overrides: Any) -> Runtime:
    """A runtime on the test database and shared state, with the sandbox's webhook key."""
    values: dict[str, Any] = {"FLEXFACTOR_WEBHOOK_KEY": KEY, **overrides}
    settings = stack_settings(database_url, shared[0], shared[1], "http://127.0.0.1:9/v1",
                              **values)
    return Runtime(settings)


def make_order(rt: Runtime, state: State = State.PENDING, *, key: str | None = "auto",
               amount: int = 1999, refunded: int = 0) -> Order:
    """A stored order in ``state`` (with a FlexFactor key unless ``key`` is None)."""
    with rt.sessions() as session:
        outcome = store_batch(session, [make_valid_decline(amount=amount)],
                              settings=rt.settings, source="http")
        order = session.get(Order, outcome.results[0].order_pk)
        assert order is not None
        for step in PATHS[state]:
            transition(session, order, step, cause="test.setup")
        order.order_session_key = str(uuid.uuid4()) if key == "auto" else key
        order.refunded_cents = refunded
        session.commit()
        return order


def reload(rt: Runtime, order_pk: int) -> Order:
    """The order as the database has it now."""
    with rt.sessions() as session:
        order = session.get(Order, order_pk)
        assert order is not None
        return order


def history(rt: Runtime, order_pk: int) -> list[OrderEvent]:
    """The order's audit rows, oldest first."""
    with rt.sessions() as session:
        return list(session.scalars(select(OrderEvent).where(OrderEvent.order_pk == order_pk)
                                    .order_by(OrderEvent.id)))


def events(rt: Runtime) -> list[WebhookEvent]:
    """Every stored delivery, oldest first."""
    with rt.sessions() as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def event_body(event: str, order: Order | None = None, *, ff_id: str | None = None,
               external: str | None = None, confirmation: str = "22ACD1D9",
               resent: bool = False, stamp: str = "2026-11-25T17:16:40.8987030Z") -> bytes:
    """A PascalCase webhook body (fact sheet §6.3), compact like FlexFactor's."""
    payload = {
        "Event": event, "TimeStamp": stamp, "EventData": None,
        "ExternalOrderId": external if external is not None else (order and order.order_id),
        "OrderId": ff_id if ff_id is not None else (order and order.order_session_key),
        "ConfirmationId": confirmation, "IsTestMode": True, "IsResent": resent,
    }
    return json.dumps(payload, separators=(",", ":")).encode()


def signed(body: bytes, *, key: str = KEY, host: str = HOST, **kw: Any) -> dict[str, str]:
    """FlexFactor's headers for ``body`` (fresh nonce, current date unless given)."""
    headers = sign_webhook(body, key_b64=key, host=host, **kw)
    headers["content-type"] = "text/plain; charset=utf-8"
    return headers


def stale_date(seconds: int = 3600) -> str:
    """An RFC 1123 date ``seconds`` in the past."""
    return formatdate(time.time() - seconds, usegmt=True)


@contextmanager
def serving(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free port; yield its root URL."""
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=0, log_level="warning",
                                           access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, name="api-uvicorn", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while not server.started:  # polling the started flag, not a fixed wait
            assert thread.is_alive() and time.monotonic() < deadline, "API did not start"
            time.sleep(0.01)
        yield f"http://{host}:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
