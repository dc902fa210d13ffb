"""What the operator commands print: ``flexmit status``, ``report``, ``orders show``."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session

from worker import opsview
from worker.api.views import find_order
from worker.db.models import Attempt, BillingPush, Order, OrderEvent, RejectedDecline, WebhookEvent
from worker.money import format_cents
from worker.orders import State, as_utc

if TYPE_CHECKING:
    from worker.runtime import Runtime


def _ts(value: datetime | None) -> str:
    """UTC to the second (``-`` for none)."""
    return "-" if value is None else as_utc(value).strftime("%Y-%m-%d %H:%M:%SZ")


def _show(console: Console, table: Table) -> None:
    """Print ``table``, or one line saying it has nothing in it."""
    console.print(table if table.row_count else f"{table.title}: none", markup=False)


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left")
    for name in columns:
        table.add_column(name, overflow="fold")
    return table


def print_status(rt: Runtime, console: Console) -> None:
    """Orders by state, queue depth, what is due, the oldest waiting, limiter and outbox."""
    snap = opsview.snapshot(rt)
    table = _table("orders by state", "state", "orders")
    for state in State:
        if snap["by_state"].get(state):
            table.add_row(state.value, str(snap["by_state"][state]))
    table.add_row("total", str(sum(snap["by_state"].values())))
    console.print(table)
    queue = opsview.queue_depth(rt.settings)
    if queue["error"]:
        console.print(f"queue depth: unknown ({queue['error']})")
    else:
        unacked = f", {queue['unacked']} unacked" if queue["unacked"] is not None else ""
        plural = "" if queue["ready"] == 1 else "s"
        console.print(f"queue depth: {queue['ready']} message{plural} waiting in '{opsview.QUEUE}' "
                      f"({queue['broker']} broker{unacked})")
    console.print(f"due now: {snap['due_now']} QUEUED/UNKNOWN orders")
    for state, found in snap["oldest"].items():
        if found is not None:
            age = opsview.age_text((snap["now"] - found[1]).total_seconds())
            console.print(f"oldest {state}: {found[0]} for {age}", markup=False)
    console.print(_limiter_line(opsview.limiter_state(rt.settings, rt.redis)))
    box = snap["outbox"]
    console.print(f"billing pushes undelivered: {box['pushes_undelivered']} "
                  f"(parked {box['pushes_parked']}); webhook events unprocessed: "
                  f"{box['webhooks_unprocessed']}")


def _limiter_line(state: dict[str, Any]) -> str:
    spacing = f"one request every {state['interval_ms']} ms ({state['rate_per_s']}/s)"
    if state["error"]:
        return f"limiter: {spacing}; state unknown ({state['error']})"
    blocked = (f"blocked for {state['blocked_s']} s (FlexFactor answered 429)"
               if state["blocked_s"] else "not blocked")
    return f"limiter: next free slot in {state['next_slot_ms']} ms, {blocked}; {spacing}"


def print_report(rt: Runtime, console: Console, day: date | None = None,
                 as_json: bool = False) -> None:
    """The funnel of ``day`` (default: today in the merchant's zone)."""
    tz = rt.settings.tz
    day = day or datetime.now(tz).date()
    with rt.sessions() as session:
        data = opsview.funnel(session, day, tz)
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    console.print(f"funnel for {data['day']} (merchant day in {rt.settings.merchant_tz}; "
                  "declines received that day, whenever they resolved)", markup=False)
    table = Table("step", "count")
    for key in opsview.FUNNEL_ROWS:
        table.add_row(key.replace("_", " "), str(data[key]))
    console.print(table)
    console.print(f"amount rescued: {opsview.money_text(data['rescued'])}")
    console.print(f"rescue rate: {data['rescue_rate']:.1%} (approved / sent)")


def print_order(rt: Runtime, order_id: str, console: Console) -> bool:
    """Everything about ``order_id`` (order and/or intake rejects); False if nothing is known."""
    with rt.sessions() as session:
        order = find_order(session, order_id)
        rejects = list(session.scalars(select(RejectedDecline)
                                       .where(RejectedDecline.order_id == order_id)
                                       .order_by(RejectedDecline.id)))
        if order is not None:
            _print_order(rt, session, order, console)
        if rejects:
            _print_rejects(rejects, console)
    return order is not None or bool(rejects)


def _print_order(rt: Runtime, session: Session, order: Order, console: Console) -> None:
    from worker.suppression import lookup

    answer = lookup(session, rt.redis, order.order_id)
    table = _table(f"order {order.order_id}", "field", "value")
    rows = {
        "state": order.state, "mode": order.mode,
        "amount": format_cents(order.amount_cents, order.currency),
        "refunded": format_cents(order.refunded_cents or 0, order.currency),
        "FlexFactor orderSessionKey": order.order_session_key or "-",
        "FlexFactor status": order.ff_status or "-",
        "declined at": _ts(order.declined_at), "expiry": _ts(order.expiry_at),
        "received": _ts(order.created_at), "last change": _ts(order.updated_at),
        "requests made": str(order.attempt_count), "checks": str(order.check_count),
        "next check": _ts(order.next_check_at),
        "last error": opsview.error_summary(order.last_error) or "-",
        "billing may retry": f"{'yes' if answer.retryAllowed else 'no'} ({answer.reason}"
                             + (f", until {answer.until})" if answer.until else ")"),
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table, markup=False)
    for printer in (_print_history, _print_attempts, _print_pushes, _print_webhooks):
        printer(session, order, console)


def _compact(value: Any) -> str:
    return "" if value is None else json.dumps(value, separators=(",", ":"), sort_keys=True)


def _print_history(session: Session, order: Order, console: Console) -> None:
    table = _table("history", "at", "from", "to", "cause", "detail")
    for e in session.scalars(select(OrderEvent).where(OrderEvent.order_pk == order.id)
                             .order_by(OrderEvent.id)):
        table.add_row(_ts(e.at), e.from_state or "", e.to_state or "", e.cause,
                      _compact(e.detail))
    _show(console, table)


def _print_attempts(session: Session, order: Order, console: Console) -> None:
    table = _table("FlexFactor requests", "at", "route", "outcome", "http", "ms", "traceId",
                   "error")
    for a in session.scalars(select(Attempt).where(Attempt.order_pk == order.id)
                             .order_by(Attempt.id)):
        table.add_row(_ts(a.started_at), a.route, a.outcome, str(a.http_status or "-"),
                      f"{a.latency_ms:.0f}" if a.latency_ms is not None else "-",
                      a.trace_id or "-", a.error_type or "")
    _show(console, table)


def _print_pushes(session: Session, order: Order, console: Console) -> None:
    table = _table("pushes to billing", "eventId", "state", "created", "delivered", "tries",
                   "last error")
    for p in session.scalars(select(BillingPush).where(BillingPush.order_pk == order.id)
                             .order_by(BillingPush.id)):
        delivered = _ts(p.delivered_at) if p.delivered_at else (
            "parked" if p.next_attempt_at is None else f"no, next {_ts(p.next_attempt_at)}")
        table.add_row(p.event_id, str(p.payload.get("state", "")), _ts(p.created_at),
                      delivered, str(p.attempts), p.last_error or "")
    _show(console, table)


def _print_webhooks(session: Session, order: Order, console: Console) -> None:
    table = _table("FlexFactor webhooks", "received", "event", "verified", "resent", "outcome")
    for w in session.scalars(select(WebhookEvent).where(WebhookEvent.order_pk == order.id)
                             .order_by(WebhookEvent.id)):
        table.add_row(_ts(w.received_at), w.event or "-", "yes" if w.verified else "no",
                      "yes" if w.is_resent else "no", w.outcome or w.reject_reason or "-")
    _show(console, table)


def _print_rejects(rejects: list[RejectedDecline], console: Console) -> None:
    table = _table("rejected at intake (state REJECTED, never sent)", "received", "source",
                   "ref", "errors")
    for r in rejects:
        errors = "\n".join(f"{k}: {'; '.join(map(str, v))}" for k, v in (r.errors or {}).items())
        table.add_row(_ts(r.received_at), r.source, r.source_ref or "", errors)
    _show(console, table)
