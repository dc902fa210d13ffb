"""Undo a charge: refund an APPROVED order at FlexFactor, or cancel a rescue still in flight.

A refund is the one FlexFactor call made *while the caller waits* (the route and the CLI): the
operator or billing asking for money back needs to know whether it happened, and the call is
bounded (the shared rate limiter, the client's brief retries, its timeout). Everything else about
it follows the house pattern: the order row is claimed with a compare-and-set before the call
(a second, concurrent refund is refused, never sent), ``refunded_cents`` and the state move in one
transaction afterwards, and ``transition()`` writes the audit row, syncs the suppression and
queues the billing push. Money stays integer cents here; the client turns it into dollars.

A cancel never calls FlexFactor in the request: ``worker.cancel.request_cancel`` cancels locally
at once (the suppression lifts) and owes FlexFactor a cancel, which ``flexmit.remote_action``
makes (by ``orderSessionKey``, or ``external-cancel`` by our ``orderId`` without one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from worker import attempts
from worker.cancel import NotCancellable, request_cancel
from worker.db.models import Order
from worker.evaluate_result import store_attempts
from worker.money import cents_to_dollars, format_cents
from worker.orders import IllegalTransition, State, record_event, transition, utcnow
from worker.suppression import commit_and_refresh

if TYPE_CHECKING:
    from worker.flexfactor.wire import RefundResponse
    from worker.runtime import Runtime

log = structlog.get_logger(__name__)

REFUNDABLE: tuple[State, ...] = (State.APPROVED, State.PARTIALLY_REFUNDED)
CHARGED: tuple[State, ...] = (State.APPROVED, State.PARTIALLY_REFUNDED, State.REFUNDED,
                              State.CHARGEBACK)


class OrderNotFound(LookupError):
    """No order with this merchant ``orderId``."""


class Refused(Exception):
    """The request was refused; ``status`` is the HTTP answer, ``extra`` goes into its body."""

    def __init__(self, message: str, *, status: int = 409, **extra: Any) -> None:
        super().__init__(message)
        self.message, self.status, self.extra = message, status, extra


@dataclass(frozen=True)
class RefundResult:
    """What one successful refund did."""

    order_pk: int
    order_id: str
    state: str
    amount_cents: int  # refunded by this call
    refunded_cents: int  # in total so far
    remaining_cents: int
    currency: str
    transaction_id: str | None

    def wire(self) -> dict[str, Any]:
        """The ``refund`` part of the route's answer (cents, plus the dollars FlexFactor got)."""
        return {"amountCents": self.amount_cents,
                "amountToRefund": str(cents_to_dollars(self.amount_cents)),
                "refundedAmount": self.refunded_cents, "remainingAmount": self.remaining_cents,
                "transactionId": self.transaction_id}

    def summary(self) -> str:
        """One line for the CLI."""
        return (f"refunded {format_cents(self.amount_cents, self.currency)} of order "
                f"{self.order_id}: now {self.state}, "
                f"{format_cents(self.remaining_cents, self.currency)} left to refund")


@dataclass(frozen=True)
class CancelResult:
    """What a cancel request did; ``changed`` is False when the order was already cancelled."""

    order_pk: int
    order_id: str
    state: str
    changed: bool
    by_key: bool  # FlexFactor will be told by orderSessionKey (else external-cancel)

    def summary(self) -> str:
        """One line for the CLI."""
        if not self.changed:
            return f"order {self.order_id} was already CANCELLED"
        how = "cancel by orderSessionKey" if self.by_key else "external-cancel by orderId"
        return f"order {self.order_id} is CANCELLED; FlexFactor will be told ({how})"


def find_order(session: Session, order_id: str) -> Order:
    """The order with merchant id ``order_id``; OrderNotFound otherwise."""
    order = session.scalar(select(Order).where(Order.order_id == order_id))
    if order is None:
        raise OrderNotFound(f"no order with orderId {order_id!r}")
    return order


def remaining_cents(order: Order) -> int:
    """What can still be refunded: the amount less what was refunded already."""
    return max(order.amount_cents - (order.refunded_cents or 0), 0)


def check_refund(order: Order, amount_cents: int | None) -> int:
    """The cents to refund (the whole remainder when None); Refused when it cannot be."""
    check_request(order, amount_cents)
    left = remaining_cents(order)
    if amount_cents is None and left == 0:
        raise Refused(f"order {order.order_id} has nothing left to refund")
    cents = left if amount_cents is None else amount_cents
    if cents > left:
        raise Refused(f"amountCents {cents} is more than the {left} cents left to refund on "
                      f"order {order.order_id} ({order.refunded_cents} of "
                      f"{order.amount_cents} refunded already)", status=422,
                      remainingAmount=left)
    if not order.order_session_key:
        raise Refused(f"order {order.order_id} has no FlexFactor orderSessionKey to refund")
    return cents


