"""Turn an /evaluate answer (or failure) into the order's next state and next check."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.orm import Session

from worker.db.models import Attempt, Order
from worker.orders import FINAL, IllegalTransition, State, as_utc, record_event, transition, utcnow
from worker.protocols import RateLimitWaitTooLong
from worker.settings import Settings

log = structlog.get_logger(__name__)

# FlexFactor's /evaluate statuses (fact sheet §3.9, §5.3) onto our states.
STATUS_MAP: dict[str, State] = {
    "APPROVED": State.APPROVED,
    "DECLINED": State.DECLINED,
    "SUBMITTED": State.PENDING,
    "CHALLENGE": State.PENDING,
    "PROCESSING": State.PENDING,
    "CAPTUREREQUIRED": State.PENDING,
    "EXPIRED": State.EXPIRED,
    "CANCELLED": State.CANCELLED,
}


class NotSent(Exception):
    """Nothing was sent for this order (its batch stopped before its turn)."""


def ladder_delay(ladder: list[int], step: int) -> timedelta:
    """The wait before try ``step`` (0-based); the last rung repeats."""
    return timedelta(seconds=ladder[min(step, len(ladder) - 1)])


def store_attempts(session: Session, order: Order, records: list[Any]) -> None:
    """One ``attempts`` row per HTTP request the client made for this order."""
    for rec in records:
        session.add(Attempt(
            order_pk=order.id, route=rec.route, idempotency_key=rec.idempotency_key,
            started_at=utcnow(), latency_ms=rec.latency_ms, http_status=rec.status_code,
            outcome=rec.outcome, ff_status=None, trace_id=rec.trace_id,
            error_type=rec.error_type, field_errors=None,
        ))
    order.attempt_count += len(records)


def _release(order: Order, owner: str) -> None:
    if order.claim_owner == owner:
        order.claimed_until = None
        order.claim_owner = None


def _move(session: Session, order: Order, to: State, cause: str, detail: dict[str, Any],
          now: datetime) -> bool:
    """Transition unless the order already moved on (a late answer never moves it back)."""
    if order.state == to:
        order.check_count += 1
        record_event(session, order, cause=cause, detail=detail, now=now)
        return False
    try:
        transition(session, order, to, cause=cause, detail=detail, now=now)
    except IllegalTransition:
        record_event(session, order, cause=f"{cause}.ignored", detail=detail, now=now)
        return False
    order.check_count = 0
    return True


def apply_response(session: Session, order: Order, response: Any, settings: Settings, *,
                   owner: str) -> None:
    """Record a successful /evaluate answer."""
    now = utcnow()
    wire = response.model_dump(by_alias=True)
    status = str(wire.get("status") or "").upper().replace(" ", "")
    order.order_session_key = wire.get("orderSessionKey") or order.order_session_key
    order.ff_status = status
    _release(order, owner)
    target = STATUS_MAP.get(status, State.UNKNOWN)
    detail = {"ffStatus": status, "orderSessionKey": order.order_session_key}
    if target == State.PENDING and order.mode == "sync" and now >= as_utc(order.expiry_at):
        target = State.EXPIRED
    _move(session, order, target, "evaluate.response", detail, now)
    _schedule(order, settings, now)


def _schedule(order: Order, settings: Settings, now: datetime) -> None:
    state = State(order.state)
    if order.pending_action:  # e.g. a cancel owed since paid-elsewhere: due at once
        order.next_check_at = now
    elif state in FINAL:
        order.next_check_at = None
    elif state == State.PENDING:
        ladder = settings.sync_ladder_s if order.mode == "sync" else settings.pending_ladder_s
        order.next_check_at = now + ladder_delay(ladder, order.check_count)
    elif state == State.UNKNOWN:
        order.next_check_at = now + ladder_delay(settings.unknown_ladder_s, order.check_count)
    else:
        order.next_check_at = now + ladder_delay(settings.unsent_ladder_s, order.check_count)


def apply_error(session: Session, order: Order, error: Exception, settings: Settings, *,
                owner: str) -> None:
    """Record a failed /evaluate: final for a 400, UNKNOWN when the outcome is unknown."""
    from worker.flexfactor import errors as ff

    now = utcnow()
    _release(order, owner)
    detail: dict[str, Any] = {"error": type(error).__name__,
                              "traceId": getattr(error, "trace_id", None)}
    if isinstance(error, ff.FlexFactorValidationError):
        detail["fieldErrors"] = error.field_errors
        order.last_error = detail
        _move(session, order, State.FAILED, "evaluate.rejected_by_flexfactor", detail, now)
    elif isinstance(error, ff.FlexFactorConnectionError | ff.FlexFactorRateLimited
                    | ff.FlexFactorAuthError | RateLimitWaitTooLong | NotSent):
        # Nothing reached FlexFactor: the order keeps its state and is tried again soon.
        order.last_error = detail
        order.check_count += 1
        record_event(session, order, cause="evaluate.not_sent", detail=detail, now=now)
    else:
        # Timeout, 5xx, 409-in-progress: FlexFactor may have the order. Re-sending with the
        # same orderId later resolves it without ever creating a second one.
        order.last_error = detail
        if State(order.state) == State.QUEUED:
            _move(session, order, State.UNKNOWN, "evaluate.outcome_unknown", detail, now)
        else:
            order.check_count += 1
            record_event(session, order, cause="evaluate.outcome_unknown", detail=detail, now=now)
    log.warning("evaluate.failed", error=detail["error"], trace_id=detail["traceId"],
                state=order.state)
    _schedule(order, settings, now)
