"""The one audit every fault test ends with: nothing lost, nothing sent twice, nothing unsettled.

It works on plain data (``AuditParts``: the sandbox's ledger and order list, our order rows) so
its own tests need no running sandbox; ``collect(stack)`` reads those from a running stack.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from worker.db.models import Order

if TYPE_CHECKING:
    from tests.pipeline import Stack

UNSETTLED = frozenset({"QUEUED", "UNKNOWN"})
# The sandbox's final outcome (GET /_sandbox/orders "final") as flexmit must report it.
FINAL_STATE = {"completed": "APPROVED", "expired": "EXPIRED", "cancelled": "CANCELLED",
               "declined": "DECLINED"}
SHOWN = 10  # orderIds named per problem in a failure message


@dataclass(frozen=True)
class AuditParts:
    """What the audit looks at: ``GET /_sandbox/ledger``, ``GET /_sandbox/orders`` rows
    (``orderId``, ``orderSessionKey``, ``final``) and our rows (``orderId``, ``state``,
    ``orderSessionKey``)."""

    ledger: Mapping[str, Any]
    sandbox_orders: Sequence[Mapping[str, Any]]
    db_orders: Sequence[Mapping[str, Any]]


def collect(stack: Stack) -> AuditParts:
    """The audit's inputs, read from a running stack."""
    with stack.runtime.sessions() as session:
        rows = session.execute(select(Order.order_id, Order.state, Order.order_session_key))
        ours = [{"orderId": oid, "state": state, "orderSessionKey": key}
                for oid, state, key in rows]
    return AuditParts(stack.ledger(), stack.sandbox_orders(), ours)


def audit(source: Stack | AuditParts, accepted: Collection[str], *,
          match_final: bool = False) -> None:
    """Raise AssertionError naming every lost, duplicated, extra or unsettled decline.

    ``match_final`` also requires every order to be final at FlexFactor and in the state that
    outcome means here (for tests that wait for the end of each rescue).
    """
    parts = source if isinstance(source, AuditParts) else collect(source)
    problems = find_problems(parts, set(accepted))
    if match_final:
        problems += final_mismatches(parts)
    if problems:
        raise AssertionError("audit failed:\n  " + "\n  ".join(problems))


def find_problems(parts: AuditParts, accepted: set[str]) -> list[str]:
    """Every audit finding as one line each; [] when the books balance."""
    ours = Counter(str(row["orderId"]) for row in parts.db_orders)
    theirs = Counter(str(row["orderId"]) for row in parts.sandbox_orders)
    problems = [
        _named("accepted but no order row (lost by flexmit)", accepted - set(ours)),
        _named("more than one order row", {k for k, n in ours.items() if n > 1}),
        _named("order row for an orderId never accepted", set(ours) - accepted),
        _named("accepted but never reached FlexFactor", accepted - set(theirs)),
        _named("sent twice: two FlexFactor orders", {k for k, n in theirs.items() if n > 1}),
        _named("FlexFactor order for an orderId never accepted", set(theirs) - accepted),
        _named("unsettled (QUEUED/UNKNOWN)",
               {str(r["orderId"]) for r in parts.db_orders if r["state"] in UNSETTLED}),
        _named("our orderSessionKey is not FlexFactor's", _key_mismatches(parts)),
    ]
    found = [p for p in problems if p]
    most = parts.ledger.get("flexfactor_orders_per_order_id_max", 0)
    if most > 1:
        found.append(f"ledger: flexfactor_orders_per_order_id_max = {most} (sent twice)")
    distinct = parts.ledger.get("distinct_orders")
    if distinct is not None and distinct != len(accepted):
        found.append(f"ledger: distinct_orders = {distinct}, accepted = {len(accepted)}")
    return found


def final_mismatches(parts: AuditParts) -> list[str]:
    """Orders still open at FlexFactor, or whose state here is not FlexFactor's outcome."""
    ours = {str(r["orderId"]): r["state"] for r in parts.db_orders}
    open_ids = {str(o["orderId"]) for o in parts.sandbox_orders if o.get("final") is None}
    wrong = {f"{o['orderId']} ({ours.get(str(o['orderId']))} != {expected_state(o)})"
             for o in parts.sandbox_orders if o.get("final") is not None
             and ours.get(str(o["orderId"])) != expected_state(o)}
    found = [_named("not final at FlexFactor yet", open_ids),
             _named("state differs from FlexFactor's outcome", wrong)]
    return [p for p in found if p]


def expected_state(sandbox_order: Mapping[str, Any]) -> str:
    """Our state for a sandbox order that reached its outcome (a chargeback comes last)."""
    if sandbox_order.get("chargeback"):
        return "CHARGEBACK"
    final = str(sandbox_order["final"])
    return FINAL_STATE.get(final, final)


def _key_mismatches(parts: AuditParts) -> set[str]:
    keys: dict[str, set[str]] = {}
    for row in parts.sandbox_orders:
        keys.setdefault(str(row["orderId"]), set()).add(str(row["orderSessionKey"]).lower())
    return {str(r["orderId"]) for r in parts.db_orders
            if r.get("orderSessionKey") and str(r["orderId"]) in keys
            and str(r["orderSessionKey"]).lower() not in keys[str(r["orderId"])]}


def _named(what: str, ids: set[str]) -> str:
    if not ids:
        return ""
    shown = ", ".join(sorted(ids)[:SHOWN])
    more = f" (+{len(ids) - SHOWN} more)" if len(ids) > SHOWN else ""
    return f"{what}: {len(ids)}: {shown}{more}"
