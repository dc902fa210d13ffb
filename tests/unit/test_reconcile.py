"""The poll's mapping of FlexFactor order statuses, and the ladder's clamp to the final check."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from worker.db.models import Order
from worker.orders import State
from worker.reconcile import (
    EXPIRY_GRACE,
    next_check,
    path_to,
    read_status,
    reported_state,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("status", "name", "state"), [
    (7, "Completed", State.APPROVED),
    (6, "Returned", State.REFUNDED),
    (2, "Cancelled", State.CANCELLED),
    (0, "Draft", State.PENDING),
    (1, "Onhold", State.PENDING),
    (4, "Processing", State.PENDING),
    (5, "Capturerequired", State.PENDING),
])
def test_documented_statuses_map_to_our_states(status: int, name: str, state: State) -> None:
    reading = read_status(status, name)
    assert reading.state == state
    assert reading.note is None


def test_expired_is_recognised_by_its_name_whatever_the_int() -> None:
    # FlexFactor's int for EXPIRED is not documented; the sandbox sends 2 + "Expired".
    assert read_status(2, "Expired").state == State.EXPIRED
    assert read_status(9, "expired").state == State.EXPIRED


def test_problem_stays_pending_but_is_noted() -> None:
    reading = read_status(3, "Problem")
    assert (reading.state, reading.note) == (State.PENDING, "problem")


def test_an_unknown_int_stays_pending_and_is_noted() -> None:
    reading = read_status(42, None)
    assert (reading.state, reading.note) == (State.PENDING, "unrecognised_status")


def _order(amount: int, refunded: int) -> Order:
    return Order(amount_cents=amount, refunded_cents=refunded)


def test_returned_keeps_a_partial_refund_partial() -> None:
    returned = read_status(6, "Returned")
    assert reported_state(returned, _order(1999, 500)) == State.PARTIALLY_REFUNDED
    assert reported_state(returned, _order(1999, 0)) == State.REFUNDED
    assert reported_state(returned, _order(1999, 1999)) == State.REFUNDED


def test_a_pending_order_reported_returned_passes_through_approved() -> None:
    assert path_to(State.PENDING, State.REFUNDED) == [State.APPROVED, State.REFUNDED]
    assert path_to(State.PENDING, State.APPROVED) == [State.APPROVED]
    assert path_to(State.PENDING, State.EXPIRED) == [State.EXPIRED]


def test_a_final_order_never_moves_backwards() -> None:
    assert path_to(State.APPROVED, State.EXPIRED) == []
    assert path_to(State.CANCELLED, State.APPROVED) == []


def test_next_check_follows_the_ladder_well_before_expiry() -> None:
    expiry = NOW + timedelta(days=20)
    assert next_check(NOW, expiry, timedelta(hours=1)) == NOW + timedelta(hours=1)


def test_next_check_is_clamped_to_the_final_check() -> None:
    expiry = NOW + timedelta(minutes=30)
    assert next_check(NOW, expiry, timedelta(days=1)) == expiry + EXPIRY_GRACE


def test_after_a_missed_final_check_the_delay_applies_again() -> None:
    # The final check already failed (FlexFactor unreachable): retry later, never in the past.
    expiry = NOW - timedelta(hours=1)
    assert next_check(NOW, expiry, timedelta(seconds=30)) == NOW + timedelta(seconds=30)


def test_next_check_accepts_the_naive_datetimes_sqlite_returns() -> None:
    expiry = (NOW + timedelta(minutes=5)).replace(tzinfo=None)
    assert next_check(NOW, expiry, timedelta(hours=1)) == NOW + timedelta(minutes=5) + EXPIRY_GRACE
