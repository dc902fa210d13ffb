"""Helpers for the refund and cancel tests: a sandbox-backed API, orders brought to a state."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.factories import make_valid_decline
from tests.pipeline import Stack, running_stack
from worker.api import create_app
from worker.db.models import BillingPush, Order
from worker.evaluate import evaluate_order
from worker.sandbox.config import SandboxConfig

AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}
REFUND_ROUTE = "POST /v1/orders/{id}/refund"


@contextmanager
def api_stack(database_url: str, shared: tuple[str, str], tmp_path: Path,
              sandbox: SandboxConfig | None = None,
              **overrides: Any) -> Iterator[tuple[Stack, TestClient]]:
    """The sandbox over HTTP plus flexmit's API in this process (no worker needed)."""
    # Pending orders stay pending for the whole test unless a test says otherwise.
    config = sandbox or SandboxConfig(resolve_after_s=3600)
    with running_stack(database_url, shared, tmp_path, config, **overrides) as stack, \
            TestClient(create_app(stack.settings, stack.runtime)) as client:
        yield stack, client


def submit(client: TestClient, amount: int) -> str:
    """Accept one decline of ``amount`` cents; returns its orderId (state QUEUED)."""
    overrides: dict[str, object] = {"amount": amount, "subscription.price": amount}
    decline = make_valid_decline(None, **overrides)
    resp = client.post("/v1/declines", json=decline, headers=AUTH)
    assert resp.status_code == 202, resp.text
    result = resp.json()["results"][0]
    assert result["accepted"] and result["state"] == "QUEUED", result
    return str(result["orderId"])


def order_pk(stack: Stack, order_id: str) -> int:
    """The database id of ``order_id``."""
    with stack.runtime.sessions() as session:
        pk = session.scalar(select(Order.id).where(Order.order_id == order_id))
    assert pk is not None
    return pk


def evaluate(stack: Stack, order_id: str, expect: str) -> None:
    """Send the order to the sandbox's /evaluate from this process; check the state reached."""
    state = evaluate_order(stack.runtime, order_pk(stack, order_id), owner="test")
    assert state == expect, f"{order_id}: expected {expect}, got {state}"


def approved_order(stack: Stack, client: TestClient, amount: int = 1999) -> str:
    """An APPROVED order (cents 95-99: the sandbox approves at once)."""
    assert 95 <= amount % 100 <= 99
    order_id = submit(client, amount)
    evaluate(stack, order_id, "APPROVED")
    return order_id


def get_order(client: TestClient, order_id: str) -> dict[str, Any]:
    resp = client.get(f"/v1/orders/{order_id}", headers=AUTH)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def retry_allowed(client: TestClient, order_id: str) -> bool:
    resp = client.get(f"/v1/suppressions/{order_id}", headers=AUTH)
    assert resp.status_code == 200, resp.text
    return bool(resp.json()["retryAllowed"])


def sandbox_order(stack: Stack, order_id: str) -> dict[str, Any]:
    """The sandbox's own record of the order with merchant id ``order_id``."""
    resp = httpx.get(f"{stack.sandbox_root}/_sandbox/orders", timeout=10)
    resp.raise_for_status()
    body = resp.json()
    rows = body["orders"] if isinstance(body, dict) else body
    return next(row for row in rows if row["orderId"] == order_id)


def calls(stack: Stack, route: str) -> dict[str, int]:
    """The sandbox ledger's counts for ``route`` (``{"total": n, "<status>": n}``)."""
    return dict(stack.ledger()["calls"].get(route, {}))


def billing_states(stack: Stack, order_id: str) -> list[tuple[str, str, bool]]:
    """(previousState, state, retryAllowed) of every push queued for billing, in order."""
    pk = order_pk(stack, order_id)
    with stack.runtime.sessions() as session:
        pushes = session.scalars(select(BillingPush).where(BillingPush.order_pk == pk)
                                 .order_by(BillingPush.id))
        return [(p.payload["previousState"], p.payload["state"], p.payload["retryAllowed"])
                for p in pushes]


def history_causes(view: dict[str, Any]) -> list[str]:
    return [entry["cause"] for entry in view["history"]]
