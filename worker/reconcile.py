"""Status polls of managed PENDING orders (``GET /orders/{id}``) on a ladder; the expiry check.

Webhooks normally bring a managed order to its final state; these polls are the safety net that
gets there alone when webhooks are lost or switched off. The ladder is ``pending_ladder_s``
(Kill Bill's janitor re-checks PENDING after 1 h, then 1 d; Hyperswitch after 60 s, then 300 s
five times). A PENDING order's next check is never later than ``expiry_at + EXPIRY_GRACE``: that
one is the final check, and an order FlexFactor still reports as in progress then becomes EXPIRED.

Running twice is harmless: the sweep stamps ``dispatched_at`` with a compare-and-set before it
sends, and a poll claims its order only while the order is still due and nobody else holds it,
so a duplicate message (a second beat, a re-delivery) finds nothing to do and calls nobody.
A poll never changes an order that is already final; if FlexFactor says otherwise, the history
records the disagreement and a metric counts it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from worker import attempts
from worker.db.models import Order, state_is
from worker.dispatch import mark_dispatched, redispatch_grace, send_tasks
from worker.evaluate_result import ladder_delay, store_attempts
from worker.metrics import RECONCILE_DISAGREEMENTS, RECONCILE_POLLS
from worker.orders import (
    FINAL,
    State,
    as_utc,
    can_transition,
    record_event,
    transition,
    utcnow,
)
from worker.protocols import RateLimitWaitTooLong
from worker.settings import Settings
from worker.suppression import commit_and_refresh

if TYPE_CHECKING:
    from worker.flexfactor.wire import OrderDetails
    from worker.runtime import Runtime

log = structlog.get_logger(__name__)

POLL_TASK = "flexmit.poll"
SWEEP_BATCH = 1000  # Kill Bill's janitor: at most 1,000 items a pass
# FlexFactor stops working a managed order at its expiry; a minute later its answer is final.
EXPIRY_GRACE = timedelta(seconds=60)


@dataclass(frozen=True)
class Reading:
    """What one ``GET /orders/{id}`` answer means for us."""

    state: State  # PENDING = FlexFactor is not done yet
    note: str | None = None  # why the history should mention this poll (None: routine)


# ``status`` ints of GET /orders/{id} (fact sheet §7.1) onto our states. 2 and 6 are inferred
# (§7.2): 2 Cancelled is also how the portal shows "declined by Flex"; 6 Returned means refunded.
# Chargeback has no int code at all (§7.1), so a poll never reports one.
ORDER_STATUS: dict[int, Reading] = {
    0: Reading(State.PENDING),  # Draft: taken in, not picked up yet
    1: Reading(State.PENDING),  # Onhold: paused by FlexFactor
    2: Reading(State.CANCELLED),
    3: Reading(State.PENDING, "problem"),  # needs FlexFactor support: keep asking, tell people
    4: Reading(State.PENDING),  # Processing
    5: Reading(State.PENDING),  # Capturerequired
    6: Reading(State.REFUNDED),  # Returned
    7: Reading(State.APPROVED),  # Completed
}
# ``statusName`` wins over the int where the int is not known: FlexFactor's int for EXPIRED is
# NOT FOUND (§7.2, §10.8). The sandbox reports ``status`` 2 with ``statusName`` "Expired"
# (SandboxConfig.expired_status_code); matching on the name keeps us right whatever int it is.
STATUS_NAMES: dict[str, Reading] = {"expired": Reading(State.EXPIRED)}
UNRECOGNISED = Reading(State.PENDING, "unrecognised_status")

# A reported final state that agrees with the final state we already hold. FlexFactor may lag
# behind our own refunds and chargebacks, and reports a decline as 2 Cancelled.
AGREES: dict[State, frozenset[State]] = {
    State.APPROVED: frozenset({State.APPROVED, State.PARTIALLY_REFUNDED, State.REFUNDED,
                               State.CHARGEBACK}),
    State.REFUNDED: frozenset({State.REFUNDED, State.PARTIALLY_REFUNDED, State.CHARGEBACK}),
    State.CANCELLED: frozenset({State.CANCELLED, State.DECLINED}),
    State.EXPIRED: frozenset({State.EXPIRED}),
}


def read_status(status: int, status_name: str | None) -> Reading:
    """The meaning of FlexFactor's ``status`` / ``statusName`` pair."""
    by_name = STATUS_NAMES.get((status_name or "").strip().lower())
    return by_name or ORDER_STATUS.get(status, UNRECOGNISED)


def reported_state(reading: Reading, order: Order) -> State:
    """The state FlexFactor's answer implies for ``order`` (a partial refund stays partial)."""
    partial = 0 < order.refunded_cents < order.amount_cents
    if reading.state == State.REFUNDED and partial:
        return State.PARTIALLY_REFUNDED
    return reading.state


