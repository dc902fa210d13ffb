"""Liveness and Prometheus metrics (no bearer: probes and scrapers call these)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector
from sqlalchemy import text

from worker.api.deps import RuntimeDep
from worker.dbmetrics import OrdersCollector
from worker.exporter import multiprocess_active, multiprocess_registry

router = APIRouter()


@router.get("/healthz")
def healthz(rt: RuntimeDep) -> dict[str, str]:
    """200 while the database answers."""
    with rt.engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    return {"status": "ok"}


class _Delegate(Collector):
    """Everything another registry holds (this process's counters, or all processes' files)."""

    def __init__(self, source: CollectorRegistry) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        yield from self._source.collect()


def scrape(rt: RuntimeDep) -> bytes:
    """The text exposition: the process counters plus the database gauges, read now."""
    registry = CollectorRegistry(auto_describe=False)
    # Several API processes sharing PROMETHEUS_MULTIPROC_DIR report their sum.
    registry.register(_Delegate(multiprocess_registry() if multiprocess_active() else REGISTRY))
    registry.register(OrdersCollector(rt.sessions))
    return generate_latest(registry)


@router.get("/metrics")
async def metrics(rt: RuntimeDep) -> Response:
    """Prometheus text format."""
    body = await run_in_threadpool(scrape, rt)  # database reads: off the event loop
    return Response(body, media_type=CONTENT_TYPE_LATEST)
