"""Integer minor units <-> Decimal dollars."""

from __future__ import annotations

from decimal import Decimal

import pytest

from worker.money import cents_to_dollars, dollars_to_cents, format_cents


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (1234, "12.34"),
        (100, "1.00"),
        (-250, "-2.50"),
        (10**15 + 1, "10000000000000.01"),
    ],
)
def test_cents_to_dollars_is_exact(cents: int, text: str) -> None:
    dollars = cents_to_dollars(cents)
    assert dollars == Decimal(text)
    assert str(dollars) == text
    assert dollars_to_cents(dollars) == cents


@pytest.mark.parametrize(
    ("dollars", "cents"),
    [
        ("12.34", 1234),
        ("12.3", 1230),
        ("12", 1200),
        ("12.340", 1234),
        (Decimal("0.01"), 1),
        ("-0.50", -50),
        ("1E2", 10000),
    ],
)
def test_dollars_to_cents(dollars: Decimal | str, cents: int) -> None:
    assert dollars_to_cents(dollars) == cents


@pytest.mark.parametrize("bad", ["12.345", "0.001", Decimal("1.005"), "abc", "NaN", "Infinity", ""])
def test_dollars_to_cents_refuses_fractions_and_junk(bad: Decimal | str) -> None:
    with pytest.raises(ValueError):
        dollars_to_cents(bad)


def test_floats_and_bools_are_refused() -> None:
    with pytest.raises(TypeError):
        dollars_to_cents(12.34)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        cents_to_dollars(True)
    with pytest.raises(TypeError):
        cents_to_dollars(12.0)  # type: ignore[arg-type]


def test_round_trip_over_a_range() -> None:
    for cents in range(-1000, 100_000, 7):
        assert dollars_to_cents(cents_to_dollars(cents)) == cents
        assert dollars_to_cents(str(cents_to_dollars(cents))) == cents


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [
        (1234, "USD", "12.34 USD"),
        (123456789, "usd", "1,234,567.89 USD"),
        (5, "EUR", "0.05 EUR"),
        (500, "JPY", "500 JPY"),
        (1234, "KWD", "1.234 KWD"),
        (-99, "USD", "-0.99 USD"),
    ],
)
def test_format_cents(cents: int, currency: str, text: str) -> None:
    assert format_cents(cents, currency) == text
