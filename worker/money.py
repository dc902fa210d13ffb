"""Money is integer minor units inside flexmit; ``Decimal`` dollars only at FlexFactor's edge."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

_CENT = Decimal("0.01")
# ISO 4217 currencies whose minor unit is not 1/100, for display only (FlexFactor's amounts
# are in cents of USD; other exponents appear only if a merchant bills in them).
_EXPONENTS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG"), 0),
    **dict.fromkeys(("RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}


def cents_to_dollars(cents: int) -> Decimal:
    """Exact dollars for an integer number of cents, e.g. 1234 -> Decimal('12.34')."""
    if isinstance(cents, bool) or not isinstance(cents, int):
        raise TypeError(f"cents must be an int, not {type(cents).__name__}")
    # scaleb is exact (no rounding), quantize only fixes the exponent to two places.
    return Decimal(cents).scaleb(-2).quantize(_CENT)


def dollars_to_cents(dollars: Decimal | str) -> int:
    """Integer cents for a dollar amount; ValueError for fractions of a cent or non-numbers."""
    if isinstance(dollars, float):
        raise TypeError("pass dollars as Decimal or str; a float is already inexact")
    try:
        value = Decimal(dollars)
    except InvalidOperation:
        raise ValueError(f"not a dollar amount: {dollars!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a finite dollar amount: {dollars!r}")
    cents = value.scaleb(2)
    if cents != cents.to_integral_value():
        raise ValueError(f"{dollars!r} is not a whole number of cents")
    return int(cents)


def minor_unit_exponent(currency: str) -> int:
    """Decimal places of ``currency``'s minor unit (2 unless listed otherwise)."""
    return _EXPONENTS.get(currency.upper(), 2)


def format_cents(cents: int, currency: str = "USD") -> str:
    """Human form of an amount in minor units, e.g. (1234, 'USD') -> '12.34 USD'."""
    exponent = minor_unit_exponent(currency)
    amount = Decimal(cents).scaleb(-exponent)
    return f"{amount:,.{exponent}f} {currency.upper()}"
