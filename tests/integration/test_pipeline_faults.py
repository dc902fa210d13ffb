"""Nothing lost, nothing sent twice: a worker SIGKILLed mid-batch, the broker wiped mid-batch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.audit import audit
from tests.factories import make_valid_decline
from tests.pipeline import Stack, running_stack, wait_until
from worker.api import create_app
from worker.orders import State
from worker.sandbox.config import SandboxConfig

pytestmark = pytest.mark.pipeline
AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}
EVALUATED = (State.PENDING, State.APPROVED, State.DECLINED)


def submit(stack: Stack, count: int, prefix: str) -> list[str]:
    """POST ``count`` valid declines through the API; returns the accepted orderIds."""
    declines = [make_valid_decline(orderId=f"{prefix}-{i:04d}", amount=1000 + i)
                for i in range(count)]
    with TestClient(create_app(stack.settings, stack.runtime)) as client:
        resp = client.post("/v1/declines", json={"declines": declines}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    results = resp.json()["results"]
    assert all(r["accepted"] for r in results)
    return [r["orderId"] for r in results]


def wipe_broker(stack: Stack) -> None:
    """Lose every message and all shared state: FLUSHDB on Redis, the folders when embedded."""
    url = stack.settings.broker_url
    if url.startswith("redis"):
        import redis

        redis.Redis.from_url(url).flushdb()
        return
    for folder in (Path(url.removeprefix("filesystem://")) / "queue",
                   Path(stack.settings.redis_url.removeprefix("file://"))):
        for item in folder.iterdir():
            if item.is_file():
                item.unlink()
            else:
                shutil.rmtree(item, ignore_errors=True)


def test_sigkilled_worker_loses_and_duplicates_nothing(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    sandbox = SandboxConfig(rate_limit=25, resolve_after_s=3600)
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXFACTOR_RATE_LIMIT=25) as stack:
        stack.start_worker("w1", concurrency=2)
        stack.start_worker("w2", concurrency=1)
        stack.start_beat()
        accepted = submit(stack, 300, "kill")
        wait_until(lambda: stack.count(*EVALUATED) >= 60, timeout=60, what="60 evaluations")
        stack.kill("w1")  # SIGKILL to the worker and its prefork children, mid-batch
        stack.start_worker("w3", concurrency=1)  # the orchestrator restarts the container
        stack.wait_settled(300, timeout=150)
        audit(stack, accepted)


def test_broker_wiped_mid_batch_loses_and_duplicates_nothing(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    sandbox = SandboxConfig(rate_limit=25, resolve_after_s=3600)
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXFACTOR_RATE_LIMIT=25) as stack:
        stack.start_worker("w1", concurrency=2)
        stack.start_beat()
        accepted = submit(stack, 300, "flush")
        wait_until(lambda: stack.count(*EVALUATED) >= 60, timeout=60, what="60 evaluations")
        wipe_broker(stack)
        stack.wait_settled(300, timeout=150)
        audit(stack, accepted)
