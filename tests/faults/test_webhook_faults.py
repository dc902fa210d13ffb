"""FlexFactor webhooks that never arrive, arrive reversed and twice, or are forged: every order
still ends in FlexFactor's own outcome, nothing moves backwards, nothing is sent twice."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from tests.audit import audit, collect, final_mismatches, find_problems
from tests.factories import make_valid_decline
from tests.pipeline import Stack, running_stack, wait_until
from tests.webhooks_helpers import events, serving
from worker.api import create_app
from worker.db.models import Attempt, OrderEvent
from worker.flexfactor.signing import sign_webhook
from worker.orders import can_transition
from worker.sandbox.config import SandboxConfig

pytestmark = pytest.mark.pipeline
AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}
HOOK = "/v1/flexfactor/webhooks"
# Cents pick the sandbox's plan (worker/sandbox/outcomes.py): complete, expire, cancel,
# challenge (then completed), decline (at once), approve (at once).
EVERY_PLAN = [1910, 1965, 1982, 1987, 1992, 1997]
PENDING_PLANS = [1910, 1965, 1982, 1987]
TRUE_EVENTS = {"completed": ["order.completed"], "expired": ["order.expired"],
               "cancelled": ["order.cancelled"]}
NO_WEBHOOKS = {"webhook_url": None, "webhooks_enabled": False}
FORGED_KEY = "Zm9yZ2VkLWtleS1mb3JnZWQta2V5LWZvcmdlZC1rZXktZm9yZ2VkLWtleS0xMjM0NTY3OA=="


def submit(client: TestClient | httpx.Client, prefix: str, amounts: list[int],
           count: int) -> list[str]:
    """POST ``count`` declines cycling through ``amounts``; returns the accepted orderIds."""
    declines = [make_valid_decline(orderId=f"{prefix}-{i:02d}", amount=amounts[i % len(amounts)])
                for i in range(count)]
    resp = client.post("/v1/declines", json={"declines": declines}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    assert all(r["accepted"] for r in resp.json()["results"])
    return [d["orderId"] for d in declines]


def matches_flexfactor(stack: Stack, accepted: list[str]) -> bool:
    """The books balance, and every order is final at FlexFactor and here, in one outcome."""
    parts = collect(stack)
    return not find_problems(parts, set(accepted)) and not final_mismatches(parts)


def settle_and_audit(stack: Stack, accepted: list[str], timeout: float) -> None:
    """Wait for FlexFactor's outcome everywhere, then audit (the audit names what is wrong)."""
    try:
        wait_until(lambda: matches_flexfactor(stack, accepted), timeout=timeout,
                   what="every order to reach FlexFactor's outcome")
    finally:
        audit(stack, accepted, match_final=True)


@contextmanager
def api_for(stack: Stack) -> Iterator[TestClient]:
    with TestClient(create_app(stack.settings, stack.runtime)) as client:
        yield client


