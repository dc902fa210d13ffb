"""Order routes: look one up; refund or cancel it; tell flexmit billing was paid another way."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy.orm import Session

from worker.api.deps import Protected, RuntimeDep
from worker.api.views import find_order, latest_reject, order_view, reject_view
from worker.cancel import NotCancellable, request_cancel
from worker.db.models import Order
from worker.refunds import OrderNotFound, Refused, cancel_order, refund_order
from worker.suppression import commit_and_refresh

router = APIRouter(prefix="/v1/orders", dependencies=Protected)


@router.get("/{order_id}")
def get_order(order_id: str, rt: RuntimeDep) -> dict[str, Any]:
    """The order, its FlexFactor key, expiry and history; a rejected decline as REJECTED."""
    with rt.sessions() as session:
        order = find_order(session, order_id)
        if order is not None:
            return order_view(session, order)
        reject = latest_reject(session, order_id)
        if reject is not None:
            return reject_view(reject)
    raise HTTPException(404, f"no order or rejected decline with orderId {order_id!r}")


@router.post("/{order_id}/paid-elsewhere")
def paid_elsewhere(order_id: str, rt: RuntimeDep) -> dict[str, Any]:
    """Billing collected this charge another way: cancel the rescue here and at FlexFactor."""
    with rt.sessions() as session:
        order = find_order(session, order_id)
        if order is None:
            raise HTTPException(404, f"no order with orderId {order_id!r}")
        try:
            request_cancel(session, order, cause="billing.paid_elsewhere")
        except NotCancellable as exc:
            raise HTTPException(409, str(exc)) from exc
        commit_and_refresh(session, rt.redis)
        view = order_view(session, order)
    _nudge_remote_action(rt, order.id)
    return view


def _nudge_remote_action(rt: RuntimeDep, order_pk: int) -> None:
    from worker.dispatch import REMOTE_ACTION_TASK, send_tasks

    send_tasks(rt.celery, REMOTE_ACTION_TASK, [order_pk])


class RefundBody(BaseModel):
    """``{"amountCents": int}``; omit it (or the whole body) for all that is left."""

    model_config = ConfigDict(extra="forbid")

    amountCents: StrictInt | None = Field(None, gt=0)  # the wire name


@router.post("/{order_id}/refund", response_model=None)
def refund(order_id: str, rt: RuntimeDep, body: RefundBody | None = None) -> JSONResponse:
    """Refund an APPROVED order at FlexFactor (synchronous: the caller learns the outcome).

    200 with the order and ``refund``; 404; 409 wrong state, a refund in progress, or FlexFactor
    refused (FAILED, e.g. code 2001); 422 bad amount; 502/503/504 FlexFactor failures.
    """
    amount = body.amountCents if body is not None else None
    try:
        result = refund_order(rt, order_id, amount, owner=f"api-{uuid.uuid4().hex[:16]}")
    except OrderNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except Refused as exc:
        return _refused(exc)
    with rt.sessions() as session:
        view = order_view(session, _order_or_404(session, order_id))
    return JSONResponse({**view, "refund": result.wire()})


@router.post("/{order_id}/cancel", response_model=None)
def cancel(order_id: str, rt: RuntimeDep) -> JSONResponse:
    """Stop a rescue still pending: 202 (FlexFactor is told by a task); 200 if already
    cancelled; 409 for an approved (use refund) or finished order."""
    try:
        result = cancel_order(rt, order_id)
    except OrderNotFound as exc:
        raise HTTPException(404, str(exc)) from exc
    except Refused as exc:
        return _refused(exc)
    with rt.sessions() as session:
        view = order_view(session, _order_or_404(session, order_id))
    return JSONResponse(view, status_code=202 if result.changed else 200)


def _order_or_404(session: Session, order_id: str) -> Order:
    order = find_order(session, order_id)
    if order is None:
        raise HTTPException(404, f"no order with orderId {order_id!r}")
    return order


def _refused(exc: Refused) -> JSONResponse:
    return JSONResponse({"detail": exc.message, **exc.extra}, status_code=exc.status)
