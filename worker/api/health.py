"""Liveness and Prometheus metrics (no bearer: probes and scrapers call these)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from worker.api.deps import RuntimeDep

router = APIRouter()


@router.get("/healthz")
def healthz(rt: RuntimeDep) -> dict[str, str]:
    """200 while the database answers."""
    with rt.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/metrics")
def metrics() -> Response:
    """Prometheus text format."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
