"""``flexmit status``, ``report``, ``orders show`` and ``requeue`` on a real sandbox batch."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select, update

from tests.factories import make_valid_decline
from tests.ops_helpers import db_figures, flexmit, mixed_batch
from tests.pipeline import running_stack
from worker.db.models import BillingPush, Order, OrderEvent
from worker.evaluate import evaluate_order
from worker.intake_store import accept_declines
from worker.opsview import queue_depth
from worker.orders import State, as_utc, utcnow
from worker.runtime import Runtime
from worker.suppression import lookup


def test_report_shows_the_same_numbers_as_the_database(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        batch = mixed_batch(stack.runtime, "rep")
        expected = db_figures(stack.runtime)
        as_json = flexmit(stack.settings, "report", "--date", batch.day.isoformat(), "--json")
        text = flexmit(stack.settings, "report", "--date", batch.day.isoformat())
    assert as_json.exit_code == 0, as_json.output
    report = json.loads(as_json.output)
    for key in ("received", "rejected", "accepted", "sent", "approved", "expired",
                "rescued_cents", "rescue_rate", "by_state"):
        assert report[key] == expected[key], key
    # And what the batch was built to produce: 8 received, 2 rejected, 5 sent, 2 approved.
    assert (report["received"], report["rejected"], report["sent"], report["approved"]) == \
        (8, 2, 5, 2)
    assert report["rescued"] == {"USD": 1099 + 1095}
    assert text.exit_code == 0, text.output
    assert "amount rescued: 21.94 USD" in text.output
    assert "rescue rate: 40.0% (approved / sent)" in text.output
    assert f"funnel for {batch.day.isoformat()}" in text.output


def test_status_shows_states_queue_depth_oldest_and_limiter(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        rt = stack.runtime
        # No worker runs: one evaluate message naming the three orders waits in the broker.
        accept_declines(rt, [make_valid_decline(orderId=f"st-{i}", amount=1010)
                             for i in range(3)],
                        source="http")
        assert evaluate_order(rt, _pk(rt, "st-0"), owner="test") == State.PENDING
        rt.limiter.penalize(30)  # as after a FlexFactor 429
        out = flexmit(stack.settings, "status")
    assert out.exit_code == 0, out.output
    lines = {line.split("│")[1].strip(): line.split("│")[2].strip()
             for line in out.output.splitlines() if line.count("│") == 3}
    assert lines["QUEUED"] == "2" and lines["PENDING"] == "1" and lines["total"] == "3"
    assert "queue depth: 1 message waiting in 'flexmit'" in out.output
    assert "due now: 2 QUEUED/UNKNOWN orders" in out.output
    assert "oldest QUEUED: st-" in out.output and "oldest PENDING: st-0 for" in out.output
    blocked = out.output.split("blocked for ")[1].split(" s")[0]
    assert 25 < float(blocked) <= 30, out.output
    assert "one request every 103.1 ms (9.7/s)" in out.output  # 10/s x 0.97 headroom


def test_orders_show_prints_the_whole_story_without_the_card_token(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        rt = stack.runtime
        batch = mixed_batch(rt, "show")
        with rt.sessions() as session:
            order = session.scalar(select(Order).where(Order.order_id == batch.ids["approve-1"]))
            assert order is not None
            token, key = order.decline["card"]["token"], order.order_session_key
        shown = flexmit(stack.settings, "orders", "show", batch.ids["approve-1"])
        rejected = flexmit(stack.settings, "orders", "show", batch.rejected[0])
        missing = flexmit(stack.settings, "orders", "show", "never-seen")
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert "APPROVED" in out and "10.99 USD" in out and str(key) in out
    assert "no (paid_by_flexfactor)" in out  # the suppression answer billing gets
    assert "intake.http" in out and "/evaluate" in out and "200" in out
    assert "pushes to billing" in out and "parked" not in out.split("pushes to billing")[0]
    assert token not in out
    assert rejected.exit_code == 0 and "card.token" in rejected.output
    assert "rejected at intake" in rejected.output
    assert missing.exit_code == 1 and "no order or rejected decline" in missing.output


def test_requeue_sends_a_failed_order_round_again(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        rt = stack.runtime
        batch = mixed_batch(rt, "rq")
        failed = batch.ids["failed"]
        pk = _pk(rt, failed)
        dry = flexmit(stack.settings, "requeue", "--dry-run")
        assert dry.exit_code == 0 and f"would requeue {failed} (was FAILED)" in dry.output
        assert _state(rt, pk) == State.FAILED
        # The operator's fix: the amount was wrong (the sandbox refuses >= 20000 cents).
        with rt.sessions() as session:
            order = session.get(Order, pk)
            assert order is not None
            order.decline = {**order.decline, "amount": 1099}
            order.amount_cents = 1099
            session.commit()
        waiting = queue_depth(stack.settings)["ready"]
        done = flexmit(stack.settings, "requeue", "--order", failed)
        assert done.exit_code == 0, done.output
        assert f"requeued {failed} (was FAILED)" in done.output
        assert "1 orders requeued, 0 pushes due again, 1 evaluate messages sent" in done.output
        assert queue_depth(stack.settings)["ready"] == waiting + 1
        with rt.sessions() as session:
            assert lookup(session, None, failed).retryAllowed is False  # suppressed again
        assert _state(rt, pk) == State.QUEUED
        assert evaluate_order(rt, pk, owner="test") == State.APPROVED
        again = flexmit(stack.settings, "requeue")
        named = flexmit(stack.settings, "requeue", "--order", failed)
    assert "0 orders requeued" in again.output
    assert named.exit_code == 1 and f"no FAILED order '{failed}'" in named.output
    causes = [(e.from_state, e.to_state, e.cause) for e in _events(rt, pk)]
    assert ("FAILED", "QUEUED", "operator.requeue") in causes
    assert causes[-1][1] == "APPROVED"


def test_requeue_stuck_orders_and_parked_pushes(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        rt = stack.runtime
        batch = mixed_batch(rt, "dl")
        stuck = _pk(rt, batch.ids["unsent"])
        later = utcnow().replace(year=utcnow().year + 1)
        with rt.sessions() as session:
            session.execute(update(Order).where(Order.id == stuck)
                            .values(check_count=7, next_check_at=later))
            parked = session.execute(update(BillingPush).values(next_attempt_at=None,
                                                                last_error="no callback"))
            session.commit()
        plain = flexmit(stack.settings, "requeue", "--dry-run")
        assert batch.ids["unsent"] not in plain.output  # only with --stuck
        out = flexmit(stack.settings, "requeue", "--stuck", "--pushes")
    assert out.exit_code == 0, out.output
    assert f"requeued {batch.ids['unsent']} (was QUEUED)" in out.output
    assert f"{parked.rowcount} pushes due again" in out.output
    with rt.sessions() as session:
        order = session.get(Order, stuck)
        assert order is not None and order.check_count == 0
        assert as_utc(order.next_check_at) <= utcnow()  # type: ignore[arg-type]
        left = session.scalar(select(BillingPush.id).where(BillingPush.next_attempt_at.is_(None)))
    assert left is None


def _pk(rt: Runtime, order_id: str) -> int:
    with rt.sessions() as session:
        pk = session.scalar(select(Order.id).where(Order.order_id == order_id))
    assert pk is not None
    return int(pk)


def _state(rt: Runtime, pk: int) -> str:
    with rt.sessions() as session:
        order = session.get(Order, pk)
        assert order is not None
        return str(order.state)


def _events(rt: Runtime, pk: int) -> list[OrderEvent]:
    with rt.sessions() as session:
        return list(session.scalars(select(OrderEvent).where(OrderEvent.order_pk == pk)
                                    .order_by(OrderEvent.id)))