def test_webhooks_never_delivered_polls_settle_everything(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    sandbox = SandboxConfig(rate_limit=40, resolve_after_s=2, webhook_fail_rate=1.0,
                            webhook_max_tries=1)
    with running_stack(database_url, shared_urls, tmp_path, sandbox, FLEXFACTOR_RATE_LIMIT=30,
                       FLEXFACTOR_WEBHOOK_KEY=sandbox.webhook_key_b64,
                       FLEXMIT_PENDING_LADDER_S=[1, 1, 2]) as stack, \
            serving(create_app(stack.settings, stack.runtime)) as api:
        stack.sandbox_config(webhook_url=f"{api}{HOOK}")
        stack.start_worker("w1", concurrency=2)
        stack.start_beat()
        with httpx.Client(base_url=api, timeout=30) as client:
            accepted = submit(client, "lost", EVERY_PLAN, 24)
        settle_and_audit(stack, accepted, timeout=120)
        ledger = stack.ledger()
        with stack.runtime.sessions() as session:
            polls = session.scalars(select(Attempt.id).where(Attempt.route == "/orders/{id}"))
            assert len(polls.all()) >= 16  # the 16 pending orders were each asked at least once
    assert ledger["webhooks_abandoned"] > 0 and ledger["webhooks_delivered"] == 0
    assert events(stack.runtime) == []  # not one webhook arrived: the polls did it all


def sandbox_truth(stack: Stack) -> list[dict[str, Any]]:
    """Resolve every pending order now, charge back every third completed one; the orders."""
    httpx.post(f"{stack.sandbox_root}/_sandbox/resolve-all", timeout=10).raise_for_status()
    completed = [o for o in stack.sandbox_orders() if o["final"] == "completed"]
    for order in completed[::3]:
        httpx.post(f"{stack.sandbox_root}/_sandbox/orders/{order['orderSessionKey']}/chargeback",
                   timeout=10).raise_for_status()
    return stack.sandbox_orders()


def event_bodies(order: dict[str, Any]) -> list[bytes]:
    """What FlexFactor would have sent for ``order``, newest first (the worst reordering)."""
    names = list(TRUE_EVENTS[order["final"]])
    if order["plan"] == "challenge":
        names.insert(0, "challenge.presented")
    if order["chargeback"]:
        names.append("payment.chargeback.received")
    bodies = []
    for n, name in enumerate(names):
        payload = {"Event": name, "TimeStamp": f"2026-11-25T17:16:{40 + n:02d}.0000000Z",
                   "EventData": None, "ExternalOrderId": order["orderId"],
                   "OrderId": order["orderSessionKey"], "ConfirmationId": f"C{n:07d}",
                   "IsTestMode": True, "IsResent": False}
        bodies.append(json.dumps(payload, separators=(",", ":")).encode())
    return bodies[::-1]


def deliver(client: TestClient, body: bytes, key: str) -> int:
    headers = sign_webhook(body, key_b64=key, host="testserver")
    return client.post(HOOK, content=body, headers=headers).status_code


def shuffled_deliveries(orders: list[dict[str, Any]]) -> list[bytes]:
    """Each order's events reversed, orders interleaved, and every event delivered twice."""
    queues = [event_bodies(o) for o in orders]
    rng = random.Random(7)
    out: list[bytes] = []
    while any(queues):
        out.append(rng.choice([q for q in queues if q]).pop(0))
    return out + rng.sample(out, len(out))


def moved_backwards(stack: Stack) -> list[int]:
    """Orders whose recorded history has a step the state machine forbids (e.g. final ->
    PENDING, CHARGEBACK -> APPROVED)."""
    histories: dict[int, list[str]] = defaultdict(list)
    with stack.runtime.sessions() as session:
        for pk, state in session.execute(
                select(OrderEvent.order_pk, OrderEvent.to_state)
                .where(OrderEvent.to_state.is_not(None)).order_by(OrderEvent.id)):
            histories[pk].append(str(state))
    return [pk for pk, steps in histories.items()
            if any(not can_transition(a, b) for a, b in pairwise(steps))]


def test_webhooks_reversed_and_duplicated_end_in_flexfactor_outcome(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    sandbox = SandboxConfig(rate_limit=40, resolve_after_s=3600, **NO_WEBHOOKS)
    with running_stack(database_url, shared_urls, tmp_path, sandbox, FLEXFACTOR_RATE_LIMIT=30,
                       FLEXFACTOR_WEBHOOK_KEY=sandbox.webhook_key_b64) as stack, \
            api_for(stack) as client:
        stack.start_worker("w1", concurrency=2)
        accepted = submit(client, "reorder", PENDING_PLANS, 24)
        stack.wait_settled(24, timeout=60)
        truth = sandbox_truth(stack)
        assert any(o["chargeback"] for o in truth)
        answers = [deliver(client, body, sandbox.webhook_key_b64)
                   for body in shuffled_deliveries(truth)]
        assert set(answers) == {200}
        settle_and_audit(stack, accepted, timeout=60)
        assert moved_backwards(stack) == []
        outcomes = {e.outcome for e in events(stack.runtime)}
    assert {"applied", "duplicate"} <= outcomes


def test_forged_completion_changes_nothing(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """A forged order.completed (wrong key) for orders FlexFactor will expire or cancel: 401,
    the orders stay PENDING, and the true outcome arrives later from the real webhooks."""
    sandbox = SandboxConfig(rate_limit=40, resolve_after_s=3600)
    with running_stack(database_url, shared_urls, tmp_path, sandbox, FLEXFACTOR_RATE_LIMIT=30,
                       FLEXFACTOR_WEBHOOK_KEY=sandbox.webhook_key_b64) as stack, \
            serving(create_app(stack.settings, stack.runtime)) as api:
        stack.sandbox_config(webhook_url=f"{api}{HOOK}")
        stack.start_worker("w1", concurrency=2)
        with TestClient(create_app(stack.settings, stack.runtime)) as client:
            accepted = submit(client, "forged", [1965, 1982], 12)
            stack.wait_settled(12, timeout=60)
            for order in stack.sandbox_orders():
                body = event_bodies({**order, "final": "completed", "chargeback": False})[0]
                assert deliver(client, body, FORGED_KEY) == 401
        assert stack.by_state() == {"PENDING": 12}  # the forgeries moved nothing
        httpx.post(f"{stack.sandbox_root}/_sandbox/resolve-all", timeout=10).raise_for_status()
        settle_and_audit(stack, accepted, timeout=60)
        stored = events(stack.runtime)
    assert sum(1 for e in stored if e.reject_reason) == 12
