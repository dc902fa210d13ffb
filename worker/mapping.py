"""Map a stored decline onto FlexFactor's ``/evaluate`` wire fields (fact sheet §3).

The wire dict uses FlexFactor's exact camelCase names; amounts stay integer cents.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from worker.settings import Settings


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _drop_none(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None}


def evaluate_payload(decline: dict[str, Any], *, expiry_at: datetime, settings: Settings,
                     mode: str) -> dict[str, Any]:
    """The /evaluate body for one decline (without ``idempotencyKey``: the client adds one per
    request). ``orderId`` is the merchant's id, identical on every try."""
    body: dict[str, Any] = {
        "isDeclined": True,
        "isMIT": True,
        "isRecurring": bool(decline.get("isRecurring", True)),
        "mid": settings.flexfactor_mid,
        "siteId": decline.get("siteId") or settings.flexfactor_site_id,
        "orderId": decline["orderId"],
        "transaction": _transaction(decline),
        "payer": _payer(decline.get("payer") or {}),
        "billingInformation": _billing(decline.get("billingAddress") or {}),
        "paymentMethod": _payment_method(decline.get("card") or {}),
    }
    sub = decline.get("subscription")
    if sub:
        body["subscription"] = _drop_none({
            "subscriptionId": sub.get("id"),
            "interval": sub.get("interval"),
            "price": sub.get("price", decline["amount"]),
            "currency": decline["currency"],
            "paymentNumber": _str_or_none(sub.get("paymentNumber")),
            "totalPayments": _str_or_none(sub.get("totalPayments")),
        })
    if mode == "managed":
        body["expiryDateUtc"] = _iso(expiry_at)
    return _drop_none(body)


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def _transaction(decline: dict[str, Any]) -> dict[str, Any]:
    info = decline.get("decline") or {}
    declined_at = datetime.fromisoformat(str(decline["declinedAt"]).replace("Z", "+00:00"))
    offset = declined_at.utcoffset()
    return _drop_none({
        "id": info.get("pspTransactionId"),
        "timestampUtc": _iso(declined_at),
        "timezoneUtcOffset": int(offset.total_seconds() // 3600) if offset is not None else 0,
        "amount": decline["amount"],
        "currency": decline["currency"],
        "responseCode": info.get("responseCode"),
        "responseDescription": info.get("responseDescription"),
        "responseCodeSource": info.get("processor"),
        "processorName": info.get("processor"),
        "avsResultCode": info.get("avsResultCode"),
        "cvvResultCode": info.get("cvvResultCode"),
        "cavvResultCode": "NA",
        "cardNotPresent": True,
    })


def _payer(payer: dict[str, Any]) -> dict[str, Any]:
    return _drop_none({"email": payer.get("email"), "id": payer.get("id"),
                       "phone": payer.get("phone")})


def _billing(addr: dict[str, Any]) -> dict[str, Any]:
    return _drop_none({
        "firstName": addr.get("firstName"),
        "lastName": addr.get("lastName"),
        "addressLine1": addr.get("addressLine1"),
        "addressLine2": addr.get("addressLine2"),
        "city": addr.get("city"),
        "state": addr.get("state"),
        "zipCode": addr.get("zipCode"),
        "country": addr.get("countryCode"),
        "countryCode": addr.get("countryCode"),
    })


def _payment_method(card: dict[str, Any]) -> dict[str, Any]:
    return _drop_none({
        "cardNumber": card.get("token"),
        "token": True,  # cardNumber carries a FlexFactor vault token, never a PAN
        "holderName": card.get("holderName"),
        "cardBrand": card.get("brand"),
        "cardCountry": card.get("country"),
        "expirationMonth": card.get("expMonth"),
        "expirationYear": card.get("expYear"),
        "cardBinNumber": card.get("bin"),
        "cardLast4Digits": card.get("last4"),
    })
