"""Polls alone bring orders to their final state: real worker and beat processes, webhooks off."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from tests.factories import make_valid_decline
from tests.pipeline import Stack, running_stack, wait_until
from worker.api import create_app
from worker.db.models import Attempt, BillingPush, Order, OrderEvent
from worker.orders import FINAL, IN_FLIGHT, State, utcnow
from worker.sandbox.config import SandboxConfig

pytestmark = pytest.mark.pipeline
AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}
GET_ORDER = "GET /v1/orders/{id}"
# The sandbox's final outcome (GET /_sandbox/orders "final") as flexmit should report it.
EXPECTED = {"completed": State.APPROVED, "expired": State.EXPIRED, "cancelled": State.CANCELLED}
NO_WEBHOOKS = {"webhook_url": None, "webhooks_enabled": False}


def submit(stack: Stack, amounts: list[int], prefix: str) -> list[str]:
    """POST the declines (one per amount) to the intake API; returns their orderIds."""
    declines = [make_valid_decline(orderId=f"{prefix}-{i:03d}", amount=amount)
                for i, amount in enumerate(amounts)]
    with TestClient(create_app(stack.settings, stack.runtime)) as client:
        resp = client.post("/v1/declines", json={"declines": declines}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    assert all(r["accepted"] for r in resp.json()["results"])
    return [d["orderId"] for d in declines]


def sandbox_orders(stack: Stack) -> dict[str, dict[str, Any]]:
    """GET /_sandbox/orders, keyed by merchant orderId."""
    resp = httpx.get(f"{stack.sandbox_root}/_sandbox/orders", timeout=10)
    resp.raise_for_status()
    body = resp.json()
    rows = body["orders"] if isinstance(body, dict) else body
    return {row["orderId"]: row for row in rows}


def orders(stack: Stack) -> dict[str, Order]:
    with stack.runtime.sessions() as session:
        return {o.order_id: o for o in session.scalars(select(Order))}


def per_order(stack: Stack, query: Any) -> Counter[str]:
    """``query`` selects (order_pk,) rows; counts them by merchant orderId."""
    with stack.runtime.sessions() as session:
        names = dict(session.execute(select(Order.id, Order.order_id)).all())
        return Counter(names[pk] for pk in session.scalars(query))


def polls_made(stack: Stack) -> Counter[str]:
    """GET /orders/{id} requests our side recorded, per order."""
    return per_order(stack, select(Attempt.order_pk).where(Attempt.route == "/orders/{id}"))


def pushes(stack: Stack) -> Counter[str]:
    return per_order(stack, select(BillingPush.order_pk))


def sandbox_gets(stack: Stack) -> int:
    """How many GET /v1/orders/{id} requests FlexFactor (the sandbox) answered."""
    return int(stack.ledger()["calls"].get(GET_ORDER, {}).get("total", 0))


def sweeps_done(stack: Stack) -> int:
    """How many ``flexmit.sweep_pending`` runs the worker has finished (from its log)."""
    return sum(1 for line in stack.log_text("w1").splitlines()
               if "flexmit.sweep_pending" in line and "succeeded" in line)


def let_sweeps_run(stack: Stack, count: int) -> None:
    """Wait until ``count`` more pending sweeps have run: anything they would send, they sent."""
    target = sweeps_done(stack) + count
    wait_until(lambda: sweeps_done(stack) >= target, timeout=60,
               what=f"{count} more sweep_pending runs")


def wait_states(stack: Stack, want: set[State], timeout: float) -> dict[str, Order]:
    """Wait until every order is in one of ``want``."""
    def check() -> dict[str, Order] | None:
        found = orders(stack)
        return found if found and all(State(o.state) in want for o in found.values()) else None
    return wait_until(check, timeout=timeout, what=f"all orders in {want} ({stack.by_state()})")


def test_without_webhooks_polls_alone_reach_every_final_state(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """40 managed declines (completed, expired, cancelled, challenge→completed) and webhooks
    off: every order ends in the state the sandbox decided, by polls, with one push each."""
    sandbox = SandboxConfig(resolve_after_s=1.5, **NO_WEBHOOKS)
    cents = [0, 30, 59, 45, 12, 60, 70, 79, 80, 84, 85, 89]
    amounts = [1000 + cents[i % len(cents)] + 100 * (i // len(cents)) for i in range(40)]
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXMIT_PENDING_LADDER_S=[1, 1, 2]) as stack:
        stack.start_worker("w1", concurrency=2)
        stack.start_beat("beat")
        ids = submit(stack, amounts, "poll")
        final = wait_states(stack, set(FINAL), timeout=120)
        ff = sandbox_orders(stack)
        ledger, gets = stack.ledger(), sandbox_gets(stack)
        made, pushed = polls_made(stack), pushes(stack)
        with stack.runtime.sessions() as session:
            by_poll = set(session.scalars(
                select(Order.order_id).join(OrderEvent, OrderEvent.order_pk == Order.id)
                .where(OrderEvent.cause == "reconcile.poll", OrderEvent.to_state.is_not(None))))

    assert sorted(final) == sorted(ids)
    assert {ff[oid]["plan"] for oid in ids} == {"complete", "expire", "cancel", "challenge"}
    for oid in ids:
        assert final[oid].state == EXPECTED[ff[oid]["final"]], (oid, ff[oid])
    assert by_poll == set(ids)  # each final state came from a poll
    assert ledger["webhooks_delivered"] == 0
    assert gets == sum(made.values())  # every call FlexFactor saw is on our record
    assert pushed == Counter({oid: 1 for oid in ids})


def test_two_beats_send_no_extra_call_and_no_extra_push(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """Two beat processes at once: each order is polled exactly as often as its ladder allows
    (once after a second, then not for an hour; once more when that hour is up), pushed once."""
    sandbox = SandboxConfig(resolve_after_s=3600, **NO_WEBHOOKS)
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXMIT_PENDING_LADDER_S=[1, 3600]) as stack:
        stack.start_worker("w1", concurrency=2)
        stack.start_beat("beat1")
        stack.start_beat("beat2")
        ids = submit(stack, [1000 + i for i in range(20)], "twobeats")  # cents 00-19: complete
        wait_until(lambda: len(polls_made(stack)) == len(ids), timeout=90,
                   what="a first poll of every order")
        let_sweeps_run(stack, 4)
        first = polls_made(stack), sandbox_gets(stack)

        httpx.post(f"{stack.sandbox_root}/_sandbox/resolve-all", timeout=10).raise_for_status()
        with stack.runtime.sessions() as session:  # the hour-long rung is up
            session.execute(update(Order).values(next_check_at=utcnow()))
            session.commit()
        wait_states(stack, {State.APPROVED}, timeout=60)
        let_sweeps_run(stack, 4)
        second = polls_made(stack), sandbox_gets(stack)
        pushed = pushes(stack)

    assert first == (Counter({oid: 1 for oid in ids}), len(ids))
    assert second == (Counter({oid: 2 for oid in ids}), 2 * len(ids))
    assert pushed == Counter({oid: 1 for oid in ids})


def test_the_final_check_at_expiry_expires_what_flexfactor_still_works_on(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """Orders past their expiry that FlexFactor still reports Processing become EXPIRED."""
    sandbox = SandboxConfig(resolve_after_s=3600, **NO_WEBHOOKS)
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXMIT_PENDING_LADDER_S=[1]) as stack:
        stack.start_worker("w1", concurrency=2)
        stack.start_beat("beat")
        ids = submit(stack, [1000, 1001, 1002], "expiry")
        wait_states(stack, {State.PENDING}, timeout=60)
        with stack.runtime.sessions() as session:
            session.execute(update(Order).values(expiry_at=utcnow() - timedelta(minutes=2)))
            session.commit()
        final = wait_states(stack, {State.EXPIRED}, timeout=60)
        ff = sandbox_orders(stack)
        with stack.runtime.sessions() as session:
            expired_by = session.scalar(select(func.count()).select_from(OrderEvent).where(
                OrderEvent.cause == "expiry.final_check", OrderEvent.to_state == State.EXPIRED))
        pushed = pushes(stack)

    assert sorted(final) == sorted(ids)
    assert all(ff[oid]["final"] is None and ff[oid]["status"] == 4 for oid in ids)
    assert expired_by == len(ids)
    assert pushed == Counter({oid: 1 for oid in ids})
    assert not any(State(o.state) in IN_FLIGHT for o in final.values())
