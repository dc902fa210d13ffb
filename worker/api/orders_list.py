"""``GET /v1/orders``: the pull side of "Pushes to billing", for billing systems that poll.

Filters: ``state`` (repeatable, or a comma list), ``updatedSince`` (ISO 8601 with a zone;
inclusive, so a poller that passes the largest ``updatedAt`` it saw misses nothing and sees
that boundary order again: dedupe on ``orderId`` + ``updatedAt``). Results are ordered by
(``updatedAt``, internal id); ``nextCursor`` is an opaque position in that order, stable while
orders keep changing: an order updated during paging moves to the end and shows up again on a
later page (or poll), never silently skipped. ``nextCursor`` is null on the last page.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from sqlalchemy import Select, and_, or_, select

from worker.api.deps import Protected, RuntimeDep
from worker.api.views import iso
from worker.db.models import Order
from worker.orders import RETRY_ALLOWED, State, as_utc

router = APIRouter(prefix="/v1/orders", dependencies=Protected)

MAX_LIMIT = 1000


def parse_states(values: list[str] | None) -> list[State]:
    """States from repeated and/or comma-separated values; 422 naming any unknown one."""
    names = [part.strip().upper() for value in values or [] for part in value.split(",")]
    names = [name for name in names if name]
    unknown = [name for name in names if name not in State.__members__]
    if unknown:
        raise HTTPException(422, f"unknown state(s) {', '.join(unknown)}; expected any of "
                                 f"{', '.join(State.__members__)}")
    return [State(name) for name in dict.fromkeys(names)]


def parse_since(value: str | None) -> datetime | None:
    """An ISO 8601 instant with a zone (``Z`` or an offset), in UTC; 422 otherwise."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise HTTPException(422, f"updatedSince {value!r} is not an ISO 8601 date-time") from None
    if moment.tzinfo is None:
        raise HTTPException(422, "updatedSince needs a time zone (e.g. 2026-11-25T08:15:00Z)")
    return as_utc(moment)


def encode_cursor(updated_at: datetime, pk: int) -> str:
    """An opaque cursor for the position just after (``updated_at``, ``pk``)."""
    raw = json.dumps([as_utc(updated_at).isoformat(), pk], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    """The position a cursor names; 422 for anything this API did not hand out."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, pk = json.loads(raw)
        return as_utc(datetime.fromisoformat(stamp)), int(pk)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise HTTPException(422, "cursor is not one this API handed out") from None


def order_summary(order: Order) -> dict[str, Any]:
    """One order in a listing (``GET /v1/orders/{orderId}`` has the full history)."""
    return {
        "orderId": order.order_id,
        "state": order.state,
        "retryAllowed": State(order.state) in RETRY_ALLOWED,
        "amount": order.amount_cents,
        "currency": order.currency,
        "refundedAmount": order.refunded_cents,
        "orderSessionKey": order.order_session_key,
        "declinedAt": iso(order.declined_at),
        "expiryDateUtc": iso(order.expiry_at),
        "createdAt": iso(order.created_at),
        "updatedAt": iso(order.updated_at),
    }


def list_query(states: list[State], since: datetime | None,
               after: tuple[datetime, int] | None, limit: int) -> Select[Any]:
    """Orders matching the filters after the cursor position, in (updated_at, id) order."""
    query = select(Order).order_by(Order.updated_at, Order.id).limit(limit)
    if states:
        query = query.where(Order.state.in_([s.value for s in states]))
    if since is not None:
        query = query.where(Order.updated_at >= since)
    if after is not None:
        stamp, pk = after
        query = query.where(or_(Order.updated_at > stamp,
                                and_(Order.updated_at == stamp, Order.id > pk)))
    return query


@router.get("")
def list_orders(
    rt: RuntimeDep,
    state: Annotated[list[str] | None, Query(description="repeat, or a comma list")] = None,
    updated_since: Annotated[str | None, Query(alias="updatedSince",
                                               description="ISO 8601 with a zone")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    cursor: Annotated[str | None, Query(description="nextCursor of the previous page")] = None,
) -> dict[str, Any]:
    """A page of orders filtered by state and update time, oldest change first."""
    query = list_query(parse_states(state), parse_since(updated_since),
                       decode_cursor(cursor) if cursor else None, limit + 1)
    with rt.sessions() as session:
        rows: list[Order] = list(session.scalars(query))
    page = rows[:limit]
    more = len(rows) > limit
    return {
        "orders": [order_summary(order) for order in page],
        "nextCursor": encode_cursor(page[-1].updated_at, page[-1].id) if more else None,
    }
