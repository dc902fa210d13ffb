"""Apply a stored, verified FlexFactor webhook event to its order (the ``flexmit.webhook`` task).

Claim and application happen in ONE transaction: the event row is claimed by compare-and-set
on ``processed_at`` and the order row is locked (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
serialises writers anyway), so a second delivery of the message does nothing, a status poll of
the same order waits its turn, and a crash leaves the event unprocessed for the sweep.

Mapping (fact sheet §6.2): ``order.completed`` → APPROVED, ``order.expired`` → EXPIRED,
``order.cancelled`` → CANCELLED, ``order.refunded`` → REFUNDED (PARTIALLY_REFUNDED when flexmit's
own records show a partial refund), ``payment.chargeback.received`` → CHARGEBACK;
``order.capturerequired``, ``challenge.*``, ``payout.*`` and unrecognised names are history notes.
The state machine decides: a late or repeated event never moves an order backwards. A refund or
chargeback that overtakes the ``order.completed`` it follows takes the order through APPROVED.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from worker.db.models import Order, WebhookEvent
from worker.dispatch import send_tasks
from worker.orders import State, can_transition, record_event, transition, utcnow
from worker.suppression import commit_and_refresh

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = structlog.get_logger(__name__)

WEBHOOK_TASK = "flexmit.webhook"
SWEEP_AFTER_S = 30  # an event still unprocessed this long after its message looks lost
SWEEP_BATCH = 500

EVENT_STATES: dict[str, State] = {
    "order.completed": State.APPROVED,
    "order.expired": State.EXPIRED,
    "order.cancelled": State.CANCELLED,
    "order.refunded": State.REFUNDED,
    "payment.chargeback.received": State.CHARGEBACK,
}
# Events that can only follow an approval (a late ``order.completed`` may still be on its way).
AFTER_APPROVAL = frozenset({State.REFUNDED, State.PARTIALLY_REFUNDED, State.CHARGEBACK})
FF_STATUS = {"order.completed": "APPROVED", "order.expired": "EXPIRED",
             "order.cancelled": "CANCELLED"}
NOTE_EVENTS = frozenset({"order.capturerequired", "challenge.presented", "challenge.attempted",
                         "challenge.passed", "challenge.failed", "payout.created",
                         "payout.updated"})
NOTE_PREFIXES = ("order.capturerequired", "challenge.", "payout.")


def find_order(session: Session, ff_order_id: str | None, external_order_id: str | None, *,
               lock: bool = False) -> Order | None:
    """The order an event names: by FlexFactor's key, else by the merchant orderId (an event
    may arrive before the /evaluate answer that carries the key was recorded)."""
    for column, value in ((Order.order_session_key, ff_order_id),
                          (Order.order_id, external_order_id)):
        if not value:
            continue
        query = select(Order).where(column.in_({value, value.lower()}))
        order = session.scalar(query.with_for_update() if lock else query)
        if order is not None:
            return order
    return None


def target_state(event: str, order: Order) -> State | None:
    """The state ``event`` asks for, or None for an event that is only a history note."""
    target = EVENT_STATES.get(event)
    if target == State.REFUNDED and 0 < order.refunded_cents < order.amount_cents:
        # The event carries no amount; flexmit's records say part of the money is still kept.
        return State.PARTIALLY_REFUNDED
    return target


def _claim(session: Session, event_pk: int, now: datetime) -> bool:
    result = session.execute(
        update(WebhookEvent)
        .where(WebhookEvent.id == event_pk, WebhookEvent.verified.is_(True),
               WebhookEvent.processed_at.is_(None))
        .values(processed_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def process_webhook_event(rt: Runtime, event_pk: int) -> str:
    """Apply event ``event_pk`` once; returns its outcome (``not_claimed`` if done already)."""
    now = utcnow()
    with rt.sessions() as session:
        if not _claim(session, event_pk, now):
            session.rollback()
            return "not_claimed"
        ev = session.get(WebhookEvent, event_pk)
        assert ev is not None
        order = _locked_order(session, ev)
        outcome = apply_event(session, ev, order, now)
        ev.outcome = outcome
        ev.order_pk = order.id if order is not None else None
        commit_and_refresh(session, rt.redis)
    log.info("webhook.processed", ff_event=ev.event, event_pk=event_pk, outcome=outcome,
             order_id=order.order_id if order is not None else None)
    return outcome


def _locked_order(session: Session, ev: WebhookEvent) -> Order | None:
    if ev.order_pk is not None:
        return session.scalar(select(Order).where(Order.id == ev.order_pk).with_for_update())
    return find_order(session, ev.ff_order_id, ev.external_order_id, lock=True)


def apply_event(session: Session, ev: WebhookEvent, order: Order | None, now: datetime) -> str:
    """Record ``ev`` against ``order`` (flushes, does not commit); returns the outcome."""
    name = ev.event or ""
    if order is None:
        return "recorded" if name.startswith("payout.") else "unknown_order"
    key = order.order_session_key
    if ev.ff_order_id and key and ev.ff_order_id.lower() != key.lower():
        # Same merchant orderId, another FlexFactor order: not ours to apply.
        _note(session, order, ev, "webhook.key_mismatch", now)
        return "key_mismatch"
    if ev.ff_order_id and not key:
        order.order_session_key = ev.ff_order_id  # the /evaluate answer was lost or is late
    target = target_state(name, order)
    if target is None:
        noted = name in NOTE_EVENTS or name.startswith(NOTE_PREFIXES)
        _note(session, order, ev, "webhook" if noted else "webhook.unrecognised", now)
        return "noted" if noted else "unrecognised_event"
    return _move(session, order, ev, target, now)


def steps_to(current: State, target: State) -> list[State]:
    """The transitions that take ``current`` to ``target`` ([] when none may).

    Webhooks arrive in any order: a refund or chargeback of an order we still hold as in
    flight means FlexFactor approved it first and that event is late or lost, so the order
    goes through APPROVED (billing hears both); the late ``order.completed`` is then ignored.
    """
    if can_transition(current, target):
        return [target]
    if (target in AFTER_APPROVAL and can_transition(current, State.APPROVED)
            and can_transition(State.APPROVED, target)):
        return [State.APPROVED, target]
    return []


def _move(session: Session, order: Order, ev: WebhookEvent, target: State,
          now: datetime) -> str:
    if order.state == target:
        _note(session, order, ev, "webhook.already", now)
        return "already_in_state"
    steps = steps_to(State(order.state), target)
    if not steps:
        _note(session, order, ev, "webhook.ignored", now)
        log.warning("webhook.ignored", ff_event=ev.event, state=order.state,
                    order_id=order.order_id)
        return "ignored"
    for step in steps:
        implied = step != target
        detail = {**_detail(ev), "impliedBy": ev.event} if implied else _detail(ev)
        transition(session, order, step, cause="webhook", detail=detail, now=now)
        if implied:
            order.ff_status = "APPROVED"
    order.ff_status = FF_STATUS.get(ev.event or "", order.ff_status)
    return "applied"


def _detail(ev: WebhookEvent) -> dict[str, Any]:
    return {"event": ev.event, "webhookEventId": ev.id, "flexfactorOrderId": ev.ff_order_id,
            "confirmationId": ev.confirmation_id, "isResent": ev.is_resent}


def _note(session: Session, order: Order, ev: WebhookEvent, cause: str, now: datetime) -> None:
    detail = {**_detail(ev), "state": order.state}
    record_event(session, order, cause=cause, detail=detail, now=now)


def sweep_unprocessed(rt: Runtime, now: datetime | None = None) -> int:
    """Re-send ``flexmit.webhook`` for verified events left unprocessed; returns messages sent.

    Harmless when run twice: the task claims its event before doing anything.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=SWEEP_AFTER_S)
    with rt.sessions() as session:
        pks = list(session.scalars(
            select(WebhookEvent.id)
            .where(WebhookEvent.verified.is_(True), WebhookEvent.processed_at.is_(None))
            .where(or_(WebhookEvent.dispatched_at.is_(None), WebhookEvent.dispatched_at < cutoff))
            .order_by(WebhookEvent.id)
            .limit(SWEEP_BATCH)
        ))
        if not pks:
            return 0
        session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(pks))
                        .values(dispatched_at=now))
        session.commit()
    sent = send_tasks(rt.celery, WEBHOOK_TASK, pks)
    log.info("webhook.sweep_dispatched", events=len(pks), sent=sent)
    return sent