def path_to(current: State, target: State) -> list[State]:
    """The transitions that take ``current`` to ``target`` ([] when none may).

    A PENDING order FlexFactor reports as Returned was approved first (we missed it): it goes
    through APPROVED, so billing hears both.
    """
    if can_transition(current, target):
        return [target]
    if can_transition(current, State.APPROVED) and can_transition(State.APPROVED, target):
        return [State.APPROVED, target]
    return []


def next_check(now: datetime, expiry_at: datetime, delay: timedelta) -> datetime:
    """``now + delay``, but never later than the final check at ``expiry_at + EXPIRY_GRACE``."""
    final_check = as_utc(expiry_at) + EXPIRY_GRACE
    if final_check <= now:  # the final check itself could not be made: retry on ``delay``
        return now + delay
    return min(now + delay, final_check)


def is_final_check(order: Order, now: datetime) -> bool:
    """True once the order's expiry (plus the grace) has passed."""
    return now >= as_utc(order.expiry_at) + EXPIRY_GRACE


def _due(now: datetime) -> Any:
    return (state_is(State.PENDING), Order.mode == "managed", Order.next_check_at <= now,
            or_(Order.claimed_until.is_(None), Order.claimed_until < now))


def due_pending(session: Session, now: datetime, limit: int = SWEEP_BATCH, *,
                dispatch_grace: timedelta = timedelta(0)) -> list[int]:
    """Ids of managed PENDING orders due for a poll, not claimed, and not dispatched within
    ``dispatch_grace`` (that message is presumably still queued); oldest due first."""
    stale = now - dispatch_grace
    query = (
        select(Order.id).where(*_due(now))
        .where(or_(Order.dispatched_at.is_(None), Order.dispatched_at <= stale))
        .order_by(Order.next_check_at).limit(limit)
    )
    return list(session.scalars(query))


def sweep_pending(rt: Runtime, now: datetime | None = None) -> int:
    """Stamp due PENDING orders (compare-and-set), commit, then send one poll each."""
    now = now or utcnow()
    with rt.sessions() as session:
        grace = redispatch_grace(session, rt.settings)
        won = mark_dispatched(session, due_pending(session, now, dispatch_grace=grace), now)
        session.commit()
    sent = send_tasks(rt.celery, POLL_TASK, won) if won else 0
    if won:
        log.info("reconcile.swept", due=len(won), sent=sent)
    return sent


