"""Operator views: ``flexmit status`` and ``flexmit report`` (numbers straight from the DB)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from worker.db.models import Order, RejectedDecline
from worker.money import format_cents
from worker.orders import State, as_utc, utcnow

if TYPE_CHECKING:
    from worker.runtime import Runtime

RESCUED = (State.APPROVED, State.PARTIALLY_REFUNDED, State.REFUNDED, State.CHARGEBACK)


def counts_by_state(session: Session, since: datetime | None = None,
                    until: datetime | None = None) -> dict[str, int]:
    """``{state: count}`` of orders (created in [since, until) when given)."""
    query = select(Order.state, func.count()).group_by(Order.state)
    if since is not None and until is not None:
        query = query.where(Order.created_at >= since, Order.created_at < until)
    return {state: n for state, n in session.execute(query)}


def oldest(session: Session, state: State) -> datetime | None:
    """When the oldest order still in ``state`` last changed."""
    value = session.scalar(select(func.min(Order.updated_at)).where(Order.state == state))
    return as_utc(value) if value is not None else None


def day_bounds(day: date, tz: Any) -> tuple[datetime, datetime]:
    """The merchant day ``day`` as a UTC half-open interval."""
    start = datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
    return start, start + timedelta(days=1)


def funnel(session: Session, day: date, tz: Any) -> dict[str, Any]:
    """The day's funnel: received, rejected, sent, approved, expired, amount rescued."""
    since, until = day_bounds(day, tz)
    states = counts_by_state(session, since, until)
    rejected = session.scalar(
        select(func.count()).select_from(RejectedDecline)
        .where(RejectedDecline.received_at >= since, RejectedDecline.received_at < until)
    ) or 0
    rescued_cents = session.scalar(
        select(func.coalesce(func.sum(Order.amount_cents), 0))
        .where(Order.created_at >= since, Order.created_at < until, Order.state.in_(RESCUED))
    ) or 0
    accepted = sum(states.values())
    approved = sum(states.get(s, 0) for s in RESCUED)
    sent = accepted - states.get(State.QUEUED, 0)
    return {"day": day.isoformat(), "received": accepted + rejected, "rejected": rejected,
            "accepted": accepted, "sent": sent, "approved": approved,
            "declined": states.get(State.DECLINED, 0), "expired": states.get(State.EXPIRED, 0),
            "pending": states.get(State.PENDING, 0), "rescued_cents": int(rescued_cents),
            "rescue_rate": round(approved / sent, 4) if sent else 0.0, "by_state": states}


def print_status(rt: Runtime, console: Console) -> None:
    """Orders by state and the oldest PENDING / UNKNOWN / QUEUED."""
    with rt.sessions() as session:
        states = counts_by_state(session)
        table = Table(title="orders by state")
        table.add_column("state")
        table.add_column("orders", justify="right")
        for state in State:
            if states.get(state):
                table.add_row(state.value, str(states[state]))
        console.print(table)
        now = utcnow()
        for state in (State.QUEUED, State.UNKNOWN, State.PENDING):
            since = oldest(session, state)
            if since is not None:
                console.print(f"oldest {state.value}: {int((now - since).total_seconds())} s")


def print_report(rt: Runtime, console: Console, day: date | None = None) -> None:
    """The funnel of ``day`` (default: today in the merchant's zone)."""
    tz = rt.settings.tz
    day = day or datetime.now(tz).date()
    with rt.sessions() as session:
        data = funnel(session, day, tz)
    table = Table(title=f"funnel for {data['day']} ({rt.settings.merchant_tz})")
    table.add_column("step")
    table.add_column("count", justify="right")
    for key in ("received", "rejected", "accepted", "sent", "approved", "declined", "expired",
                "pending"):
        table.add_row(key, str(data[key]))
    console.print(table)
    console.print(f"amount rescued: {format_cents(data['rescued_cents'], 'USD')}  "
                  f"rescue rate: {data['rescue_rate']:.1%}")
