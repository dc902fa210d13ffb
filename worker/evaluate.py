"""Send one order to FlexFactor ``/evaluate`` and record what came back.

The order is claimed with a compare-and-set before any outbound call, so a second delivery of the
same message (acks_late, visibility timeout, a sweep) does nothing. The merchant ``orderId`` is
the same on every try; the client makes a fresh ``idempotencyKey`` per request. Whatever happens,
the order ends the call in a state a sweep knows how to continue from.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Row, or_, text, update
from sqlalchemy.orm import Session

from worker import attempts
from worker.db.models import Order
from worker.evaluate_result import apply_error, apply_response, store_attempts
from worker.mapping import evaluate_payload
from worker.orders import State, as_utc, utcnow
from worker.protocols import RateLimitWaitTooLong
from worker.suppression import commit_and_refresh

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = structlog.get_logger(__name__)


def claimable_states(mode: str) -> list[State]:
    """States in which an evaluate message still has work to do."""
    states = [State.QUEUED, State.UNKNOWN]
    return [*states, State.PENDING] if mode == "sync" else states


def claim(session: Session, order_pk: int, owner: str, now: datetime, lease_s: int,
          mode: str) -> Row[Any] | None:
    """Compare-and-set claim: the claimed order's (orderId, decline, expiry, mode), or None if
    someone else has it or it needs no evaluation (one statement, no separate read)."""
    return session.execute(
        update(Order)
        .where(Order.id == order_pk, Order.state.in_(claimable_states(mode)))
        .where(or_(Order.claimed_until.is_(None), Order.claimed_until < now))
        .values(claimed_until=now + timedelta(seconds=lease_s), claim_owner=owner)
        .returning(Order.order_id, Order.decline, Order.expiry_at, Order.mode),
        execution_options={"synchronize_session": False},
    ).first()


def commit_relaxed(session: Session) -> None:
    """Commit without waiting for the WAL flush (PostgreSQL). Only for the claim: losing it in
    a database crash just frees the order for another try with the same orderId."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    session.commit()


def evaluate_order(rt: Runtime, order_pk: int, *, owner: str) -> str | None:
    """Claim, call /evaluate, record; returns the order's new state, or None if not claimed."""
    settings = rt.settings
    with rt.sessions() as session:
        row = claim(session, order_pk, owner, utcnow(), settings.claim_lease_s,
                    settings.flexfactor_mode)
        if row is None:
            session.rollback()
            log.info("evaluate.not_claimed", order_pk=order_pk)
            return None
        commit_relaxed(session)
    order_id, decline, expiry_at, mode = tuple(row)
    payload = evaluate_payload(decline, expiry_at=as_utc(expiry_at), settings=settings, mode=mode)
    structlog.contextvars.bind_contextvars(order_id=order_id)
    response, error, records = _call(rt, payload)
    with rt.sessions() as session:
        # Row lock: a webhook for this order may be being applied at this very moment.
        order = session.get(Order, order_pk, with_for_update=True)
        assert order is not None
        store_attempts(session, order, records)
        if error is None:
            apply_response(session, order, response, settings, owner=owner)
        else:
            apply_error(session, order, error, settings, owner=owner)
        commit_and_refresh(session, rt.redis)
        log.info("evaluate.recorded", state=order.state, ff_status=order.ff_status)
        return order.state


def _call(rt: Runtime, payload: dict[str, Any]) -> tuple[Any, Exception | None, list[Any]]:
    from pydantic import ValidationError

    from worker.flexfactor.errors import FlexFactorError, FlexFactorValidationError
    from worker.flexfactor.wire import EvaluateRequest

    try:
        request = EvaluateRequest.model_validate(payload)
    except ValidationError as exc:
        # Our own mapping produced something FlexFactor would refuse: final, for an operator.
        # Only field locations are kept; pydantic's messages quote the (tokenized) input.
        fields = {".".join(map(str, e["loc"])): [e["type"]] for e in exc.errors()}
        return None, FlexFactorValidationError("invalid /evaluate request built locally",
                                               field_errors=fields), []
    with attempts.collecting() as records:
        try:
            return rt.flexfactor.evaluate(request), None, records
        except (FlexFactorError, RateLimitWaitTooLong) as exc:
            return None, exc, records
