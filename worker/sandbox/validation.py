"""/evaluate request validation, reported the ASP.NET way: PascalCase dotted paths → messages."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from worker.sandbox.config import SandboxConfig
from worker.sandbox.wire import parse_iso

Errors = dict[str, list[str]]

ROOT_REQUIRED = ("orderId", "idempotencyKey", "isDeclined", "mid", "isMIT")
OBJECTS = ("transaction", "payer", "billingInformation", "paymentMethod")
TX_REQUIRED = ("id", "amount", "currency", "timestampUtc")
TX_STRICT = ("responseCode", "avsResultCode", "cvvResultCode")
BILLING_REQUIRED = ("firstName", "lastName", "country", "countryCode", "addressLine1", "city")
CARD_REQUIRED = ("cardNumber", "expirationMonth", "expirationYear")
US_NAMES = {"US", "USA", "UNITED STATES", "UNITED STATES OF AMERICA"}
MIN_AMOUNT, MAX_AMOUNT = 10, 20000  # sandbox: > 10 and < 20000 cents (§8.4)


def pascal(name: str) -> str:
    """``orderId`` → ``OrderId`` (``isMIT`` → ``IsMIT``)."""
    return name[:1].upper() + name[1:]


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _add(errors: Errors, path: str, message: str) -> None:
    errors.setdefault(path, []).append(message)


def _required(errors: Errors, obj: dict[str, Any], names: tuple[str, ...], prefix: str) -> None:
    for name in names:
        if _missing(obj.get(name)):
            path = f"{prefix}{pascal(name)}"
            message = "Merchant's orderId is required" if path == "OrderId" else None
            _add(errors, path, message or f"The {pascal(name)} field is required.")


def validate_evaluate(body: Any, config: SandboxConfig, now: datetime) -> Errors:
    """Every problem with an /evaluate body; empty when it is acceptable."""
    if not isinstance(body, dict):
        return {"$": ["The JSON value could not be converted to EvaluateRequest."]}
    errors: Errors = {}
    _required(errors, body, ROOT_REQUIRED, "")
    _check_root(errors, body, config, now)
    for name in OBJECTS:
        sub = body.get(name)
        if not isinstance(sub, dict):
            _add(errors, pascal(name), f"The {pascal(name)} field is required.")
            continue
        CHECKS[name](errors, sub, config)
    return errors


def _check_root(errors: Errors, body: dict[str, Any], config: SandboxConfig, now: datetime) -> None:
    for name in ("isDeclined", "isMIT"):
        if not _missing(body.get(name)) and not isinstance(body.get(name), bool):
            _add(errors, pascal(name), f"The field {pascal(name)} is invalid.")
    if not _missing(body.get("mid")) and str(body.get("mid")).lower() != config.mid.lower():
        _add(errors, "Mid", "The field Mid is invalid.")
    key = body.get("idempotencyKey")
    if not _missing(key) and not _is_guid(key):
        _add(errors, "IdempotencyKey", "The field IdempotencyKey is invalid.")
    kind = body.get("transactionType")
    if kind is not None and str(kind).upper() not in {"AUTHORIZATION", "PURCHASE"}:
        _add(errors, "TransactionType", "The field TransactionType is invalid.")
    _check_expiry(errors, body, config, now)


def _check_expiry(
    errors: Errors, body: dict[str, Any], config: SandboxConfig, now: datetime
) -> None:
    raw = body.get("expiryDateUtc")
    if _missing(raw):
        if config.mode == "managed" and body.get("isMIT") is True:
            _add(errors, "ExpiryDateUtc", "The ExpiryDateUtc field is required.")
        return
    moment = parse_iso(raw)
    if moment is None or moment <= now:
        _add(errors, "ExpiryDateUtc", "The field ExpiryDateUtc is invalid.")


def _is_guid(value: Any) -> bool:
    try:
        uuid.UUID(str(value))
    except ValueError:
        return False
    return True


def _check_transaction(errors: Errors, tx: dict[str, Any], config: SandboxConfig) -> None:
    _required(errors, tx, TX_REQUIRED, "Transaction.")
    if config.strict_transaction_fields:
        _required(errors, tx, TX_STRICT, "Transaction.")
    amount = tx.get("amount")
    if amount is None:
        return
    if isinstance(amount, bool) or not isinstance(amount, int):
        _add(errors, "Transaction.Amount", "The field Amount is invalid.")
    elif not MIN_AMOUNT < amount < MAX_AMOUNT:
        _add(errors, "Transaction.Amount", "The field Amount must be between 11 and 19999.")
    if not _missing(tx.get("timestampUtc")) and parse_iso(tx.get("timestampUtc")) is None:
        _add(errors, "Transaction.TimestampUtc", "The field TimestampUtc is invalid.")


def _check_payer(errors: Errors, payer: dict[str, Any], config: SandboxConfig) -> None:
    _required(errors, payer, ("email",), "Payer.")


def _check_billing(errors: Errors, billing: dict[str, Any], config: SandboxConfig) -> None:
    _required(errors, billing, BILLING_REQUIRED, "BillingInformation.")
    if _missing(billing.get("zipCode")) and _missing(billing.get("zipcode")):
        _add(errors, "BillingInformation.ZipCode", "The ZipCode field is required.")
    country = {str(billing.get(k) or "").upper() for k in ("country", "countryCode")}
    if country & US_NAMES and _missing(billing.get("state")):
        _add(errors, "BillingInformation.State", "The State field is required.")


def _check_card(errors: Errors, card: dict[str, Any], config: SandboxConfig) -> None:
    _required(errors, card, CARD_REQUIRED, "PaymentMethod.")
    number = card.get("cardNumber")
    raw_pan = isinstance(number, str) and number.isdigit() and card.get("token") is not True
    if raw_pan and not luhn_ok(str(number)):
        _add(errors, "PaymentMethod.CardNumber", "The field CardNumber is invalid.")
    month = card.get("expirationMonth")
    if month is not None and (_as_int(month) is None or not 1 <= (_as_int(month) or 0) <= 12):
        _add(errors, "PaymentMethod.ExpirationMonth", "The field ExpirationMonth is invalid.")
    if card.get("expirationYear") is not None and _as_int(card.get("expirationYear")) is None:
        _add(errors, "PaymentMethod.ExpirationYear", "The field ExpirationYear is invalid.")


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def luhn_ok(number: str) -> bool:
    """True when ``number`` is 12-19 digits with a valid Luhn check digit."""
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        digit = int(ch) * (2 if i % 2 else 1)
        total += digit - 9 if digit > 9 else digit
    return total % 10 == 0


CHECKS = {
    "transaction": _check_transaction,
    "payer": _check_payer,
    "billingInformation": _check_billing,
    "paymentMethod": _check_card,
}
