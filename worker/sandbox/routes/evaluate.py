"""``POST /v1/evaluate`` (§3): validate, de-duplicate, create or find the order, answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from worker.sandbox.lifecycle import api_status, create_order
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
from worker.sandbox.validation import validate_evaluate
from worker.sandbox.wire import problem, validation_problem

router = APIRouter()
CONFLICT = "The idempotency key was already used with a different request body."


@router.post("/v1/evaluate")
async def evaluate(request: Request) -> JSONResponse:
    """Answer an /evaluate; the same merchant orderId always maps to the same order."""
    state = get_state(request)
    raw, bad = await read_json(request)
    if bad is not None:
        return bad
    body = camelize(raw)
    with state.lock:
        config, now = state.config, state.now()
    errors = validate_evaluate(body, config, datetime.fromtimestamp(now, UTC))
    if errors:
        with state.lock:
            state.ledger.validation_errors.update(errors.keys())
        return validation_problem(errors)
    fault, response = _answer(request, state, body)
    await maybe_slow(state, fault)
    return response


def _answer(
    request: Request, state: SandboxState, body: dict[str, Any]
) -> tuple[str | None, JSONResponse]:
    merchant_id, key = str(body["orderId"]), str(body["idempotencyKey"]).lower()
    digest = fingerprint(body)
    with state.lock:
        state.ledger.evaluate_calls[merchant_id] += 1
        record = state.idem.get(("evaluate", key))
        if record is not None:
            if record.fingerprint != digest:
                return None, problem(409, CONFLICT)
            return None, JSONResponse(record.body, status_code=record.status_code)
        fault = fault_for(request, merchant_id)
        early = fault_response(fault)
        if early is not None:
            return fault, early  # 503/500 BEFORE any order exists
        order = state.order_for_merchant(merchant_id) or create_order(state, body, state.now())
        reply = evaluate_reply(order, state.config.mode, body.get("senseKey"))
        state.idem[("evaluate", key)] = IdemRecord(digest, 200, reply, state.now())
    return fault, JSONResponse(reply)


def evaluate_reply(order: Order, mode: str, sense_key: Any) -> dict[str, Any]:
    """The /evaluate response body (§3.9): ``orderId`` == ``orderSessionKey``."""
    return {
        "orderSessionKey": order.key,
        "senseKey": sense_key,
        "orderId": order.key,
        "success": True,
        "result": "Success",
        "status": api_status(order, mode),
        "statusCode": None,
        "errors": [],
        "customProperties": {},
    }
