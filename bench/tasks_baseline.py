"""Baseline tasks for the benchmarks: plain Celery, none of flexmit's pipeline.

Loaded by its own app (``celery -A bench.tasks_baseline worker -Q bench``) so production code is
untouched. Same reliability settings as flexmit's app (acks_late, prefetch 1, no results), so the
only difference measured is what each task does.

* ``bench.evaluate_rate_limited``: the /evaluate POST through flexmit's FlexFactor client *without*
  the shared limiter, throttled by Celery's own ``rate_limit`` (``BENCH_CELERY_RATE_LIMIT``,
  default ``50/s``). Celery applies it per worker instance, not across workers (celery#5732).
* ``bench.post_evaluate``: one bare httpx POST of an /evaluate body (a token fetched once per
  process): the cheapest possible "task that calls FlexFactor".
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache
from typing import Any

import httpx
from celery import Celery

from worker.flexfactor.client import FlexFactorClient
from worker.flexfactor.wire import TokenRequest, TokenResponse
from worker.settings import Settings

app = Celery("bench_baseline")
app.conf.update(
    broker_url=os.environ.get("FLEXMIT_BROKER_URL", "redis://127.0.0.1:6379/3"),
    broker_connection_retry_on_startup=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    task_default_queue="bench",
    task_serializer="json",
    accept_content=["json"],
    broker_transport_options={"visibility_timeout": 3600},
)
RATE = os.environ.get("BENCH_CELERY_RATE_LIMIT", "50/s")


@lru_cache(maxsize=1)
def _client() -> FlexFactorClient:
    # Built on first use in each pool child (after fork): one HTTP connection pool per process.
    return FlexFactorClient.from_settings(Settings())


@lru_cache(maxsize=1)
def _http() -> tuple[httpx.Client, str]:
    settings = Settings()
    http = httpx.Client(base_url=settings.flexfactor_base_url, timeout=10)
    key, secret = settings.flexfactor_app_key, settings.flexfactor_app_secret
    assert key is not None and secret is not None
    body = TokenRequest(app_key=key.get_secret_value(), app_secret=secret.get_secret_value())
    resp = http.post("/oauth2/token", json=body.to_wire())
    resp.raise_for_status()
    return http, TokenResponse.model_validate(resp.json()).access_token


@app.task(name="bench.evaluate_rate_limited", rate_limit=RATE)
def evaluate_rate_limited(body: dict[str, Any]) -> str:
    """/evaluate via the FlexFactor client, throttled only by Celery's per-worker rate_limit."""
    from worker.flexfactor.errors import FlexFactorError
    from worker.flexfactor.wire import EvaluateRequest

    try:
        return str(_client().evaluate(EvaluateRequest.model_validate(body)).status)
    except FlexFactorError as exc:  # the 429s are the point of this baseline: count, go on
        return type(exc).__name__


@app.task(name="bench.post_evaluate")
def post_evaluate(body: dict[str, Any]) -> int:
    """One httpx POST of an /evaluate body; returns the HTTP status."""
    http, token = _http()
    resp = http.post("/evaluate", json={**body, "idempotencyKey": str(uuid.uuid4())},
                     headers={"Authorization": f"Bearer {token}"})
    return resp.status_code
