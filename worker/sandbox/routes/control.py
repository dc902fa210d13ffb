"""Control routes under ``/_sandbox`` (no auth): ledger, orders, config, chargeback, resolve, reset.

``GET /_sandbox/ledger`` keys: ``calls`` ({"POST /v1/evaluate": {"total", "<status>": n}}),
``calls_total``, ``distinct_orders``, ``evaluate_calls_total``, ``evaluate_calls_per_order_id``
(only orderIds sent more than once), ``evaluate_order_ids_with_retries``,
``flexfactor_orders_per_order_id_max`` (1 by construction), ``rate_limited_429``,
``max_accepted_in_any_second``, ``validation_errors_by_field``, ``webhooks_delivered``,
``webhooks_failed``, ``webhooks_resent``, ``webhooks_abandoned``, ``webhooks_duplicated``,
``orders_by_status`` (by statusName).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from worker.sandbox.config import SandboxConfig
from worker.sandbox.lifecycle import order_json, resolve_all
from worker.sandbox.routes.common import get_state, read_json
from worker.sandbox.state import Order
from worker.sandbox.wire import iso_utc, problem, validation_problem

router = APIRouter(prefix="/_sandbox")
SECRET_FIELDS = {"app_secret", "webhook_key_b64", "tokenization_key"}


@router.get("/ledger")
async def ledger(request: Request) -> dict[str, Any]:
    """The ledger JSON (keys in the module docstring)."""
    state = get_state(request)
    with state.lock:
        return state.ledger_json()


def _control_row(order: Order) -> dict[str, Any]:
    return {
        "orderId": order.merchant_order_id,
        "orderSessionKey": order.key,
        "status": order.status,
        "statusName": order.status_name,
        "amount": order.amount,
        "refunded": order.refunded,
        "refundsReceived": list(order.refunds_received),
        "plan": order.plan.name,
        "plannedFinal": "cancelled" if order.authorization else order.plan.final,
        "final": order.final,
        "dueAt": iso_utc(order.due),
        "chargeback": order.chargeback,
    }


@router.get("/orders")
async def orders(request: Request) -> list[dict[str, Any]]:
    """Every order with its merchant orderId, key, status, amount and planned outcome."""
    state = get_state(request)
    with state.lock:
        return [_control_row(o) for o in state.orders.values()]


@router.get("/webhooks")
async def webhooks(request: Request) -> list[dict[str, Any]]:
    """The most recent webhook delivery attempts (newest last)."""
    state = get_state(request)
    with state.lock:
        return list(request.app.state.dispatcher.recent)


@router.get("/config")
async def get_config(request: Request) -> dict[str, Any]:
    """The current configuration, secrets left out."""
    state = get_state(request)
    return state.config.model_dump(exclude=SECRET_FIELDS)


@router.post("/config")
async def patch_config(request: Request) -> JSONResponse:
    """Patch the configuration at runtime (any SandboxConfig field)."""
    state = get_state(request)
    patch, bad = await read_json(request)
    if bad is not None or not isinstance(patch, dict):
        return bad or validation_problem({"$": ["A JSON object is required."]})
    with state.lock:
        try:
            config = SandboxConfig.model_validate({**state.config.model_dump(), **patch})
        except ValidationError as exc:
            errors = {".".join(map(str, e["loc"])) or "$": [e["msg"]] for e in exc.errors()}
            return validation_problem(errors)
        state.set_config(config)
    return JSONResponse(config.model_dump(exclude=SECRET_FIELDS))


@router.post("/orders/{order_id}/chargeback")
async def chargeback(order_id: str, request: Request) -> JSONResponse:
    """File a chargeback on a Completed order (by key or merchant orderId)."""
    state = get_state(request)
    with state.lock:
        order = state.orders.get(order_id.lower()) or state.order_for_merchant(order_id)
        if order is None:
            return problem(404, "Not Found")
        if order.final != "completed":
            return problem(409, "Only a completed order can receive a chargeback.")
        order.chargeback = True
        state.emit("payment.chargeback.received", order)
        return JSONResponse(order_json(order))


@router.post("/resolve-all")
async def resolve(request: Request) -> dict[str, int]:
    """Resolve every pending order now (authorizations excepted)."""
    state = get_state(request)
    with state.lock:
        return {"resolved": resolve_all(state, state.now())}


@router.post("/advance-clock")
async def advance_clock(request: Request) -> dict[str, float]:
    """Shift the sandbox clock forward by ``{"seconds": n}`` (tokens expire, orders come due)."""
    state = get_state(request)
    body, bad = await read_json(request)
    seconds = float(body.get("seconds", 0)) if isinstance(body, dict) and bad is None else 0.0
    with state.lock:
        state.clock_offset += max(0.0, seconds)
        state.wake.notify_all()
        return {"clock_offset_s": state.clock_offset}


@router.post("/reset")
async def reset(request: Request) -> dict[str, bool]:
    """Forget every order, idempotency record, queued webhook and the ledger."""
    state = get_state(request)
    with state.lock:
        state.reset()
        request.app.state.dispatcher.clear()
    return {"reset": True}
