"""The heart of the product under real parts: worker processes, broker, sandbox over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import make_valid_decline
from tests.pipeline import running_stack
from worker.api import create_app
from worker.orders import State
from worker.sandbox.config import SandboxConfig

pytestmark = pytest.mark.pipeline
AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}


def post_batch(client: TestClient, declines: list[dict]) -> list[dict]:
    resp = client.post("/v1/declines", json={"declines": declines}, headers=AUTH)
    assert resp.status_code == 202, resp.text
    return list(resp.json()["results"])


def test_two_workers_share_one_rate_limit(database_url: str, shared_urls: tuple[str, str],
                                          tmp_path: Path) -> None:
    """500 declines, two worker processes, limit 20/s: 500 distinct FlexFactor orders, no 429,
    never more than 20 requests accepted in any one second."""
    sandbox = SandboxConfig(rate_limit=20, resolve_after_s=3600)
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXFACTOR_RATE_LIMIT=20) as stack:
        stack.start_worker("w1", concurrency=1)
        stack.start_worker("w2", concurrency=1)
        declines = [make_valid_decline(orderId=f"rate-{i:04d}", amount=1000 + i)
                    for i in range(500)]
        with TestClient(create_app(stack.settings, stack.runtime)) as client:
            results = post_batch(client, declines)
        assert all(r["accepted"] and r["state"] == State.QUEUED for r in results)

        stack.wait_settled(500, timeout=120)
        ledger = stack.ledger()

    assert ledger["distinct_orders"] == 500
    assert ledger["flexfactor_orders_per_order_id_max"] == 1
    assert ledger["rate_limited_429"] == 0
    assert ledger["max_accepted_in_any_second"] <= 20
    assert stack.count(State.PENDING, State.APPROVED, State.DECLINED) == 500
    # one OAuth token for both workers: shared, not fetched per process
    assert ledger["calls"]["POST /v1/oauth2/token"]["total"] == 1
