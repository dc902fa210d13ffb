"""Test data builders shared by unit and integration tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from worker.pan import has_pan

_LETTERS = str.maketrans("0123456789", "ghijklmnop")
REMOVE = object()  # an override value that deletes the key: make_valid_decline(siteId=REMOVE)


def vault_token() -> str:
    """A FlexFactor-like vault token that can never be mistaken for a card number."""
    while True:
        token = "tok_" + uuid.uuid4().hex
        if not has_pan(token):
            return token


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def make_valid_decline(now: datetime | None = None, **overrides: Any) -> dict[str, Any]:
    """A decline as CONTRACT.md shows it, valid at ``now`` (declinedAt = now by default).

    Overrides may use dotted keys for nested fields, e.g.
    ``make_valid_decline(now, **{"card.token": "x", "billingAddress.state": REMOVE})``.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    decline: dict[str, Any] = {
        "orderId": f"inv-{uuid.uuid4().hex[:16].translate(_LETTERS)}",  # no digit run: no PAN
        "declinedAt": _iso(now),
        "amount": 1999,
        "currency": "USD",
        "isRecurring": True,
        "expiryDateUtc": _iso(now + timedelta(days=21)),
        "siteId": None,
        "subscription": {"id": "sub_42", "interval": "monthly", "paymentNumber": 3,
                         "totalPayments": None, "price": 1999},
        "decline": {"pspTransactionId": "ch_1", "responseCode": "05",
                    "responseDescription": "Do not honor", "processor": "acme",
                    "avsResultCode": "Y", "cvvResultCode": "M"},
        "card": {"token": vault_token(), "bin": "411111", "last4": "1111", "brand": "VISA",
                 "expMonth": 12, "expYear": now.year + 2, "holderName": "Ada Lovelace",
                 "country": "US"},
        "payer": {"email": "ada@example.com", "id": "cus_1", "phone": None},
        "billingAddress": {"firstName": "Ada", "lastName": "Lovelace", "addressLine1": "1 Main St",
                           "city": "Austin", "state": "TX", "zipCode": "78701",
                           "countryCode": "US"},
    }
    for path, value in overrides.items():
        _set(decline, path.split("."), value)
    return decline


def _set(target: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        child = target.get(key)
        if not isinstance(child, dict):
            child = target[key] = {}
        target = child
    if value is REMOVE:
        target.pop(keys[-1], None)
    else:
        target[keys[-1]] = value
