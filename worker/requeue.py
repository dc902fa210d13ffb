"""``flexmit requeue``: send FAILED and dead-lettered work round again after an operator's fix.

* FAILED orders (FlexFactor refused the request itself) go FAILED -> QUEUED through the state
  machine (cause ``operator.requeue``: audit row, suppression back on, a push tells billing),
  due now; the evaluate message is sent after commit.
* "Dead-lettered" orders are QUEUED / UNKNOWN orders the sweep keeps re-trying without an
  outcome (``check_count`` or ``dispatch_count`` at or above a threshold): their ladder restarts
  and they are due now (a live claim is never taken away).
* Undelivered billing pushes that are parked or have failed at least once are due now; the
  push sweep sends them on its next pass.

Orders whose rescue window has already closed are skipped: FlexFactor would only expire them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from worker.db.models import BillingPush, Order
from worker.orders import State, as_utc, record_event, transition, utcnow
from worker.suppression import commit_and_refresh

if TYPE_CHECKING:
    from worker.runtime import Runtime

CAUSE = "operator.requeue"
STUCK_STATES = (State.QUEUED, State.UNKNOWN)


@dataclass
class RequeueResult:
    """What a requeue did (or, dry, would do)."""

    orders: list[tuple[str, str]] = field(default_factory=list)  # (orderId, from state)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (orderId, why)
    pushes: list[tuple[str, str]] = field(default_factory=list)  # (push eventId, orderId)
    sent: int = 0


@dataclass(frozen=True)
class Selection:
    """Which work to requeue."""

    order_id: str | None = None
    since: datetime | None = None
    stuck: bool = False
    min_checks: int = 5
    pushes: bool = False


def failed_orders(session: Session, sel: Selection) -> list[Order]:
    """FAILED orders matching the selection (``since``: failed at or after), oldest first."""
    query = select(Order).where(Order.state == State.FAILED)
    return _narrow(session, query, sel)


def stuck_orders(session: Session, sel: Selection) -> list[Order]:
    """QUEUED / UNKNOWN orders re-tried ``min_checks`` times or more without an outcome."""
    query = select(Order).where(
        Order.state.in_(STUCK_STATES),
        or_(Order.check_count >= sel.min_checks, Order.dispatch_count >= sel.min_checks))
    return _narrow(session, query, sel)


def _narrow(session: Session, query: Any, sel: Selection) -> list[Order]:
    if sel.order_id is not None:
        query = query.where(Order.order_id == sel.order_id)
    if sel.since is not None:
        query = query.where(Order.updated_at >= sel.since)
    return list(session.scalars(query.order_by(Order.updated_at, Order.id).with_for_update()))


def stalled_pushes(session: Session, sel: Selection,
                   now: datetime) -> list[tuple[BillingPush, str]]:
    """Undelivered pushes that are parked or failed at least once, with their orderId."""
    query = (
        select(BillingPush, Order.order_id).join(Order, Order.id == BillingPush.order_pk)
        .where(BillingPush.delivered_at.is_(None),
               or_(BillingPush.next_attempt_at.is_(None), BillingPush.attempts > 0))
        # A push being POSTed right now is left alone: resetting it could deliver it twice.
        .where(or_(BillingPush.claimed_until.is_(None), BillingPush.claimed_until < now))
        .order_by(BillingPush.id)
    )
    if sel.order_id is not None:
        query = query.where(Order.order_id == sel.order_id)
    if sel.since is not None:
        query = query.where(BillingPush.created_at >= sel.since)
    return [(push, oid) for push, oid in session.execute(query)]


def _requeue_order(session: Session, order: Order, now: datetime) -> None:
    """Make ``order`` due now with a fresh ladder; FAILED goes back to QUEUED."""
    detail = {"previousError": order.last_error, "checks": order.check_count}
    if order.state == State.FAILED:
        transition(session, order, State.QUEUED, cause=CAUSE, detail=detail, now=now)
    else:
        record_event(session, order, cause=CAUSE, detail=detail, now=now)
    order.last_error = None
    order.check_count = 0
    order.next_check_at = now
    order.dispatched_at = now
    order.dispatch_count += 1


def _apply_orders(session: Session, orders: list[Order], result: RequeueResult,
                  now: datetime, dry_run: bool) -> list[int]:
    pks: list[int] = []
    for order in orders:
        if as_utc(order.expiry_at) <= now:
            result.skipped.append((order.order_id, "rescue window closed"))
        elif order.claimed_until is not None and as_utc(order.claimed_until) > now:
            result.skipped.append((order.order_id, "a worker holds it right now"))
        else:
            result.orders.append((order.order_id, order.state))
            if not dry_run:
                _requeue_order(session, order, now)
                pks.append(order.id)
    return pks


def requeue(rt: Runtime, sel: Selection, *, dry_run: bool = False,
            now: datetime | None = None) -> RequeueResult:
    """Requeue what ``sel`` names; commit, then send the evaluate messages."""
    from worker.dispatch import send_evaluate

    now = now or utcnow()
    result = RequeueResult()
    with rt.sessions() as session:
        orders = failed_orders(session, sel) + (stuck_orders(session, sel) if sel.stuck else [])
        pks = _apply_orders(session, orders, result, now, dry_run)
        if sel.pushes:
            for push, order_id in stalled_pushes(session, sel, now):
                result.pushes.append((push.event_id, order_id))
                if not dry_run:
                    session.execute(update(BillingPush).where(BillingPush.id == push.id)
                                    .values(next_attempt_at=now))
        if dry_run:
            session.rollback()
        else:
            commit_and_refresh(session, rt.redis)
    result.sent = send_evaluate(rt.celery, pks, batch=rt.settings.evaluate_batch) if pks else 0
    return result
