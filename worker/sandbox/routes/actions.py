"""Refund (§4.1), cancel / external-cancel (§4.2) and capture (§4.3)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from worker.sandbox.lifecycle import finish
from worker.sandbox.routes.common import (
    camelize,
    fault_for,
    fault_response,
    fingerprint,
    get_state,
    maybe_slow,
    read_json,
)
from worker.sandbox.state import IdemRecord, Order, SandboxState
from worker.sandbox.wire import (
    envelope,
    failed,
    new_guid,
    problem,
    problem_body,
    validation_problem,
)

router = APIRouter()
REPLAY_WINDOW_S = 24 * 3600
CONFLICT = "The idempotency key was already used with a different request body."
Reply = tuple[int, dict[str, Any]]


async def _body(request: Request) -> tuple[dict[str, Any], JSONResponse | None]:
    raw, bad = await read_json(request)
    return (camelize(raw) if isinstance(raw, dict) else {}), bad


def _dollars(raw: Any) -> Decimal | None:
    try:
        value = Decimal(str(raw))
    except InvalidOperation:
        return None
    cents = value * 100
    return value if value > 0 and cents == cents.to_integral_value() else None


@router.post("/v1/orders/{order_id}/refund")
async def refund(order_id: str, request: Request) -> JSONResponse:
    """Refund ``amountToRefund`` DOLLARS of a Completed order; over-refund → FAILED/2001."""
    state = get_state(request)
    body, bad = await _body(request)
    if bad is not None:
        return bad
    if body.get("amountToRefund") is None:
        return validation_problem({"AmountToRefund": ["The AmountToRefund field is required."]})
    dollars = _dollars(body["amountToRefund"])
    if dollars is None:
        return validation_problem({"AmountToRefund": ["The field AmountToRefund is invalid."]})
    with state.lock:
        order = state.orders.get(order_id.lower())
        if order is None:
            return problem(404, "Not Found")
        fault = fault_for(request, order.merchant_order_id)
        early = fault_response(fault)
        if early is not None:
            return early
        order.refunds_received.append(str(dollars))
        reply = _refund(state, order, int(dollars * 100))
    await maybe_slow(state, fault)
    return JSONResponse(reply)


def _refund(state: SandboxState, order: Order, cents: int) -> dict[str, Any]:
    refundable = order.amount - order.refunded if order.final == "completed" else 0
    if cents > refundable:
        message = (
            f"Amount to refund ({Decimal(cents) / 100:.2f}) is greater than maximum "
            f"refund amount in ({Decimal(refundable) / 100:.2f}))"
        )
        return failed("2001", message, transactionId=None)
    order.refunded += cents
    if order.refunded == order.amount:
        order.status = 6
    state.emit("order.refunded", order)
    return envelope(
        "SUCCESS", responseCode="0", responseMessage="Success", transactionId=new_guid()
    )


def _cancel(state: SandboxState, order: Order) -> Reply:
    """Cancel (a void): Draft/Processing/Capturerequired MIT, Capturerequired CIT."""
    if order.final in {"cancelled", "declined", "expired"}:
        return 200, {}  # already stopped: the repeat collapses into the first cancel
    if order.pending and (order.is_mit or order.authorization):
        finish(state, order, "cancelled", by="merchant")
        return 200, {}
    title = f"Order cannot be cancelled in status {order.status_name}."
    return 400, problem_body(400, title, {"OrderId": [title]})


async def _cancel_route(
    request: Request, find: Callable[[SandboxState], Order | None]
) -> JSONResponse:
    state = get_state(request)
    body, bad = await _body(request)
    if bad is not None:
        return bad
    key = str(body.get("idempotencyKey") or "").lower()
    with state.lock:
        order = find(state)
        if order is None:
            return problem(404, "Not Found")
        digest = fingerprint(body, order.key)
        record = state.idem.get(("cancel", key)) if key else None
        if record is not None and state.now() - record.at < REPLAY_WINDOW_S:
            if record.fingerprint != digest:
                return problem(409, CONFLICT)
            return JSONResponse(record.body, status_code=record.status_code)
        fault = fault_for(request, order.merchant_order_id)
        early = fault_response(fault)
        if early is not None:
            return early
        status, reply = _cancel(state, order)
        if key:
            state.idem[("cancel", key)] = IdemRecord(digest, status, reply, state.now())
    await maybe_slow(state, fault)
    return JSONResponse(reply, status_code=status)


@router.post("/v1/orders/{order_id}/cancel")
async def cancel(order_id: str, request: Request) -> JSONResponse:
    """Cancel by FlexFactor id (orderSessionKey): 200 ``{}``."""
    return await _cancel_route(request, lambda s: s.orders.get(order_id.lower()))


@router.post("/v1/orders/{merchant_order_id}/external-cancel")
async def external_cancel(merchant_order_id: str, request: Request) -> JSONResponse:
    """Cancel by the merchant's own orderId (after an /evaluate timeout): 200 ``{}``."""
    return await _cancel_route(request, lambda s: s.order_for_merchant(merchant_order_id))


def _capture_errors(body: dict[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for name in ("idempotencyKey", "orderId", "amount", "currency"):
        field = name[:1].upper() + name[1:]
        if body.get(name) in (None, ""):
            errors[field] = [f"The {field} field is required."]
    amount = body.get("amount")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        errors["Amount"] = ["The field Amount is invalid."]
    return errors


@router.post("/v1/capture")
async def capture(request: Request) -> JSONResponse:
    """Capture a CAPTUREREQUIRED order (``amount`` in cents) → Completed + order.completed."""
    state = get_state(request)
    body, bad = await _body(request)
    if bad is not None:
        return bad
    errors = _capture_errors(body)
    if errors:
        return validation_problem(errors)
    key, digest = str(body["idempotencyKey"]).lower(), fingerprint(body)
    with state.lock:
        record = state.idem.get(("capture", key))
        if record is not None:
            if record.fingerprint != digest:
                return problem(409, CONFLICT)
            return JSONResponse(record.body, status_code=record.status_code)
        order = state.orders.get(str(body["orderId"]).lower())
        if order is None:
            return problem(404, "Not Found")
        reply = _capture(state, order, body["amount"], str(body["currency"]).upper())
        state.idem[("capture", key)] = IdemRecord(digest, 200, reply, state.now())
    return JSONResponse(reply)


def _capture(state: SandboxState, order: Order, amount: int, currency: str) -> dict[str, Any]:
    if order.status != 5 or not order.pending:
        return failed("2002", f"Order is not awaiting capture (status {order.status_name}).")
    if amount <= 0 or amount > order.amount or currency != order.currency:
        return failed("2003", "Capture amount or currency does not match the authorization.")
    order.amount = amount
    finish(state, order, "completed")
    return envelope("SUCCESS", captureStatus="SUCCESS", orderId=order.key)
