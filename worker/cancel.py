"""Stop a rescue: locally at once, then at FlexFactor by a task (no outbound call in a request).

``paid-elsewhere`` and cancel move the order to CANCELLED in the request's transaction (so billing's
suppression lifts immediately) and mark a ``pending_action`` of "cancel"; the sweep dispatches
``flexmit.remote_action``, which claims the order (waiting out any evaluate still in flight) and
calls ``/orders/{key}/cancel``, or ``/orders/{orderId}/external-cancel`` when FlexFactor's key was
never received, so the customer is never charged twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from worker.db.models import Order
from worker.evaluate_result import ladder_delay
from worker.orders import IN_FLIGHT, State, record_event, transition, utcnow

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = structlog.get_logger(__name__)

class NotCancellable(Exception):
    """The order is past the point where a cancel means anything (e.g. it was approved)."""


def request_cancel(session: Session, order: Order, *, cause: str, now: datetime | None = None,
                   detail: dict[str, object] | None = None) -> bool:
    """Cancel ``order`` locally and owe FlexFactor a cancel; False if already cancelled."""
    now = now or utcnow()
    if order.state == State.CANCELLED:
        return False
    if State(order.state) not in IN_FLIGHT:
        raise NotCancellable(f"order {order.order_id} is {order.state}; it cannot be cancelled")
    transition(session, order, State.CANCELLED, cause=cause, detail=detail, now=now)
    order.pending_action = "cancel"
    order.next_check_at = now
    order.check_count = 0
    return True


def claim_action(session: Session, order_pk: int, owner: str, now: datetime, lease_s: int) -> bool:
    """Compare-and-set claim of an order with a pending action."""
    result = session.execute(
        update(Order)
        .where(Order.id == order_pk, Order.pending_action.is_not(None))
        .where(or_(Order.claimed_until.is_(None), Order.claimed_until < now))
        .values(claimed_until=now + timedelta(seconds=lease_s), claim_owner=owner)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def run_pending_action(rt: Runtime, order_pk: int, *, owner: str) -> bool:
    """Perform the order's owed FlexFactor call; True when it is done."""
    from worker.flexfactor.errors import FlexFactorError, FlexFactorNotFound

    with rt.sessions() as session:
        if not claim_action(session, order_pk, owner, utcnow(), rt.settings.claim_lease_s):
            return False
        session.commit()
        order = session.get(Order, order_pk)
        assert order is not None
        key, merchant_id = order.order_session_key, order.order_id
    done: bool = True
    detail: dict[str, object] = {}
    try:
        if key:
            rt.flexfactor.cancel(key)
        else:
            rt.flexfactor.external_cancel(merchant_id)
    except FlexFactorNotFound:
        detail = {"note": "FlexFactor has no such order: nothing to cancel"}
    except FlexFactorError as exc:
        done, detail = False, {"error": type(exc).__name__, "traceId": exc.trace_id}
    except Exception as exc:  # the limiter refusing to wait, for example
        done, detail = False, {"error": type(exc).__name__}
    _record_action(rt, order_pk, owner, done, detail, by_key=bool(key))
    return done


def _record_action(rt: Runtime, order_pk: int, owner: str, done: bool, detail: dict[str, object],
                   *, by_key: bool) -> None:
    now = utcnow()
    with rt.sessions() as session:
        order = session.get(Order, order_pk)
        assert order is not None
        if order.claim_owner == owner:
            order.claimed_until, order.claim_owner = None, None
        route = "cancel" if by_key else "external-cancel"
        if done:
            order.pending_action, order.next_check_at = None, None
            record_event(session, order, cause=f"flexfactor.{route}", detail=detail, now=now)
        else:
            order.check_count += 1
            order.next_check_at = now + ladder_delay(rt.settings.unsent_ladder_s,
                                                     order.check_count)
            record_event(session, order, cause=f"flexfactor.{route}.failed", detail=detail,
                         now=now)
        session.commit()
    log.info("remote_action.recorded", done=done, route=route)
