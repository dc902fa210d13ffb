"""Order routes: look one up; tell flexmit billing was paid another way."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from worker.api.deps import Protected, RuntimeDep
from worker.api.views import find_order, latest_reject, order_view, reject_view
from worker.cancel import NotCancellable, request_cancel
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