def check_request(order: Order, amount_cents: int | None) -> None:
    """Refused unless the order is refundable and the amount (if given) is positive cents."""
    if State(order.state) not in REFUNDABLE:
        raise Refused(f"order {order.order_id} is {order.state}; only an APPROVED or "
                      "PARTIALLY_REFUNDED order can be refunded", state=order.state)
    if amount_cents is not None and (isinstance(amount_cents, bool)
                                     or not isinstance(amount_cents, int) or amount_cents <= 0):
        raise Refused("amountCents must be a positive whole number of cents, "
                      f"not {amount_cents!r}", status=422)


def claim_refund(session: Session, order_pk: int, owner: str, now: datetime,
                 lease_s: int) -> bool:
    """Compare-and-set claim of a refundable order nobody else holds."""
    result = session.execute(
        update(Order)
        .where(Order.id == order_pk, Order.state.in_(REFUNDABLE))
        .where(or_(Order.claimed_until.is_(None), Order.claimed_until < now))
        .values(claimed_until=now + timedelta(seconds=lease_s), claim_owner=owner)
        # The caller refreshes the order after commit; evaluating the criteria in Python
        # would compare SQLite's naive datetimes with our aware ones.
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def refund_order(rt: Runtime, order_id: str, amount_cents: int | None = None, *,
                 owner: str) -> RefundResult:
    """Refund ``amount_cents`` (default: all that is left) of an approved order at FlexFactor.

    Raises OrderNotFound, or Refused (nothing changed) when flexmit or FlexFactor refuses.
    """
    with structlog.contextvars.bound_contextvars(order_id=order_id):
        claimed = _start(rt, order_id, amount_cents, owner)
        response, error, records = _call(rt, claimed.key, claimed.cents)
        if error is not None:
            raise _record_failure(rt, claimed, owner, error, records)
        assert response is not None
        return _record_success(rt, claimed, owner, response, records)


@dataclass(frozen=True)
class _Claimed:
    order_pk: int
    key: str  # FlexFactor's orderSessionKey
    cents: int
    state_before: str


def _start(rt: Runtime, order_id: str, amount_cents: int | None, owner: str) -> _Claimed:
    with rt.sessions() as session:
        order = find_order(session, order_id)
        check_request(order, amount_cents)  # fail fast; the remainder is checked under the claim
        if not claim_refund(session, order.id, owner, utcnow(), rt.settings.claim_lease_s):
            session.rollback()
            raise Refused(f"a refund is in progress for order {order_id}; "
                          "try again when it has finished")
        session.commit()
        session.refresh(order)  # another refund may have finished just before our claim
        try:
            cents = check_refund(order, amount_cents)
        except Refused:
            _release(order, owner)
            session.commit()
            raise
        # Counted before the call, given back if it fails: FlexFactor's order.refunded webhook
        # carries no amount and may be processed before our answer is recorded; it reads
        # refunded_cents to tell a partial refund from a full one.
        order.refunded_cents = (order.refunded_cents or 0) + cents
        session.commit()
        assert order.order_session_key is not None
        return _Claimed(order.id, order.order_session_key, cents, order.state)


def _call(rt: Runtime, key: str,
          cents: int) -> tuple[RefundResponse | None, Exception | None, list[Any]]:
    from worker.flexfactor.errors import FlexFactorError
    from worker.protocols import RateLimitWaitTooLong

    with attempts.collecting() as records:
        try:
            return rt.flexfactor.refund(key, cents), None, records
        except (FlexFactorError, RateLimitWaitTooLong) as exc:
            return None, exc, records


def _release(order: Order, owner: str) -> None:
    if order.claim_owner == owner:
        order.claimed_until, order.claim_owner = None, None


def _record_success(rt: Runtime, claimed: _Claimed, owner: str, response: RefundResponse,
                    records: list[Any]) -> RefundResult:
    cents = claimed.cents
    with rt.sessions() as session:
        order = session.get(Order, claimed.order_pk)
        assert order is not None
        store_attempts(session, order, records)
        _release(order, owner)
        full = order.refunded_cents >= order.amount_cents
        target = State.REFUNDED if full else State.PARTIALLY_REFUNDED
        detail = {"amountCents": cents, "amountToRefund": str(cents_to_dollars(cents)),
                  "refundedCents": order.refunded_cents,
                  "transactionId": response.transaction_id}
        if order.state != claimed.state_before and order.state == target:
            # FlexFactor's order.refunded webhook for this very refund got there first.
            record_event(session, order, cause="refund", detail=detail)
        else:
            _move(session, order, target, detail)
        commit_and_refresh(session, rt.redis)
        log.info("refund.done", amount_cents=cents, state=order.state)
        return RefundResult(order.id, order.order_id, order.state, cents, order.refunded_cents,
                            remaining_cents(order), order.currency, response.transaction_id)


def _move(session: Session, order: Order, target: State, detail: dict[str, Any]) -> None:
    try:
        transition(session, order, target, cause="refund", detail=detail)
    except IllegalTransition:  # e.g. a chargeback came first: keep the money fact anyway
        record_event(session, order, cause="refund.recorded", detail=detail)


def _record_failure(rt: Runtime, claimed: _Claimed, owner: str, error: Exception,
                    records: list[Any]) -> Refused:
    status, cause, message = _classify(error)
    trace_id = getattr(error, "trace_id", None)
    code = getattr(error, "response_code", None)
    detail = {"amountCents": claimed.cents, "error": type(error).__name__, "traceId": trace_id,
              "responseCode": code}
    with rt.sessions() as session:
        order = session.get(Order, claimed.order_pk)
        assert order is not None
        store_attempts(session, order, records)
        _release(order, owner)
        # Give the reservation back. After an ambiguous failure FlexFactor may still have
        # refunded; its order.refunded webhook (or an operator) then settles the state.
        order.refunded_cents = max((order.refunded_cents or 0) - claimed.cents, 0)
        record_event(session, order, cause=cause, detail=detail)
        session.commit()
    log.warning("refund.failed", cause=cause, error=detail["error"], trace_id=trace_id)
    return Refused(f"{message}: {error}", status=status, traceId=trace_id, responseCode=code)


def _classify(error: Exception) -> tuple[int, str, str]:
    """(HTTP status, audit cause, message) for a refund that did not go through."""
    from worker.flexfactor import errors as ff
    from worker.protocols import RateLimitWaitTooLong

    if isinstance(error, ff.FlexFactorBusinessError):  # FAILED, e.g. 2001 over-refund
        return 409, "refund.refused_by_flexfactor", "FlexFactor refused the refund"
    unavailable = isinstance(error, ff.FlexFactorServerError) and error.status_code == 503
    if isinstance(error, ff.FlexFactorTimeout | ff.FlexFactorServerError) and not unavailable:
        return (504, "refund.outcome_unknown",
                "FlexFactor gave no clear answer; the refund may or may not have been made, "
                "check the order at FlexFactor before trying again")
    if unavailable or isinstance(error, ff.FlexFactorConnectionError | ff.FlexFactorRateLimited
                                 | RateLimitWaitTooLong):
        return 503, "refund.not_sent", "the refund was not sent; try again shortly"
    return 502, "refund.failed", "FlexFactor did not accept the refund request"


def cancel_order(rt: Runtime, order_id: str, *, cause: str = "merchant.cancel") -> CancelResult:
    """Cancel a QUEUED, UNKNOWN or PENDING order now; FlexFactor is told by a task.

    Raises OrderNotFound, or Refused for an order that was charged (use refund) or is over.
    """
    with rt.sessions() as session:
        order = find_order(session, order_id)
        if State(order.state) in CHARGED:
            hint = (f"; use POST /v1/orders/{order_id}/refund instead"
                    if State(order.state) in REFUNDABLE else "")
            raise Refused(f"order {order_id} is {order.state}: FlexFactor already charged it, "
                          f"so it cannot be cancelled{hint}", state=order.state)
        try:
            changed = request_cancel(session, order, cause=cause)
        except NotCancellable as exc:
            raise Refused(str(exc), state=order.state) from exc
        commit_and_refresh(session, rt.redis)
        result = CancelResult(order.id, order.order_id, order.state, changed,
                              by_key=bool(order.order_session_key))
    if changed:
        _nudge_remote_action(rt, result.order_pk)
    return result


def _nudge_remote_action(rt: Runtime, order_pk: int) -> None:
    # After commit; if the broker is down the sweep finds the pending_action anyway.
    from worker.dispatch import REMOTE_ACTION_TASK, send_tasks

    send_tasks(rt.celery, REMOTE_ACTION_TASK, [order_pk])
