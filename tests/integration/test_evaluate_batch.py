"""Batched evaluation against the sandbox over HTTP: one message names several orders, each gets
its own /evaluate, all are recorded together; a second delivery sends nothing again."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import embedded_runtime
from tests.factories import make_valid_decline
from worker.db.models import Attempt, Order
from worker.dispatch import send_evaluate
from worker.evaluate import claim, evaluate_orders
from worker.intake_store import accept_declines
from worker.orders import State, utcnow
from worker.protocols import RateLimitWaitTooLong
from worker.runtime import Runtime
from worker.sandbox import SandboxConfig, running_sandbox
from worker.sandbox.config import DEFAULT_MID

EVALUATED = {State.PENDING, State.APPROVED, State.DECLINED}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_sandbox(SandboxConfig(resolve_after_s=3600, rate_limit=0)) as url:
        yield url


@pytest.fixture
def rt(database_url: str, tmp_path: Path, base_url: str) -> Iterator[Runtime]:
    with embedded_runtime(database_url, tmp_path, FLEXFACTOR_BASE_URL=base_url,
                          FLEXFACTOR_APP_KEY="sandbox-key", FLEXFACTOR_APP_SECRET="sandbox-secret",
                          FLEXFACTOR_MID=DEFAULT_MID, FLEXFACTOR_RATE_LIMIT=1000,
                          FLEXMIT_EVALUATE_BATCH=4) as runtime:
        yield runtime


def evaluate_calls(rt: Runtime) -> dict[str, int]:
    """orderId -> /evaluate requests the sandbox received for it (orders it knows)."""
    root = rt.settings.flexfactor_base_url.removesuffix("/v1")
    known = httpx.get(f"{root}/_sandbox/orders", timeout=10).json()
    retried = httpx.get(f"{root}/_sandbox/ledger", timeout=10).json()
    return {o["orderId"]: retried["evaluate_calls_per_order_id"].get(o["orderId"], 1)
            for o in known}


def batches(rt: Runtime) -> list[tuple[list[int], str]]:
    """(ids, argsrepr) of each evaluate message on the embedded broker, by first id."""
    folder = Path(rt.settings.broker_url.removeprefix("filesystem://")) / "queue"
    msgs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.msg"))]
    return sorted((json.loads(base64.b64decode(m["body"]))[0][0], m["headers"]["argsrepr"])
                  for m in msgs if m["headers"]["task"] == "flexmit.evaluate")


def submit(rt: Runtime, n: int, prefix: str) -> list[int]:
    declines = [make_valid_decline(orderId=f"{prefix}-{i:02d}", amount=1000 + i)
                for i in range(n)]
    outcome = accept_declines(rt, declines, source="cli")
    return [r.order_pk for r in outcome.results if r.order_pk is not None]


def orders(rt: Runtime, pks: list[int]) -> list[Order]:
    with rt.sessions() as session:
        return list(session.scalars(select(Order).where(Order.id.in_(pks)).order_by(Order.id)))


def test_intake_sends_batches_of_the_configured_size(rt: Runtime) -> None:
    pks = submit(rt, 10, "b")
    sent = batches(rt)
    assert [ids for ids, _ in sent] == [pks[0:4], pks[4:8], pks[8:10]]
    assert sent[0][1] == f"order_pks=[{', '.join(map(str, pks[0:4]))}]"  # ids, never payloads
    assert send_evaluate(rt.celery, pks, batch=3) == 10  # orders sent, in 4 messages
    assert len(batches(rt)) == 3 + 4


def test_one_message_evaluates_every_order_once_and_a_redelivery_sends_nothing(
        rt: Runtime) -> None:
    pks = submit(rt, 4, "once")
    states = evaluate_orders(rt, pks, owner="task-1")
    assert set(states) == set(pks) and set(states.values()) <= EVALUATED
    calls = evaluate_calls(rt)
    assert [calls[o.order_id] for o in orders(rt, pks)] == [1, 1, 1, 1]
    for order in orders(rt, pks):
        assert order.state in EVALUATED and order.order_session_key
        assert order.claimed_until is None and order.attempt_count >= 1
    with rt.sessions() as session:  # one audited /evaluate request each
        per_order = session.execute(select(Attempt.order_pk, func.count())
                                    .where(Attempt.route == "/evaluate")
                                    .group_by(Attempt.order_pk)).all()
    assert sorted(per_order) == [(pk, 1) for pk in pks]
    assert evaluate_orders(rt, pks, owner="task-1-redelivered") == {}
    assert evaluate_calls(rt) == calls  # nothing went out again


def test_orders_another_task_holds_are_left_to_it(rt: Runtime) -> None:
    pks = submit(rt, 3, "held")
    with rt.sessions() as session:
        assert claim(session, [pks[1]], "other-task", utcnow(), 600, "managed")
        session.commit()
    states = evaluate_orders(rt, pks, owner="task-2")
    assert sorted(states) == [pks[0], pks[2]]
    held = orders(rt, [pks[1]])[0]
    assert held.state == State.QUEUED and held.claim_owner == "other-task"
    assert held.order_id not in evaluate_calls(rt)


class SlotsThenNone:
    """A shared limiter with ``slots`` free slots, then none within the allowed wait (or,
    given ``failure``, then that error: the limiter's Redis gone)."""

    def __init__(self, slots: int, failure: Exception | None = None) -> None:
        self.slots = slots
        self.failure = failure

    def acquire(self, max_wait_s: float = 30.0) -> float:
        if self.slots == 0:
            raise self.failure or RateLimitWaitTooLong(max_wait_s + 1.0)
        self.slots -= 1
        return 0.0

    def penalize(self, retry_after_s: float) -> None:
        """Nothing to do: this limiter is scripted."""


def test_no_slot_under_the_limit_leaves_the_rest_of_the_batch_unsent_and_due(
        rt: Runtime) -> None:
    rt.__dict__["limiter"] = SlotsThenNone(2)  # cached_property: the instance wins
    pks = submit(rt, 5, "slots")
    states = evaluate_orders(rt, pks, owner="task-3")
    calls = evaluate_calls(rt)
    found = orders(rt, pks)
    assert [o.order_id in calls for o in found] == [True, True, False, False, False]
    assert {states[pk] for pk in pks[:2]} <= EVALUATED
    assert [o.last_error["error"] for o in found[2:] if o.last_error] == [
        "RateLimitWaitTooLong", "NotSent", "NotSent"]
    assert_due_again(found[2:], State.QUEUED)


def test_a_limiter_failure_mid_batch_keeps_what_was_done_and_frees_the_rest(
        rt: Runtime) -> None:
    import redis

    rt.__dict__["limiter"] = SlotsThenNone(1, redis.ConnectionError("Redis went away"))
    pks = submit(rt, 3, "crash")
    states = evaluate_orders(rt, pks, owner="task-4")
    first, broken, rest = orders(rt, pks)
    assert states[pks[0]] in EVALUATED and first.order_session_key
    # Where it broke nothing is known for sure: UNKNOWN, re-sent with the same orderId.
    assert broken.state == State.UNKNOWN and rest.state == State.QUEUED
    assert rest.last_error is not None and rest.last_error["error"] == "NotSent"
    assert_due_again([broken, rest], None)
    assert set(evaluate_calls(rt)) >= {first.order_id}
    assert broken.order_id not in evaluate_calls(rt)


def assert_due_again(found: list[Order], state: State | None) -> None:
    """Released (any task may take them) and due again soon, in ``state`` if given."""
    now = utcnow()
    for order in found:
        assert state is None or order.state == state
        assert order.claimed_until is None and order.claim_owner is None
        assert order.next_check_at is not None and _utc(order.next_check_at) > now


def _utc(value: Any) -> Any:
    from worker.orders import as_utc

    return as_utc(value)


def test_a_batch_stops_calling_at_half_its_claim_lease(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.evaluate

    clock = [1000.0]
    monkeypatch.setattr(worker.evaluate, "_clock", lambda: clock[0])

    class SlowSlots(SlotsThenNone):
        def acquire(self, max_wait_s: float = 30.0) -> float:
            clock[0] += 25.0  # a slow shared limit: 25 s per slot; the lease is 120 s
            return super().acquire(max_wait_s)

    rt.__dict__["limiter"] = SlowSlots(100)
    pks = submit(rt, 5, "lease")
    evaluate_orders(rt, pks, owner="task-5")
    found = orders(rt, pks)
    # Calls start at 0, 25 and 50 s; the fourth would start at 75 s, past half the lease.
    assert [o.order_id in evaluate_calls(rt) for o in found] == [True, True, True, False, False]
    assert [o.last_error["error"] for o in found[3:] if o.last_error] == ["NotSent", "NotSent"]
    assert_due_again(found[3:], State.QUEUED)