def claim_poll(session: Session, order_pk: int, owner: str, now: datetime, lease_s: int) -> bool:
    """Compare-and-set claim of a PENDING order that is still due; True if this caller won."""
    result = session.execute(
        update(Order).where(Order.id == order_pk, *_due(now))
        .values(claimed_until=now + timedelta(seconds=lease_s), claim_owner=owner)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def poll_order(rt: Runtime, order_pk: int, *, owner: str) -> str | None:
    """Claim, ``GET /orders/{id}``, record; the order's state, or None if not claimed."""
    with rt.sessions() as session:
        if not claim_poll(session, order_pk, owner, utcnow(), rt.settings.claim_lease_s):
            session.rollback()
            log.info("reconcile.not_claimed", order_pk=order_pk)
            return None
        session.commit()
        order = session.get(Order, order_pk)
        assert order is not None
        key = order.order_session_key
        structlog.contextvars.bind_contextvars(order_id=order.order_id)
    answer, error, records = _fetch(rt, key) if key else (None, None, [])
    with rt.sessions() as session:
        order = session.get(Order, order_pk, with_for_update=True)  # serialise with webhooks
        assert order is not None
        store_attempts(session, order, records)
        if order.claim_owner == owner:
            order.claimed_until, order.claim_owner = None, None
        outcome = record_poll(session, order, answer, error, rt.settings, now=utcnow())
        commit_and_refresh(session, rt.redis)
    RECONCILE_POLLS.labels(outcome).inc()
    log.info("reconcile.polled", outcome=outcome, state=order.state, ff_status=order.ff_status)
    return order.state


def _fetch(rt: Runtime, key: str) -> tuple[OrderDetails | None, Exception | None, list[Any]]:
    from worker.flexfactor.errors import FlexFactorError

    with attempts.collecting() as records:
        try:
            return rt.flexfactor.get_order(key), None, records
        except (FlexFactorError, RateLimitWaitTooLong) as exc:
            return None, exc, records


def record_poll(session: Session, order: Order, answer: OrderDetails | None,
                error: Exception | None, settings: Settings, *, now: datetime) -> str:
    """Apply one poll's result to ``order``; returns the outcome (the metric's label)."""
    if State(order.state) != State.PENDING:  # a webhook or a cancel moved it meanwhile
        return _compare(session, order, answer)
    if order.order_session_key is None:
        return _no_key(session, order, settings, now)
    if error is not None:
        return _failed(session, order, error, settings, now)
    assert answer is not None
    reading = read_status(answer.status, answer.status_name)
    order.ff_status = (answer.status_name or str(answer.status)).upper()[:32]
    detail = _detail(answer)
    target = reported_state(reading, order)
    if target != State.PENDING:
        _finish(session, order, target, "reconcile.poll", detail, now, settings)
        return "final"
    if is_final_check(order, now):
        _finish(session, order, State.EXPIRED, "expiry.final_check", detail, now, settings)
        return "expired"
    if reading.note:
        return _note(session, order, settings, now, reading.note, detail)
    _reschedule(order, settings, now)
    return "pending"


def _no_key(session: Session, order: Order, settings: Settings, now: datetime) -> str:
    # Never got FlexFactor's key: GET /orders/{id} cannot be asked. Left for an operator;
    # past the expiry nothing more can change, so the polls stop (no note every rung).
    if not is_final_check(order, now):
        return _note(session, order, settings, now, "no_session_key", {})
    order.next_check_at = None
    record_event(session, order, cause="reconcile.no_session_key",
                 detail={"note": "past expiry, unverified: left for an operator"}, now=now)
    return "no_session_key"


def _detail(answer: OrderDetails) -> dict[str, Any]:
    return {"ffStatus": answer.status, "statusName": answer.status_name,
            "orderSessionKey": answer.id}


def _failed(session: Session, order: Order, error: Exception, settings: Settings,
            now: datetime) -> str:
    from worker.flexfactor.errors import FlexFactorNotFound

    detail = {"error": type(error).__name__, "traceId": getattr(error, "trace_id", None)}
    if isinstance(error, FlexFactorNotFound):
        if is_final_check(order, now):  # FlexFactor has nothing better than "expired"
            _finish(session, order, State.EXPIRED, "expiry.final_check",
                    {**detail, "note": "FlexFactor does not know this order"}, now, settings)
            return "expired"
        return _note(session, order, settings, now, "not_found", detail)
    order.last_error = detail
    return _note(session, order, settings, now, "error", detail)


def _note(session: Session, order: Order, settings: Settings, now: datetime, what: str,
          detail: dict[str, Any]) -> str:
    record_event(session, order, cause=f"reconcile.{what}", detail=detail, now=now)
    _reschedule(order, settings, now)
    return what


def _reschedule(order: Order, settings: Settings, now: datetime) -> None:
    """The next rung of the ladder; past the expiry (a final check that failed) the short one."""
    order.check_count += 1
    past_expiry = is_final_check(order, now)
    ladder = settings.unsent_ladder_s if past_expiry else settings.pending_ladder_s
    order.next_check_at = next_check(now, order.expiry_at, ladder_delay(ladder, order.check_count))


def _finish(session: Session, order: Order, target: State, cause: str, detail: dict[str, Any],
            now: datetime, settings: Settings) -> None:
    steps = path_to(State(order.state), target)
    if not steps:  # cannot happen from PENDING today; if the table grows, never drop the order
        record_event(session, order, cause=f"{cause}.ignored",
                     detail={**detail, "reported": target.value}, now=now)
        order.check_count += 1
        order.next_check_at = now + ladder_delay(settings.pending_ladder_s, order.check_count)
        return
    for step in steps:
        transition(session, order, step, cause=cause, detail=detail, now=now)
    order.check_count = 0


def _compare(session: Session, order: Order, answer: OrderDetails | None) -> str:
    if answer is None:
        return "moved"
    reported = reported_state(read_status(answer.status, answer.status_name), order)
    current = State(order.state)
    if reported == State.PENDING or current not in FINAL or current in AGREES.get(reported, ()):
        return "moved"
    record_disagreement(session, order, reported, source="poll", detail=_detail(answer))
    return "disagreement"


def record_disagreement(session: Session, order: Order, reported: State, *, source: str,
                        detail: dict[str, Any] | None = None) -> None:
    """History note + metric: FlexFactor (via ``source``) reports ``reported``, a final state
    other than the one the order holds. The order never moves backwards; an operator decides."""
    current = State(order.state)
    record_event(session, order, cause="reconcile.disagreement", detail={
        **(detail or {}), "source": source, "current": current.value, "reported": reported.value,
    })
    RECONCILE_DISAGREEMENTS.labels(current.value, reported.value).inc()
    log.warning("reconcile.disagreement", current=current.value, reported=reported.value,
                source=source)
