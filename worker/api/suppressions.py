"""``GET /v1/suppressions/{orderId}``: may billing retry this charge itself?"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter

from worker.api.deps import Protected, RuntimeDep
from worker.suppression import lookup

router = APIRouter(prefix="/v1/suppressions", dependencies=Protected)


@router.get("/{order_id}")
def get_suppression(order_id: str, rt: RuntimeDep) -> dict[str, Any]:
    """``{"orderId", "retryAllowed", "until", "reason"}``; Redis first, the database behind."""
    with rt.sessions() as session:
        return asdict(lookup(session, rt.redis, order_id))
