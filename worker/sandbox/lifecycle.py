"""Order lifecycle: creation from an /evaluate body, timed resolution, final transitions.

Every function here expects the caller to hold ``state.lock``.
"""

from __future__ import annotations

import secrets
from typing import Any

import structlog

from worker.sandbox.outcomes import FINAL_API_STATUS, plan_for
from worker.sandbox.state import Order, SandboxState
from worker.sandbox.wire import iso_utc, new_guid, parse_iso

log = structlog.get_logger("flexmit.sandbox")

FINAL_STATUS = {"completed": 7, "cancelled": 2, "declined": 2}
FINAL_EVENT = {
    "completed": "order.completed",
    "expired": "order.expired",
    "cancelled": "order.cancelled",
}


def create_order(state: SandboxState, body: dict[str, Any], now: float) -> Order:
    """Create the FlexFactor order for a validated /evaluate body and apply its first step."""
    cfg = state.config
    tx, card = body["transaction"], str(body["paymentMethod"]["cardNumber"])
    delay = cfg.resolve_after_s
    if cfg.resolve_jitter_s > 0:
        delay += state.rng.uniform(0, cfg.resolve_jitter_s)
    expiry_at = parse_iso(body.get("expiryDateUtc"))
    order = Order(
        key=new_guid(),
        merchant_order_id=str(body["orderId"]),
        amount=int(tx["amount"]),
        currency=str(tx["currency"]).upper(),
        created=now,
        plan=plan_for(int(tx["amount"]), card),
        confirmation_id=secrets.token_hex(4).upper(),
        due=now + delay,
        processing_at=now + min(0.05, delay / 2),
        expiry=expiry_at.timestamp() if expiry_at else None,
        is_mit=bool(body.get("isMIT")),
        authorization=str(body.get("transactionType") or "").upper() == "AUTHORIZATION",
        details=_details(body),
    )
    state.add_order(order)
    _first_step(state, order, now)
    log.info("sandbox.order_created", order_id=order.merchant_order_id, plan=order.plan.name)
    return order


def _first_step(state: SandboxState, order: Order, now: float) -> None:
    if order.authorization:
        order.status, order.due = 5, now + state.config.capture_window_s
        state.emit("order.capturerequired", order)
    elif order.plan.immediate:
        finish(state, order, order.plan.final)
    else:
        if order.expiry is not None and order.expiry < order.due:
            order.due = order.expiry
        if order.plan.challenge:
            state.emit("challenge.presented", order)


def _details(body: dict[str, Any]) -> dict[str, Any]:
    """The non-card parts of the body that ``GET /orders/{id}`` echoes."""
    return {
        "payer": body.get("payer") or {},
        "billing": body.get("billingInformation") or {},
        "shipping": body.get("shippingInformation"),
        "siteId": body.get("siteId"),
        "correlationId": body.get("correlationId"),
    }


def finish(state: SandboxState, order: Order, final: str, by: str = "system") -> None:
    """Move an order to its final status and emit the webhook that goes with it."""
    order.final = final
    order.status = state.config.expired_status_code if final == "expired" else FINAL_STATUS[final]
    if final == "cancelled":
        order.cancelled_by = by
    event = FINAL_EVENT.get(final)
    if event:
        state.emit(event, order)
    log.info("sandbox.order_final", order_id=order.merchant_order_id, final=final)


def tick(state: SandboxState, now: float) -> float | None:
    """Advance every pending order due by ``now``; return the next instant anything is due."""
    next_due: float | None = None
    for order in list(state.orders.values()):
        if not order.pending:
            continue
        if order.status == 0 and now >= order.processing_at:
            order.status = 4
        if now >= order.due:
            finish(state, order, _final_at_due(order))
            continue
        upcoming = order.processing_at if order.status == 0 else order.due
        next_due = upcoming if next_due is None else min(next_due, upcoming)
    return next_due


def _final_at_due(order: Order) -> str:
    if order.authorization:
        return "cancelled"  # the capture window ran out: auto-void
    if order.expiry is not None and order.expiry <= order.due:
        return "expired"
    return order.plan.final


def resolve_all(state: SandboxState, now: float) -> int:
    """Bring every pending order (authorizations excepted) to its final status now."""
    count = 0
    for order in state.orders.values():
        if order.pending and not order.authorization:
            order.due, order.processing_at = min(order.due, now), min(order.processing_at, now)
            count += 1
    tick(state, now)
    return count


def api_status(order: Order, mode: str) -> str:
    """The string ``status`` /evaluate (and /outcome) reports for this order right now."""
    if order.final is not None:
        return FINAL_API_STATUS[order.final]
    if order.authorization:
        return "CAPTUREREQUIRED"
    if order.plan.challenge:
        return "CHALLENGE"
    return "SUBMITTED" if mode == "managed" else "PROCESSING"


def order_json(order: Order) -> dict[str, Any]:
    """The ``GET /orders/{id}`` body."""
    payer, billing = order.details["payer"], order.details["billing"]
    shipping = order.details["shipping"]
    return {
        "id": order.key,
        "correlationId": order.details.get("correlationId"),
        "referenceNumber": order.confirmation_id,
        "confirmationId": order.confirmation_id,
        "externalOrderId": order.merchant_order_id,
        "status": order.status,
        "statusName": order.status_name,
        "orderPlacedDate": iso_utc(order.created),
        "expiryDate": iso_utc(order.expiry) if order.expiry else None,
        "amount": order.amount,
        "refundedAmount": order.refunded,
        "currencyCode": order.currency,
        "currencySymbol": "$" if order.currency == "USD" else order.currency,
        "isMIT": order.is_mit,
        "siteId": order.details.get("siteId"),
        "firstName": billing.get("firstName"),
        "lastName": billing.get("lastName"),
        "email": payer.get("email"),
        "phone": payer.get("phone"),
        "secondaryEmail": None,
        "billingAddress": _address(billing),
        "shippingAddress": _address(shipping) if shipping else None,
    }


def _address(src: dict[str, Any]) -> dict[str, Any]:
    return {
        "addressLine1": src.get("addressLine1"),
        "addressLine2": src.get("addressLine2"),
        "city": src.get("city"),
        "state": src.get("state"),
        "zipCode": src.get("zipCode", src.get("zipcode")),
        "country": src.get("country"),
        "countryCode": src.get("countryCode"),
    }
