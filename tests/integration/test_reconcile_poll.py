"""One status poll against a real database, with FlexFactor's answer scripted per test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select

from worker.db.models import BillingPush, Order, OrderEvent
from worker.flexfactor.errors import FlexFactorNotFound, FlexFactorServerError
from worker.flexfactor.wire import OrderDetails
from worker.orders import State, as_utc, transition, utcnow
from worker.reconcile import EXPIRY_GRACE, due_pending, poll_order, sweep_pending
from worker.runtime import Runtime
from worker.settings import Settings

LADDER = [60, 600]
Answer = OrderDetails | Exception | Callable[[], OrderDetails]


def details(key: str, status: int, name: str) -> OrderDetails:
    return OrderDetails.model_validate({"id": key, "status": status, "statusName": name})


class FakeFlexFactor:
    """``get_order`` answers from a script and remembers every call."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.calls: list[str] = []

    def get_order(self, key: str) -> OrderDetails:
        self.calls.append(key)
        answer = self.answers[key]
        if isinstance(answer, Exception):
            raise answer
        return answer if isinstance(answer, OrderDetails) else answer()


class FakeCelery:
    """Records ``send_task`` calls instead of publishing them."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []

    @contextmanager
    def producer_or_acquire(self) -> Iterator[None]:
        yield None

    def send_task(self, name: str, *, args: list[int], **_: Any) -> None:
        self.sent.append((name, args[0]))


@pytest.fixture
def rt(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(FLEXMIT_DATABASE_URL=database_url, FLEXMIT_REDIS_URL=f"file://{tmp_path}",
                        FLEXMIT_PENDING_LADDER_S=LADDER, FLEXMIT_UNSENT_LADDER_S=[5])
    runtime = Runtime(settings)
    runtime.__dict__["flexfactor"] = FakeFlexFactor()  # cached_property: the instance wins
    runtime.__dict__["celery"] = FakeCelery()
    yield runtime
    runtime.close()


def ff(rt: Runtime) -> FakeFlexFactor:
    fake: FakeFlexFactor = rt.__dict__["flexfactor"]
    return fake


def add_order(rt: Runtime, name: str, *, key: str | None = "auto", due_in_s: float = -1,
              expires_in: timedelta = timedelta(days=20), mode: str = "managed",
              state: State = State.PENDING) -> int:
    now = utcnow()
    with rt.sessions() as session:
        order = Order(
            order_id=name, state=state, mode=mode, source="api", amount_cents=1999,
            currency="USD", refunded_cents=0, declined_at=now, expiry_at=now + expires_in,
            decline={}, order_session_key=f"key-{name}" if key == "auto" else key,
            attempt_count=1, next_check_at=now + timedelta(seconds=due_in_s), check_count=0,
            dispatch_count=1, dispatched_at=now - timedelta(hours=1), created_at=now,
            updated_at=now,
        )
        session.add(order)
        session.commit()
        return order.id


def load(rt: Runtime, pk: int) -> Order:
    with rt.sessions() as session:
        order = session.get(Order, pk)
        assert order is not None
        return order


def causes(rt: Runtime, pk: int) -> list[str]:
    with rt.sessions() as session:
        return list(session.scalars(select(OrderEvent.cause).where(OrderEvent.order_pk == pk)
                                    .order_by(OrderEvent.id)))


def pushes(rt: Runtime, pk: int) -> list[str]:
    with rt.sessions() as session:
        rows = session.scalars(select(BillingPush).where(BillingPush.order_pk == pk)
                               .order_by(BillingPush.id))
        return [row.payload["state"] for row in rows]


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_completed_order_becomes_approved_with_one_push(rt: Runtime) -> None:
    pk = add_order(rt, "done")
    ff(rt).answers["key-done"] = details("key-done", 7, "Completed")
    assert poll_order(rt, pk, owner="t1") == State.APPROVED
    order = load(rt, pk)
    assert (order.ff_status, order.next_check_at, order.claim_owner) == ("COMPLETED", None, None)
    assert causes(rt, pk) == ["reconcile.poll"]
    assert pushes(rt, pk) == ["APPROVED"]


def test_processing_waits_for_the_next_rung_and_a_duplicate_message_calls_nobody(
        rt: Runtime) -> None:
    pk = add_order(rt, "busy")
    ff(rt).answers["key-busy"] = details("key-busy", 4, "Processing")
    before = utcnow()
    assert poll_order(rt, pk, owner="t1") == State.PENDING
    order = load(rt, pk)
    assert order.check_count == 1
    assert order.next_check_at is not None
    assert as_utc(order.next_check_at) - before >= timedelta(seconds=LADDER[1])
    assert poll_order(rt, pk, owner="t2") is None  # the same message delivered again
    assert ff(rt).calls == ["key-busy"]
    assert causes(rt, pk) == [] and pushes(rt, pk) == []


def test_an_order_claimed_by_another_task_is_left_alone(rt: Runtime) -> None:
    pk = add_order(rt, "held")
    with rt.sessions() as session:
        order = session.get(Order, pk)
        assert order is not None
        order.claimed_until, order.claim_owner = utcnow() + timedelta(minutes=1), "other"
        session.commit()
    assert poll_order(rt, pk, owner="t1") is None
    assert ff(rt).calls == []


@pytest.mark.parametrize(("answer", "note"), [
    (details("key-x", 3, "Problem"), "problem"),
    (details("key-x", 42, "Mystery"), "unrecognised_status"),
    (FlexFactorNotFound("no such order", status_code=404), "not_found"),
    (FlexFactorServerError("bad gateway", status_code=502), "error"),
])
def test_odd_answers_are_noted_counted_and_polled_again(rt: Runtime, answer: Answer,
                                                        note: str) -> None:
    pk = add_order(rt, "x")
    ff(rt).answers["key-x"] = answer
    counted = metric("flexmit_reconcile_polls_total", outcome=note)
    assert poll_order(rt, pk, owner="t1") == State.PENDING
    order = load(rt, pk)
    assert causes(rt, pk) == [f"reconcile.{note}"]
    assert order.next_check_at is not None and as_utc(order.next_check_at) > utcnow()
    assert metric("flexmit_reconcile_polls_total", outcome=note) == counted + 1
    assert pushes(rt, pk) == []


def test_an_order_without_a_session_key_is_noted_not_polled(rt: Runtime) -> None:
    pk = add_order(rt, "nokey", key=None)
    assert poll_order(rt, pk, owner="t1") == State.PENDING
    assert ff(rt).calls == []
    assert causes(rt, pk) == ["reconcile.no_session_key"]
    assert load(rt, pk).next_check_at is not None


def test_past_expiry_an_order_without_a_key_is_left_for_an_operator(rt: Runtime) -> None:
    pk = add_order(rt, "nokey-late", key=None, expires_in=-timedelta(minutes=2))
    assert poll_order(rt, pk, owner="t1") == State.PENDING
    assert causes(rt, pk) == ["reconcile.no_session_key"]
    assert load(rt, pk).next_check_at is None  # not polled again every rung


def test_next_check_never_passes_the_final_check(rt: Runtime) -> None:
    pk = add_order(rt, "soon", expires_in=timedelta(seconds=30))
    ff(rt).answers["key-soon"] = details("key-soon", 4, "Processing")
    poll_order(rt, pk, owner="t1")
    order = load(rt, pk)
    assert order.next_check_at is not None
    assert as_utc(order.next_check_at) == as_utc(order.expiry_at) + EXPIRY_GRACE


def test_after_expiry_a_still_processing_order_expires(rt: Runtime) -> None:
    pk = add_order(rt, "late", expires_in=-timedelta(minutes=2))
    ff(rt).answers["key-late"] = details("key-late", 4, "Processing")
    assert poll_order(rt, pk, owner="t1") == State.EXPIRED
    assert causes(rt, pk) == ["expiry.final_check"]
    assert pushes(rt, pk) == ["EXPIRED"]


def test_after_expiry_a_better_answer_wins(rt: Runtime) -> None:
    pk = add_order(rt, "lastminute", expires_in=-timedelta(minutes=2))
    ff(rt).answers["key-lastminute"] = details("key-lastminute", 7, "Completed")
    assert poll_order(rt, pk, owner="t1") == State.APPROVED


def test_a_failed_final_check_is_retried_not_guessed(rt: Runtime) -> None:
    pk = add_order(rt, "outage", expires_in=-timedelta(minutes=2))
    ff(rt).answers["key-outage"] = FlexFactorServerError("unavailable", status_code=503)
    before = utcnow()
    assert poll_order(rt, pk, owner="t1") == State.PENDING
    order = load(rt, pk)
    assert order.next_check_at is not None
    assert timedelta(seconds=4) < as_utc(order.next_check_at) - before < timedelta(seconds=10)


def test_a_returned_pending_order_is_reported_approved_then_refunded(rt: Runtime) -> None:
    pk = add_order(rt, "ret")
    ff(rt).answers["key-ret"] = details("key-ret", 6, "Returned")
    assert poll_order(rt, pk, owner="t1") == State.REFUNDED
    assert pushes(rt, pk) == ["APPROVED", "REFUNDED"]


def _webhook_then(rt: Runtime, pk: int, applied: State, reported: OrderDetails
                  ) -> Callable[[], OrderDetails]:
    def answer() -> OrderDetails:  # a webhook lands while our GET is in flight
        with rt.sessions() as session:
            order = session.get(Order, pk)
            assert order is not None
            transition(session, order, applied, cause="webhook.order")
            session.commit()
        return reported
    return answer


def test_a_poll_contradicting_a_webhook_is_recorded_never_applied(rt: Runtime) -> None:
    pk = add_order(rt, "race")
    ff(rt).answers["key-race"] = _webhook_then(rt, pk, State.APPROVED,
                                               details("key-race", 2, "Expired"))
    counted = metric("flexmit_reconcile_disagreements_total", current="APPROVED",
                     reported="EXPIRED")
    assert poll_order(rt, pk, owner="t1") == State.APPROVED
    assert causes(rt, pk) == ["webhook.order", "reconcile.disagreement"]
    assert pushes(rt, pk) == ["APPROVED"]
    assert metric("flexmit_reconcile_disagreements_total", current="APPROVED",
                  reported="EXPIRED") == counted + 1


def test_a_poll_agreeing_with_a_webhook_adds_nothing(rt: Runtime) -> None:
    pk = add_order(rt, "agree")
    ff(rt).answers["key-agree"] = _webhook_then(rt, pk, State.APPROVED,
                                                details("key-agree", 7, "Completed"))
    assert poll_order(rt, pk, owner="t1") == State.APPROVED
    assert causes(rt, pk) == ["webhook.order"]
    assert pushes(rt, pk) == ["APPROVED"]


def test_two_sweeps_send_each_due_order_once(rt: Runtime) -> None:
    due = [add_order(rt, f"due-{i}") for i in range(3)]
    add_order(rt, "later", due_in_s=3600)
    add_order(rt, "sync", mode="sync")
    add_order(rt, "queued", state=State.QUEUED)
    assert sweep_pending(rt) == 3
    assert sweep_pending(rt) == 0  # a second beat, a moment later
    celery: FakeCelery = rt.__dict__["celery"]
    assert sorted(celery.sent) == sorted(("flexmit.poll", pk) for pk in due)
    with rt.sessions() as session:
        assert session.scalar(select(func.count()).select_from(BillingPush)) == 0


def test_a_sweep_takes_a_bounded_batch_oldest_due_first(rt: Runtime) -> None:
    pks = [add_order(rt, f"b-{i}", due_in_s=-10 + i) for i in range(4)]
    with rt.sessions() as session:
        assert due_pending(session, utcnow(), limit=2) == pks[:2]
