"""The webhook domain: mapping of every fact-sheet event, dedupe, late events, the sweep."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, select, update

from tests.webhooks_helpers import (
    HOST,
    event_body,
    events,
    history,
    make_order,
    make_runtime,
    reload,
    signed,
)
from worker.db.models import BillingPush, WebhookEvent
from worker.orders import State, utcnow
from worker.runtime import Runtime
from worker.webhooks import (
    dedupe_key,
    parse_envelope,
    process_webhook_event,
    receive_webhook,
    sweep_unprocessed,
)


@pytest.fixture
def rt(database_url: str, shared_urls: tuple[str, str]) -> Iterator[Runtime]:
    runtime = make_runtime(database_url, shared_urls)
    yield runtime
    runtime.close()


def deliver(rt: Runtime, body: bytes) -> tuple[int, str, int | None]:
    """One signed delivery; processed like the task would. (status, outcome, event_pk)."""
    result = receive_webhook(rt, body, signed(body), HOST)
    outcome = result.outcome
    if outcome == "accepted":
        assert result.event_pk is not None
        outcome = process_webhook_event(rt, result.event_pk)
    return result.status_code, outcome, result.event_pk


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.mark.parametrize(("event", "start", "expected"), [
    ("order.completed", State.PENDING, State.APPROVED),
    ("order.expired", State.PENDING, State.EXPIRED),
    ("order.cancelled", State.PENDING, State.CANCELLED),
    ("order.refunded", State.APPROVED, State.REFUNDED),
    ("payment.chargeback.received", State.APPROVED, State.CHARGEBACK),
    ("payment.chargeback.received", State.REFUNDED, State.CHARGEBACK),
    ("order.completed", State.UNKNOWN, State.APPROVED),  # the /evaluate answer was lost
])
def test_each_state_event_moves_the_order(rt: Runtime, event: str, start: State,
                                          expected: State) -> None:
    order = make_order(rt, start)
    status, outcome, pk = deliver(rt, event_body(event, order))
    assert (status, outcome) == (200, "applied")
    assert reload(rt, order.id).state == expected
    last = history(rt, order.id)[-1]
    assert (last.from_state, last.to_state, last.cause) == (start, expected, "webhook")
    assert last.detail is not None and last.detail["webhookEventId"] == pk


@pytest.mark.parametrize("event", ["order.capturerequired", "challenge.presented",
                                   "challenge.passed", "payout.created"])
def test_informational_events_are_history_notes(rt: Runtime, event: str) -> None:
    order = make_order(rt, State.PENDING)
    assert deliver(rt, event_body(event, order))[:2] == (200, "noted")
    assert reload(rt, order.id).state == State.PENDING
    note = history(rt, order.id)[-1]
    assert note.cause == "webhook" and note.to_state is None
    assert note.detail is not None and note.detail["event"] == event


def test_late_completed_after_cancel_never_moves_the_order(rt: Runtime) -> None:
    order = make_order(rt, State.CANCELLED)
    with rt.sessions() as session:
        pushes = session.scalar(select(func.count()).select_from(BillingPush))
    assert deliver(rt, event_body("order.completed", order))[:2] == (200, "ignored")
    assert reload(rt, order.id).state == State.CANCELLED
    assert history(rt, order.id)[-1].cause == "webhook.ignored"
    with rt.sessions() as session:  # billing hears nothing: nothing changed
        assert session.scalar(select(func.count()).select_from(BillingPush)) == pushes


def test_partial_refund_on_record_stays_partial(rt: Runtime) -> None:
    order = make_order(rt, State.PARTIALLY_REFUNDED, amount=5000, refunded=1000)
    assert deliver(rt, event_body("order.refunded", order))[:2] == (200, "already_in_state")
    assert reload(rt, order.id).state == State.PARTIALLY_REFUNDED
    assert history(rt, order.id)[-1].cause == "webhook.already"


def test_refund_of_approved_order_with_partial_record_becomes_partial(rt: Runtime) -> None:
    order = make_order(rt, State.APPROVED, amount=5000, refunded=1000)
    assert deliver(rt, event_body("order.refunded", order))[:2] == (200, "applied")
    assert reload(rt, order.id).state == State.PARTIALLY_REFUNDED


def test_event_before_the_key_is_known_matches_the_merchant_order_id(rt: Runtime) -> None:
    order = make_order(rt, State.QUEUED, key=None)
    ff_id = "0b4f6a8e-9a5c-4a43-9f4f-2a0a3e6f7d11"
    body = event_body("order.completed", order, ff_id=ff_id)
    assert deliver(rt, body)[:2] == (200, "applied")
    after = reload(rt, order.id)
    assert (after.state, after.order_session_key) == (State.APPROVED, ff_id)


def test_a_duplicate_delivery_is_kept_but_processed_once(rt: Runtime) -> None:
    order = make_order(rt, State.PENDING)
    before = counter("flexmit_webhooks_duplicate_total")
    first = deliver(rt, event_body("order.completed", order))
    second = deliver(rt, event_body("order.completed", order, resent=True))
    assert first[:2] == (200, "applied") and second[:2] == (200, "duplicate")
    assert counter("flexmit_webhooks_duplicate_total") == before + 1
    stored = events(rt)
    assert [e.outcome for e in stored] == ["applied", "duplicate"]
    assert stored[1].dedupe_key is None and stored[1].is_resent is True
    # The task running twice (redelivered message) or on the duplicate row does nothing.
    assert process_webhook_event(rt, stored[0].id) == "not_claimed"
    assert process_webhook_event(rt, stored[1].id) == "not_claimed"
    moves = [e for e in history(rt, order.id) if e.cause.startswith("webhook")]
    assert len(moves) == 1


def test_unknown_order_is_acknowledged_and_counted(rt: Runtime) -> None:
    before = counter("flexmit_webhooks_unknown_order_total")
    body = event_body("order.completed", ff_id="9d1c2b6e-0000-4000-8000-000000000000",
                      external="never-sent")
    assert deliver(rt, body)[:2] == (200, "unknown_order")
    assert counter("flexmit_webhooks_unknown_order_total") == before + 1


def test_unrecognised_event_name_is_recorded_and_counted(rt: Runtime) -> None:
    order = make_order(rt, State.PENDING)
    before = counter("flexmit_webhook_events_total", event="other")
    assert deliver(rt, event_body("order.teleported", order))[:2] == (200, "unrecognised_event")
    assert counter("flexmit_webhook_events_total", event="other") == before + 1
    assert reload(rt, order.id).state == State.PENDING
    assert history(rt, order.id)[-1].cause == "webhook.unrecognised"


def test_event_for_another_flexfactor_order_of_the_same_order_id_is_not_applied(
        rt: Runtime) -> None:
    order = make_order(rt, State.PENDING)
    body = event_body("order.completed", order, ff_id="11111111-2222-4333-8444-555555555555")
    assert deliver(rt, body)[:2] == (200, "key_mismatch")
    assert reload(rt, order.id).state == State.PENDING


def test_signed_garbage_is_acknowledged_and_kept(rt: Runtime) -> None:
    for body in (b"\x00\xffnot json", b"[1,2]", b'{"NoEvent":true}'):
        status, outcome, _ = deliver(rt, body)
        assert (status, outcome) == (200, "malformed")
    assert [e.outcome for e in events(rt)] == ["malformed"] * 3
    assert all(e.verified and e.processed_at is not None for e in events(rt))


def test_no_key_configured_refuses_everything(database_url: str,
                                              shared_urls: tuple[str, str]) -> None:
    rt = make_runtime(database_url, shared_urls, FLEXFACTOR_WEBHOOK_KEY=None)
    order = make_order(rt, State.PENDING)
    body = event_body("order.completed", order)
    result = receive_webhook(rt, body, signed(body), HOST)
    assert (result.status_code, result.answer) == (401, {"error": "no_key_configured"})
    assert [(e.verified, e.reject_reason) for e in events(rt)] == [(False, "no_key_configured")]
    assert reload(rt, order.id).state == State.PENDING
    rt.close()


def test_sweep_resends_events_whose_message_was_lost(rt: Runtime) -> None:
    order = make_order(rt, State.PENDING)
    body = event_body("order.expired", order)
    pk = receive_webhook(rt, body, signed(body), HOST).event_pk
    assert sweep_unprocessed(rt) == 0  # just sent: not lost yet
    with rt.sessions() as session:
        session.execute(update(WebhookEvent).values(dispatched_at=utcnow() - timedelta(minutes=5)))
        session.commit()
    assert sweep_unprocessed(rt) == 1
    assert sweep_unprocessed(rt) == 0  # re-stamped: a second sweep does not pile on
    assert pk is not None and process_webhook_event(rt, pk) == "applied"
    assert reload(rt, order.id).state == State.EXPIRED


def test_dedupe_key_is_the_event_identity() -> None:
    def key(body: bytes) -> str:
        env = parse_envelope(body)
        assert env is not None
        return dedupe_key(env)

    ff = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    assert key(event_body("order.completed", ff_id=ff, external="x")) == \
        key(event_body("order.completed", ff_id=ff, external="x", resent=True)) == \
        f"{ff}:order.completed:22ACD1D9"
    # Two partial refunds of one order are two events.
    assert key(event_body("order.refunded", ff_id=ff, external="x", stamp="t1")) != \
        key(event_body("order.refunded", ff_id=ff, external="x", stamp="t2"))
    # No OrderId (a payout): the body without IsResent identifies it.
    payout = b'{"Event":"payout.created","EventData":{"Id":"p1"},"IsResent":false}'
    again = b'{"Event":"payout.created","EventData":{"Id":"p1"},"IsResent":true}'
    assert key(payout) == key(again) != key(payout.replace(b"p1", b"p2"))


def test_concurrent_delivery_losing_the_insert_is_a_duplicate(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two deliveries of one event racing past the pre-check: the unique index decides."""
    import worker.webhooks as receiver

    order = make_order(rt, State.PENDING)
    body = event_body("order.completed", order)
    real_find = receiver.find_order

    def racing_find(session: object, *args: object, **kw: object) -> object:
        monkeypatch.setattr(receiver, "find_order", real_find)
        other = receive_webhook(rt, body, signed(body), HOST)  # the other delivery wins
        assert other.outcome == "accepted"
        return real_find(session, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(receiver, "find_order", racing_find)
    result = receive_webhook(rt, body, signed(body), HOST)
    assert (result.status_code, result.outcome) == (200, "duplicate")
    assert sorted(str(e.outcome) for e in events(rt)) == ["None", "duplicate"]
