"""The audit itself: it passes on balanced books and fails, naming the order, when a decline is
lost, sent twice, duplicated in our table, extra or unsettled."""

from __future__ import annotations

from typing import Any

import pytest

from tests.audit import AuditParts, audit

IDS = ["inv-1", "inv-2", "inv-3"]


def ledger(orders: list[dict[str, Any]]) -> dict[str, Any]:
    """A ledger as the sandbox computes it from its orders."""
    per_id: dict[str, int] = {}
    for order in orders:
        per_id[order["orderId"]] = per_id.get(order["orderId"], 0) + 1
    return {"distinct_orders": len(per_id),
            "flexfactor_orders_per_order_id_max": max(per_id.values(), default=0)}


def sandbox_row(oid: str, final: str | None = "completed",
                key: str | None = None) -> dict[str, Any]:
    return {"orderId": oid, "orderSessionKey": key or f"key-{oid}", "final": final}


def db_row(oid: str, state: str = "PENDING", key: str | None = None) -> dict[str, Any]:
    return {"orderId": oid, "state": state, "orderSessionKey": key or f"key-{oid}"}


def parts(sandbox: list[dict[str, Any]], ours: list[dict[str, Any]]) -> AuditParts:
    return AuditParts(ledger(sandbox), sandbox, ours)


def consistent() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [sandbox_row(i) for i in IDS], [db_row(i) for i in IDS]


def test_balanced_books_pass() -> None:
    sandbox, ours = consistent()
    audit(parts(sandbox, ours), IDS)


def test_settled_states_of_every_kind_pass() -> None:
    sandbox = [sandbox_row("inv-1"), sandbox_row("inv-2", "declined"), sandbox_row("inv-3")]
    ours = [db_row("inv-1", "APPROVED"), db_row("inv-2", "DECLINED"), db_row("inv-3", "PENDING")]
    audit(parts(sandbox, ours), IDS)


def test_a_decline_lost_before_flexfactor_fails() -> None:
    sandbox, ours = consistent()
    with pytest.raises(AssertionError, match="never reached FlexFactor: 1: inv-2"):
        audit(parts([r for r in sandbox if r["orderId"] != "inv-2"], ours), IDS)


def test_a_decline_lost_by_flexmit_fails() -> None:
    sandbox, ours = consistent()
    with pytest.raises(AssertionError, match=r"no order row \(lost by flexmit\): 1: inv-3"):
        audit(parts(sandbox, [r for r in ours if r["orderId"] != "inv-3"]), IDS)


def test_a_decline_sent_twice_fails() -> None:
    sandbox, ours = consistent()
    sandbox.append(sandbox_row("inv-1", key="key-second"))
    with pytest.raises(AssertionError) as caught:
        audit(parts(sandbox, ours), IDS)
    message = str(caught.value)
    assert "sent twice: two FlexFactor orders: 1: inv-1" in message
    assert "flexfactor_orders_per_order_id_max = 2" in message


def test_a_ledger_that_counts_a_second_order_fails_alone() -> None:
    """Even if the order list were trimmed, the ledger's own count gives a double send away."""
    sandbox, ours = consistent()
    books = AuditParts({"distinct_orders": 3, "flexfactor_orders_per_order_id_max": 2},
                       sandbox, ours)
    with pytest.raises(AssertionError, match="flexfactor_orders_per_order_id_max = 2"):
        audit(books, IDS)


def test_two_rows_for_one_order_id_fail() -> None:
    sandbox, ours = consistent()
    with pytest.raises(AssertionError, match="more than one order row: 1: inv-2"):
        audit(parts(sandbox, [*ours, db_row("inv-2")]), IDS)


def test_an_extra_order_never_accepted_fails() -> None:
    sandbox, ours = consistent()
    with pytest.raises(AssertionError, match="never accepted: 1: stray"):
        audit(parts([*sandbox, sandbox_row("stray")], [*ours, db_row("stray")]), IDS)


@pytest.mark.parametrize("state", ["QUEUED", "UNKNOWN"])
def test_an_unsettled_decline_fails(state: str) -> None:
    sandbox, ours = consistent()
    ours[0] = db_row("inv-1", state)
    with pytest.raises(AssertionError, match=r"unsettled \(QUEUED/UNKNOWN\): 1: inv-1"):
        audit(parts(sandbox, ours), IDS)


def test_our_key_pointing_at_another_flexfactor_order_fails() -> None:
    sandbox, ours = consistent()
    ours[1] = db_row("inv-2", key="key-of-a-second-order")
    with pytest.raises(AssertionError, match="orderSessionKey is not FlexFactor's: 1: inv-2"):
        audit(parts(sandbox, ours), IDS)


def test_match_final_wants_flexfactor_outcome() -> None:
    sandbox = [sandbox_row("inv-1", "completed"), sandbox_row("inv-2", "expired"),
               sandbox_row("inv-3", None)]
    ours = [db_row("inv-1", "APPROVED"), db_row("inv-2", "PENDING"), db_row("inv-3")]
    audit(parts(sandbox, ours), IDS)  # settled is enough without match_final
    with pytest.raises(AssertionError) as caught:
        audit(parts(sandbox, ours), IDS, match_final=True)
    message = str(caught.value)
    assert "inv-2 (PENDING != EXPIRED)" in message
    assert "not final at FlexFactor yet: 1: inv-3" in message
    assert "inv-1" not in message


def test_match_final_knows_a_chargeback_comes_last() -> None:
    sandbox, ours = consistent()
    sandbox[0]["chargeback"] = True
    with pytest.raises(AssertionError, match=r"inv-1 \(APPROVED != CHARGEBACK\)"):
        audit(parts(sandbox, [db_row(i, "APPROVED") for i in IDS]), IDS, match_final=True)
    ours = [db_row("inv-1", "CHARGEBACK"), db_row("inv-2", "APPROVED"), db_row("inv-3", "APPROVED")]
    audit(parts(sandbox, ours), IDS, match_final=True)


def test_many_problems_are_summarised_not_dumped() -> None:
    ids = [f"inv-{i:03d}" for i in range(50)]
    with pytest.raises(AssertionError, match=r"never reached FlexFactor: 50: .*\(\+40 more\)"):
        audit(parts([], [db_row(i) for i in ids]), ids)
