"""``GET /v1/orders/{id}`` (§5.1), ``GET /v1/orders`` (§5.2) and ``POST /v1/outcome`` (§5.3)."""

from __future__ import annotations

import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from worker.sandbox.lifecycle import api_status, order_json
from worker.sandbox.routes.common import camelize, get_state, read_json
from worker.sandbox.state import STATUS_NAMES, Order
from worker.sandbox.wire import envelope, parse_iso, problem

router = APIRouter()


@router.get("/v1/orders/{order_id}")
async def get_order(order_id: str, request: Request) -> JSONResponse:
    """One order by FlexFactor id (orderSessionKey); 404 when unknown."""
    state = get_state(request)
    with state.lock:
        order = state.orders.get(order_id.lower())
        body = order_json(order) if order else None
    if body is None:
        return problem(404, "Not Found")
    return JSONResponse(body)


def _int_list(values: list[str]) -> set[int]:
    out: set[int] = set()
    for value in values:
        out.update(int(part) for part in value.split(",") if part.strip().lstrip("-").isdigit())
    return out


def _matches(order: Order, params: Any, statuses: set[int]) -> bool:
    text = (params.get("query") or "").strip().lower()
    if text:
        payer, billing = order.details["payer"], order.details["billing"]
        haystack = [
            order.merchant_order_id,
            order.key,
            payer.get("email"),
            billing.get("firstName"),
            billing.get("lastName"),
        ]
        if not any(text in str(item).lower() for item in haystack if item):
            return False
    if statuses and order.status not in statuses:
        return False
    since, until = parse_iso(params.get("from")), parse_iso(params.get("to"))
    if since and order.created < since.timestamp():
        return False
    return not (until and order.created > until.timestamp())


@router.get("/v1/orders")
async def list_orders(request: Request) -> JSONResponse:
    """A page of orders; ``query`` matches the merchant orderId (substring, case-insensitive)."""
    state = get_state(request)
    params = request.query_params
    statuses = _int_list(params.getlist("status"))
    page_size = max(1, min(_int(params.get("pageSize"), 10), 1000))
    page_number = max(1, _int(params.get("pageNumber"), 1))
    with state.lock:
        mid = (params.get("mid") or state.config.mid).lower()
        found = [o for o in state.orders.values() if _matches(o, params, statuses)]
        found = found if mid == state.config.mid.lower() else []
        descending = params.get("sort", "desc").lower() != "asc"
        found.sort(key=_sort_key(params.get("orderBy")), reverse=descending)
        start = (page_number - 1) * page_size
        items = [order_json(o) for o in found[start : start + page_size]]
    return JSONResponse(paged(items, len(found), page_number, page_size))


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def _sort_key(order_by: str | None) -> Any:
    if (order_by or "").lower() == "amount":
        return lambda o: (o.amount, o.created)
    return lambda o: o.created


def paged(items: list[Any], total: int, page_number: int, page_size: int) -> dict[str, Any]:
    """X.PagedList-style paging fields around ``items``."""
    page_count = math.ceil(total / page_size) if total else 0
    first = (page_number - 1) * page_size + 1 if page_number <= page_count else 0
    last = min(first + page_size - 1, total) if first else 0
    return {
        "items": items,
        "totalItemCount": total,
        "pageCount": page_count,
        "pageNumber": page_number,
        "pageSize": page_size,
        "firstItemOnPage": first,
        "lastItemOnPage": last,
        "hasPreviousPage": page_number > 1,
        "hasNextPage": page_number < page_count,
        "isFirstPage": page_number == 1,
        "isLastPage": page_number >= page_count,
        "statuses": {str(code): name for code, name in STATUS_NAMES.items()},
    }


@router.post("/v1/outcome")
async def outcome(request: Request) -> JSONResponse:
    """Deprecated status lookup by orderSessionKey; ``NOTFOUND`` for an unknown key."""
    state = get_state(request)
    raw, bad = await read_json(request)
    if bad is not None:
        return bad
    body = camelize(raw) if isinstance(raw, dict) else {}
    with state.lock:
        order = state.orders.get(str(body.get("orderSessionKey", "")).lower())
        if order is None:
            return JSONResponse(envelope("NOTFOUND", success=False, confirmationId=None))
        status = _outcome_status(order)
        return JSONResponse(envelope(status, confirmationId=order.confirmation_id))


def _outcome_status(order: Order) -> str:
    if not order.pending:
        return api_status(order, "sync")
    return "SUBMITTED" if order.status == 0 else "PROCESSING"
