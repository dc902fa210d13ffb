"""The demo's summary: gathered from the database and the sandbox ledger, printed as tables.

``gather`` returns plain JSON data (also written to ``summary.json`` in the demo directory), so
what the demo prints and what a test checks come from one place.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.db.models import Order, RejectedDecline
from worker.money import format_cents
from worker.opsview import RESCUED, counts_by_state
from worker.orders import IN_FLIGHT, State


@dataclass
class Tally:
    """What the API answered for the submitted batch."""

    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    unreadable: int = 0  # rows the CSV reader could not parse (never sent)
    rejected_fields: Counter[str] = field(default_factory=Counter)


def amounts_by_state(session: Session) -> dict[str, int]:
    """``{state: sum of amount_cents}`` over all orders."""
    query = select(Order.state, func.coalesce(func.sum(Order.amount_cents), 0))
    return {state: int(cents) for state, cents in session.execute(query.group_by(Order.state))}


def rejections_by_field(session: Session) -> dict[str, dict[str, Any]]:
    """``{field: {"rows": n, "example": first message}}`` over every rejected decline."""
    out: dict[str, dict[str, Any]] = {}
    for errors in session.scalars(select(RejectedDecline.errors)):
        for name, messages in (errors or {}).items():
            entry = out.setdefault(name, {"rows": 0, "example": ""})
            entry["rows"] += 1
            if not entry["example"] and messages:
                entry["example"] = str(messages[0])
    return dict(sorted(out.items(), key=lambda item: -item[1]["rows"]))


def sandbox_ledger(sandbox_root: str) -> dict[str, Any]:
    """The sandbox's ledger (``GET /_sandbox/ledger``), or ``{}`` if it no longer answers."""
    try:
        resp = httpx.get(f"{sandbox_root}/_sandbox/ledger", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())
    except httpx.HTTPError:
        return {}


def gather(sessions: sessionmaker[Session], tally: Tally, ledger: dict[str, Any],
           planned: dict[str, int], rate_limit: float) -> dict[str, Any]:
    """Every figure of the summary, as JSON-ready data."""
    with sessions() as session:
        states = counts_by_state(session)
        amounts = amounts_by_state(session)
        rejects = rejections_by_field(session)
        rejected_rows = session.scalar(select(func.count()).select_from(RejectedDecline)) or 0
    rescued = sum(amounts.get(s, 0) for s in RESCUED)
    return {
        "submitted": tally.sent + tally.unreadable, "accepted": tally.accepted,
        "duplicates": tally.duplicates, "rejected": tally.rejected,
        "unreadable": tally.unreadable, "rejected_rows_in_db": int(rejected_rows),
        "orders_in_db": sum(states.values()),
        "in_flight": sum(states.get(s, 0) for s in IN_FLIGHT),
        "by_state": states, "amount_by_state": amounts, "planned_states": planned,
        "rescued_cents": rescued, "at_stake_cents": sum(amounts.values()),
        "rejections_by_field": rejects,
        "sandbox": {
            "evaluate_calls": ledger.get("evaluate_calls_total"),
            "distinct_orders": ledger.get("distinct_orders"),
            "rate_limited_429": ledger.get("rate_limited_429"),
            "busiest_second": ledger.get("max_accepted_in_any_second"),
            "rate_limit": rate_limit,
            "webhooks_delivered": ledger.get("webhooks_delivered"),
            "webhooks_failed": ledger.get("webhooks_failed"),
        },
    }


def problems(summary: dict[str, Any]) -> list[str]:
    """Why the run does not count as a success (empty: every decline accounted for)."""
    found: list[str] = []
    accepted, in_db = summary["accepted"], summary["orders_in_db"]
    distinct = summary["sandbox"]["distinct_orders"]
    if accepted != in_db:
        found.append(f"{accepted} declines accepted but {in_db} orders in the database")
    if distinct != in_db:
        found.append(f"{in_db} orders in the database but the sandbox saw {distinct}")
    if summary["in_flight"]:
        found.append(f"{summary['in_flight']} orders still QUEUED/UNKNOWN/PENDING at the deadline")
    if summary["rejected"] != summary["rejected_rows_in_db"]:
        found.append(f"{summary['rejected']} rows rejected but {summary['rejected_rows_in_db']} "
                     "rejections stored")
    return found


def _state_table(summary: dict[str, Any]) -> Table:
    table = Table(title="orders by state")
    for name, justify in (("state", "left"), ("orders", "right"), ("amount", "right"),
                          ("planned by the sandbox", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    states, amounts = summary["by_state"], summary["amount_by_state"]
    planned = summary["planned_states"]
    for state in State:
        if states.get(state) or planned.get(state):
            table.add_row(state.value, str(states.get(state, 0)),
                          format_cents(amounts.get(state, 0)), str(planned.get(state, "-")))
    table.add_row("[bold]total[/]", str(summary["orders_in_db"]),
                  format_cents(summary["at_stake_cents"]), str(sum(planned.values())))
    return table


def _reject_table(summary: dict[str, Any]) -> Table:
    table = Table(title=f"rejected at intake: {summary['rejected']} rows, by field")
    table.add_column("field")
    table.add_column("rows", justify="right")
    table.add_column("why (first message)", overflow="fold")
    for name, entry in summary["rejections_by_field"].items():
        example = entry["example"]
        table.add_row(name, str(entry["rows"]),
                      example if len(example) <= 90 else example[:89] + "…")
    return table


def _sandbox_table(summary: dict[str, Any]) -> Table:
    box = summary["sandbox"]
    table = Table(title="FlexFactor sandbox ledger")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("/evaluate calls", str(box["evaluate_calls"]))
    table.add_row("distinct orders", str(box["distinct_orders"]))
    table.add_row("429 Too Many Requests", str(box["rate_limited_429"]))
    table.add_row("busiest second / limit", f"{box['busiest_second']} / {box['rate_limit']:g}")
    table.add_row("webhooks delivered (failed)",
                  f"{box['webhooks_delivered']} ({box['webhooks_failed']})")
    return table


def print_tables(console: Console, summary: dict[str, Any]) -> None:
    """Orders by state, the amount rescued, rejections by field, the sandbox's figures."""
    console.print(_state_table(summary))
    approved = summary["by_state"].get(State.APPROVED, 0)
    rate = approved / summary["orders_in_db"] if summary["orders_in_db"] else 0.0
    console.print(f"[bold green]amount rescued: {format_cents(summary['rescued_cents'])}[/] "
                  f"of {format_cents(summary['at_stake_cents'])} "
                  f"({approved} orders, {rate:.1%} of accepted)")
    console.print(_reject_table(summary))
    console.print(_sandbox_table(summary))


def print_verdict(console: Console, summary: dict[str, Any]) -> None:
    """The timings and whether every accepted decline was accounted for."""
    times = summary.get("timings", {})
    console.print("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
    if summary["by_state"] != summary["planned_states"]:
        console.print("[yellow]note: the end states differ from what the sandbox planned[/]")
    found = summary.get("problems", [])
    if found:
        console.print("[bold red]NOT OK:[/] " + "; ".join(found))
    else:
        console.print(f"[bold green]OK:[/] {summary['accepted']} accepted, "
                      f"{summary['orders_in_db']} orders, {summary['sandbox']['distinct_orders']}"
                      " FlexFactor orders; every one reached a final state")
