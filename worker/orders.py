"""The order state machine: states, allowed transitions as data, and the one place that moves them.

Every transition writes an ``OrderEvent`` (the audit trail) in the same transaction and keeps the
order's suppression row in step. A late or repeated event never moves an order backwards: a
transition that is not in ``TRANSITIONS`` raises ``IllegalTransition`` and callers decide whether
that is a bug or an event to record and ignore.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.orm import Session

from worker.db.bulk import insert_rows
from worker.db.models import BillingPush, Order, OrderEvent, Suppression


class State(StrEnum):
    QUEUED = "QUEUED"
    UNKNOWN = "UNKNOWN"
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"
    REFUNDED = "REFUNDED"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    CHARGEBACK = "CHARGEBACK"
    FAILED = "FAILED"
    REJECTED = "REJECTED"


S = State
_RESOLUTIONS = {S.PENDING, S.APPROVED, S.DECLINED, S.EXPIRED, S.CANCELLED, S.FAILED}

TRANSITIONS: dict[State, frozenset[State]] = {
    S.QUEUED: frozenset(_RESOLUTIONS | {S.UNKNOWN}),
    S.UNKNOWN: frozenset(_RESOLUTIONS),
    S.PENDING: frozenset({S.APPROVED, S.DECLINED, S.EXPIRED, S.CANCELLED, S.FAILED}),
    S.APPROVED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.CHARGEBACK}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED, S.CHARGEBACK}),
    S.FAILED: frozenset({S.QUEUED}),  # an operator re-queues after a fix
    S.DECLINED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
    S.REFUNDED: frozenset({S.CHARGEBACK}),
    S.CHARGEBACK: frozenset(),
    S.REJECTED: frozenset(),
}

# Billing may retry the charge itself in these states (CONTRACT.md, "Order states").
RETRY_ALLOWED: frozenset[State] = frozenset(
    {S.DECLINED, S.EXPIRED, S.CANCELLED, S.FAILED, S.REJECTED}
)
# FlexFactor has nothing more to do: no sweep needs to look at these again.
FINAL: frozenset[State] = frozenset(
    {S.APPROVED, S.DECLINED, S.EXPIRED, S.CANCELLED, S.REFUNDED, S.PARTIALLY_REFUNDED,
     S.CHARGEBACK, S.FAILED, S.REJECTED}
)
# Where a FlexFactor request is still ours to make or to resolve.
IN_FLIGHT: frozenset[State] = frozenset({S.QUEUED, S.UNKNOWN, S.PENDING})


class IllegalTransition(Exception):
    """The state machine does not allow this move (late, repeated or backwards event)."""

    def __init__(self, order_id: str, from_state: str, to_state: str) -> None:
        super().__init__(f"order {order_id}: {from_state} -> {to_state} is not allowed")
        self.from_state = from_state
        self.to_state = to_state


def utcnow() -> datetime:
    """Timezone-aware now in UTC (one place, so tests and code agree)."""
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def can_transition(from_state: str, to_state: str) -> bool:
    """True if the state machine allows ``from_state -> to_state``."""
    return State(to_state) in TRANSITIONS[State(from_state)]


def record_event(session: Session, order: Order, *, cause: str,
                 detail: dict[str, Any] | None = None, to_state: str | None = None,
                 from_state: str | None = None, now: datetime | None = None) -> None:
    """Append one audit row for ``order`` (a transition or a note that changed nothing)."""
    if order.id is None:
        session.flush()
    session.add(OrderEvent(order_pk=order.id, at=now or utcnow(), from_state=from_state,
                           to_state=to_state, cause=cause, detail=detail))


def transition(session: Session, order: Order, to_state: State, *, cause: str,
               detail: dict[str, Any] | None = None, now: datetime | None = None) -> State:
    """Move ``order`` to ``to_state`` with an audit row; returns the previous state."""
    now = now or utcnow()
    previous = State(order.state)
    if not can_transition(previous, to_state):
        raise IllegalTransition(order.order_id, previous, to_state)
    order.state = to_state
    order.updated_at = now
    if to_state in FINAL:
        order.next_check_at = None
    record_event(session, order, cause=cause, detail=detail, from_state=previous,
                 to_state=to_state, now=now)
    if _window(previous) != _window(to_state):
        _sync_suppression(session, order, now)
    if to_state in FINAL or previous in FINAL:
        queue_billing_push(session, order, previous, now)
    return previous


def queue_billing_push(session: Session, order: Order, previous: State, now: datetime) -> None:
    """Outbox row for billing (CONTRACT.md "Pushes to billing"), in the same transaction as
    the state change it reports; ``worker.notify`` delivers it with retries."""
    state = State(order.state)
    event_id = str(uuid.uuid4())
    payload = {
        "eventId": event_id,
        "orderId": order.order_id,
        "state": state.value,
        "previousState": previous.value,
        "at": now.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "orderSessionKey": order.order_session_key,
        "amount": order.amount_cents,
        "refundedAmount": order.refunded_cents or 0,
        "currency": order.currency,
        "retryAllowed": state in RETRY_ALLOWED,
    }
    session.add(BillingPush(event_id=event_id, order_pk=order.id, payload=payload,
                            created_at=now, attempts=0, next_attempt_at=now))


def start_suppression(session: Session, order: Order, now: datetime) -> None:
    """Open the suppression window of a freshly accepted order."""
    session.add(Suppression(order_pk=order.id, order_id=order.order_id, since=now,
                            until=order.expiry_at, reason="rescue_in_progress"))
    _note_changed(session, order)


def _window(state: State) -> str:
    """What a state means for billing's own retries: the suppression row and the answer to
    "may I retry?" are a function of this alone (QUEUED -> PENDING changes neither)."""
    if state in RETRY_ALLOWED:
        return "lifted"
    return "paid" if state in FINAL else "suppressed"


def _sync_suppression(session: Session, order: Order, now: datetime) -> None:
    # Noted here, written at commit (``_write_suppressions``): one set-based UPDATE per kind
    # of change, however many orders a transaction moved (the hot path of a batch).
    session.info.setdefault(_SYNC, {})[order.id] = (State(order.state), now)
    _note_changed(session, order)


_SYNC = "suppression_sync"


@event.listens_for(Session, "before_commit")
def _write_suppressions(session: Session) -> None:
    """Bring the suppression rows of the orders this transaction moved in step with their
    new state: lifted for a state where billing may retry, open otherwise."""
    pending: dict[int, tuple[State, datetime]] = session.info.pop(_SYNC, {})
    groups: dict[tuple[bool, str], tuple[list[int], datetime]] = {}
    for pk, (state, now) in pending.items():
        lifted = state in RETRY_ALLOWED
        reason = state.lower() if lifted else ("paid" if state in FINAL else "rescue_in_progress")
        pks, at = groups.get((lifted, reason), ([], now))
        pks.append(pk)
        groups[(lifted, reason)] = (pks, max(at, now))
    for (lifted, reason), (pks, at) in groups.items():
        stmt = update(Suppression).where(Suppression.order_pk.in_(pks))
        if lifted:
            stmt = stmt.where(Suppression.lifted_at.is_(None)).values(lifted_at=at, reason=reason)
        else:
            stmt = stmt.values(lifted_at=None, reason=reason)
        session.execute(stmt, execution_options={"synchronize_session": False})


@event.listens_for(Session, "after_rollback")
def _forget_suppressions(session: Session) -> None:
    """A rolled-back transition leaves the suppression rows as they were."""
    session.info.pop(_SYNC, None)


def _note_changed(session: Session, order: Order) -> None:
    # Collected here, pushed to the Redis suppression cache after commit (worker.suppression),
    # computed from the order itself so the refresh costs no query.
    session.info.setdefault("suppression_orders", {})[order.order_id] = order


def record_events_bulk(session: Session, order_pks: list[int], *, cause: str,
                       to_state: str | None = None, now: datetime | None = None) -> None:
    """``record_event`` for many orders at once (COPY / multi-row INSERT): bulk intake."""
    if not order_pks:
        return
    at = now or utcnow()
    insert_rows(session, OrderEvent, [
        # no "detail" key: the column is then SQL NULL, as for record_event(detail=None)
        {"order_pk": pk, "at": at, "from_state": None, "to_state": to_state, "cause": cause}
        for pk in order_pks
    ])


def start_suppressions_bulk(session: Session, orders: list[tuple[int, str, datetime]],
                            now: datetime) -> None:
    """``start_suppression`` for many fresh orders, given as ``(pk, orderId, expiry_at)``."""
    if not orders:
        return
    insert_rows(session, Suppression, [
        {"order_pk": pk, "order_id": oid, "since": now, "until": expiry, "lifted_at": None,
         "reason": "rescue_in_progress"} for pk, oid, expiry in orders
    ])
    session.info.setdefault("suppression_changed", set()).update(oid for _, oid, _ in orders)
