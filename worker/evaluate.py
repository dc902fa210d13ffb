"""Send orders to FlexFactor ``/evaluate`` and record what came back, a batch at a time.

One message names a handful of orders (``FLEXMIT_EVALUATE_BATCH``, like Hyperswitch's producer
pushing ids in batches): they are claimed together with one compare-and-set before any outbound
call, so a second delivery of the same message (acks_late, visibility timeout, a sweep) does
nothing. Each order gets its own POST under the shared limiter; the answers are recorded
together in one transaction. The merchant ``orderId`` is the same on every try; the client makes
a fresh ``idempotencyKey`` per request. Whatever happens, every order ends the call in a state a
sweep knows how to continue from; a worker killed mid-batch leaves its orders claimed until the
lease runs out, and the sweep sends them again with the same ``orderId``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Row, or_, select, text, update
from sqlalchemy.orm import Session

from worker import attempts
from worker.db.models import Order
from worker.evaluate_result import NotSent, apply_error, apply_response, store_attempts
from worker.flexfactor.errors import FlexFactorError
from worker.mapping import evaluate_payload
from worker.orders import State, as_utc, utcnow
from worker.protocols import RateLimitWaitTooLong
from worker.suppression import commit_and_refresh

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = structlog.get_logger(__name__)
_clock = time.monotonic  # a module attribute, so tests can drive time


@dataclass
class Call:
    """One order's /evaluate call: what came back (an answer or an error) and its attempts."""

    order_pk: int
    order_id: str
    response: Any = None
    error: Exception | None = None
    records: list[Any] = field(default_factory=list)

    @property
    def context(self) -> dict[str, str]:
        """Log context of this order's lines: its orderId and FlexFactor's last traceId."""
        traces = [r.trace_id for r in self.records if getattr(r, "trace_id", None)]
        return {"order_id": self.order_id, **({"trace_id": traces[-1]} if traces else {})}


def claimable_states(mode: str) -> list[State]:
    """States in which an evaluate message still has work to do."""
    states = [State.QUEUED, State.UNKNOWN]
    return [*states, State.PENDING] if mode == "sync" else states


def claim(session: Session, order_pks: Sequence[int], owner: str, now: datetime, lease_s: int,
          mode: str) -> list[Row[Any]]:
    """Compare-and-set claim of every order in ``order_pks`` that is free and still needs an
    evaluation: their (id, orderId, decline, expiry, mode), in id order (one statement)."""
    rows = session.execute(
        update(Order)
        .where(Order.id.in_(list(order_pks)), Order.state.in_(claimable_states(mode)))
        .where(or_(Order.claimed_until.is_(None), Order.claimed_until < now))
        .values(claimed_until=now + timedelta(seconds=lease_s), claim_owner=owner)
        .returning(Order.id, Order.order_id, Order.decline, Order.expiry_at, Order.mode),
        execution_options={"synchronize_session": False},
    ).all()
    return sorted(rows, key=lambda row: int(row[0]))


def commit_relaxed(session: Session) -> None:
    """Commit without waiting for the WAL flush (PostgreSQL). Only for the claim: losing it in
    a database crash just frees the orders for another try with the same orderId."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit TO OFF"))
    session.commit()


def evaluate_orders(rt: Runtime, order_pks: Sequence[int], *, owner: str) -> dict[int, str]:
    """Claim, call /evaluate for each claimed order, record; returns each claimed order's new
    state (orders someone else has, or that need nothing, are left out)."""
    settings = rt.settings
    with rt.sessions() as session:
        rows = claim(session, order_pks, owner, utcnow(), settings.claim_lease_s,
                     settings.flexfactor_mode)
        if not rows:
            session.rollback()
            log.info("evaluate.not_claimed", order_pks=list(order_pks))
            return {}
        commit_relaxed(session)
    # Stop calling at half the lease: the orders left are still ours, not yet another task's.
    calls = _call_all(rt, rows, deadline=_clock() + settings.claim_lease_s / 2)
    return _record(rt, calls, owner)


def evaluate_order(rt: Runtime, order_pk: int, *, owner: str) -> str | None:
    """``evaluate_orders`` for one order: its new state, or None if not claimed."""
    return evaluate_orders(rt, [order_pk], owner=owner).get(order_pk)


def _call_all(rt: Runtime, rows: list[Row[Any]], *, deadline: float) -> list[Call]:
    """One POST per claimed order, in turn. When the shared limit has no slot within the wait
    allowed, a call fails before anything was sent (e.g. the limiter's Redis is down), or the
    batch has used half its claim lease (a slow limit), the rest of the batch is not attempted:
    recorded as not sent, released and due again on the unsent ladder."""
    calls: list[Call] = []
    stopped: str | None = None
    for row in rows:
        pk, order_id, decline, expiry_at, mode = tuple(row)
        call = Call(int(pk), order_id)
        calls.append(call)
        if stopped is None and _clock() > deadline:
            stopped = "half the claim lease used"
        if stopped is not None:
            call.error = NotSent(f"not attempted: {stopped}")
            continue
        payload = evaluate_payload(decline, expiry_at=as_utc(expiry_at), settings=rt.settings,
                                   mode=mode)
        structlog.contextvars.bind_contextvars(order_id=order_id)
        try:
            _call(rt, payload, call)
        except Exception as exc:  # whatever it is, the batch is still recorded
            log.exception("evaluate.call_crashed", error=type(exc).__name__)
            call.error = exc
        finally:
            structlog.contextvars.unbind_contextvars("order_id", "trace_id")
        if call.error is not None and not isinstance(call.error, FlexFactorError):
            stopped = f"{type(call.error).__name__} earlier in the batch"
    return calls


def _record(rt: Runtime, calls: list[Call], owner: str) -> dict[int, str]:
    """Store every call's attempts and outcome in one transaction."""
    with rt.sessions() as session:
        # Row locks: a webhook for one of these orders may be being applied at this moment.
        orders = {o.id: o for o in session.scalars(
            select(Order).where(Order.id.in_([c.order_pk for c in calls]))
            .order_by(Order.id).with_for_update()
        )}
        for call in calls:
            order = orders[call.order_pk]
            store_attempts(session, order, call.records)
            with structlog.contextvars.bound_contextvars(**call.context):
                if call.error is None:
                    apply_response(session, order, call.response, rt.settings, owner=owner)
                else:
                    apply_error(session, order, call.error, rt.settings, owner=owner)
        commit_and_refresh(session, rt.redis)
        states = {pk: str(order.state) for pk, order in orders.items()}
        for call in calls:
            order = orders[call.order_pk]
            log.info("evaluate.recorded", **call.context, state=order.state,
                     ff_status=order.ff_status)
        return states


def _call(rt: Runtime, payload: dict[str, Any], call: Call) -> None:
    from pydantic import ValidationError

    from worker.flexfactor.errors import FlexFactorValidationError
    from worker.flexfactor.wire import EvaluateRequest

    try:
        request = EvaluateRequest.model_validate(payload)
    except ValidationError as exc:
        # Our own mapping produced something FlexFactor would refuse: final, for an operator.
        # Only field locations are kept; pydantic's messages quote the (tokenized) input.
        fields = {".".join(map(str, e["loc"])): [e["type"]] for e in exc.errors()}
        call.error = FlexFactorValidationError("invalid /evaluate request built locally",
                                               field_errors=fields)
        return
    with attempts.collecting() as records:
        try:
            call.response = rt.flexfactor.evaluate(request)
        except (FlexFactorError, RateLimitWaitTooLong) as exc:
            call.error = exc
        finally:
            call.records = records
