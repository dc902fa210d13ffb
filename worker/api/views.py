"""JSON views of orders and rejects (what ``GET /v1/orders/{orderId}`` answers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.db.models import Order, OrderEvent, RejectedDecline
from worker.orders import as_utc


def iso(value: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, or None."""
    return None if value is None else as_utc(value).isoformat().replace("+00:00", "Z")


def order_view(session: Session, order: Order) -> dict[str, Any]:
    """The order as billing and operators see it, with its full history."""
    events = session.scalars(
        select(OrderEvent).where(OrderEvent.order_pk == order.id).order_by(OrderEvent.id)
    )
    return {
        "orderId": order.order_id,
        "state": order.state,
        "mode": order.mode,
        "amount": order.amount_cents,
        "currency": order.currency,
        "refundedAmount": order.refunded_cents,
        "orderSessionKey": order.order_session_key,
        "flexfactorStatus": order.ff_status,
        "declinedAt": iso(order.declined_at),
        "expiryDateUtc": iso(order.expiry_at),
        "createdAt": iso(order.created_at),
        "updatedAt": iso(order.updated_at),
        "attempts": order.attempt_count,
        "lastError": order.last_error,
        "history": [
            {"at": iso(e.at), "from": e.from_state, "to": e.to_state, "cause": e.cause,
             "detail": e.detail}
            for e in events
        ],
    }


def reject_view(reject: RejectedDecline) -> dict[str, Any]:
    """A decline refused at intake, reported as state REJECTED with its errors."""
    return {
        "orderId": reject.order_id,
        "state": "REJECTED",
        "errors": reject.errors,
        "receivedAt": iso(reject.received_at),
        "source": reject.source,
        "history": [],
    }


def find_order(session: Session, order_id: str) -> Order | None:
    """The order with merchant id ``order_id``."""
    return session.scalar(select(Order).where(Order.order_id == order_id))


def latest_reject(session: Session, order_id: str) -> RejectedDecline | None:
    """The most recent reject stored under ``order_id``."""
    return session.scalar(
        select(RejectedDecline).where(RejectedDecline.order_id == order_id)
        .order_by(RejectedDecline.id.desc()).limit(1)
    )
