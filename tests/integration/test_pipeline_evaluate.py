"""How /evaluate answers and failures land: UNKNOWN resolved by re-sending the same orderId,
400 kept as FAILED, sync mode's re-send ladder, 429s slowing every worker."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from tests.audit import audit
from tests.factories import make_valid_decline
from tests.integration.test_pipeline_faults import EVALUATED, submit
from tests.pipeline import running_stack
from worker.db.models import Attempt, Order
from worker.evaluate import evaluate_order
from worker.intake_store import accept_declines
from worker.orders import State
from worker.sandbox.config import SandboxConfig

pytestmark = pytest.mark.pipeline


def test_timeouts_and_503s_end_resolved_with_one_order_each(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """10% 503s before the order exists and 5% slow replies after it does: every decline ends
    evaluated, the ambiguous ones re-sent with the same orderId, never a second order."""
    sandbox = SandboxConfig(rate_limit=50, resolve_after_s=3600, fault_503_rate=0.10,
                            fault_slow_rate=0.05, slow_reply_s=2.0)
    with running_stack(database_url, shared_urls, tmp_path, sandbox, FLEXFACTOR_RATE_LIMIT=40,
                       FLEXFACTOR_TIMEOUT_S=1, FLEXMIT_UNKNOWN_LADDER_S=[1, 2, 3]) as stack:
        stack.start_worker("w1", concurrency=2)
        stack.start_beat()
        accepted = submit(stack, 200, "fault")
        stack.wait_settled(200, timeout=150)
        audit(stack, accepted)
        with stack.runtime.sessions() as session:
            went_unknown = session.scalars(
                select(Order.order_id).where(Order.attempt_count > 1)).all()
            keys = session.scalars(select(Attempt.idempotency_key)).all()
        ledger = stack.ledger()
    assert went_unknown, "no fault was injected: the test proves nothing"
    assert len(keys) == len(set(keys)), "an idempotencyKey was reused"
    assert ledger["evaluate_order_ids_with_retries"] > 0


def test_flexfactor_400_is_final_with_its_field_errors(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """FlexFactor refuses the request itself (sandbox amounts must be < 20000 cents): FAILED,
    with FlexFactor's field errors kept for the operator, and billing may retry."""
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        outcome = accept_declines(stack.runtime, [make_valid_decline(orderId="big-1",
                                                                     amount=25_000)],
                                  source="http")
        pk = outcome.new_order_pks[0]
        assert evaluate_order(stack.runtime, pk, owner="test") == State.FAILED
        with stack.runtime.sessions() as session:
            order = session.get(Order, pk)
            assert order is not None and order.last_error is not None
            assert "Transaction.Amount" in order.last_error["fieldErrors"]
        assert evaluate_order(stack.runtime, pk, owner="again") is None  # final: not re-sent


def test_sync_mode_resends_same_order_id_until_final(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """Sync MIT: flexmit is the retry engine; PROCESSING answers are re-sent on the ladder with
    the same orderId and a fresh idempotencyKey until FlexFactor gives a final status."""
    sandbox = SandboxConfig(mode="sync", rate_limit=50, resolve_after_s=2)
    with running_stack(database_url, shared_urls, tmp_path, sandbox, FLEXFACTOR_MODE="sync",
                       FLEXFACTOR_RATE_LIMIT=40, FLEXMIT_SYNC_LADDER_S=[1, 1, 2]) as stack:
        stack.start_worker("w1", concurrency=2)
        stack.start_beat()
        # cents 00-59 complete later; 95-99 approve at once (worker/sandbox/outcomes.py)
        declines = [make_valid_decline(orderId=f"sync-{i}", amount=1000 + (i % 2) * 99)
                    for i in range(20)]
        accept_declines(stack.runtime, declines, source="http")
        stack.wait_settled(20, timeout=90, unsettled=(State.QUEUED, State.UNKNOWN,
                                                      State.PENDING))
        ledger = stack.ledger()
    assert stack.count(State.APPROVED) == 20
    assert ledger["distinct_orders"] == 20
    assert ledger["flexfactor_orders_per_order_id_max"] == 1
    assert ledger["evaluate_order_ids_with_retries"] >= 10  # the slow ones were re-sent


def test_429s_slow_every_worker_and_lose_nothing(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """flexmit configured above FlexFactor's real limit: 429s come back, every worker backs
    off for Retry-After, and every decline still reaches FlexFactor exactly once."""
    sandbox = SandboxConfig(rate_limit=10, resolve_after_s=3600)
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXFACTOR_RATE_LIMIT=30) as stack:
        stack.start_worker("w1", concurrency=1)
        stack.start_worker("w2", concurrency=1)
        stack.start_beat()
        accepted = submit(stack, 60, "busy")
        stack.wait_settled(60, timeout=120)
        audit(stack, accepted)
        ledger = stack.ledger()
    assert ledger["rate_limited_429"] > 0
    assert stack.count(*EVALUATED) == 60
