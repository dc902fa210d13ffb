"""The API SIGKILLed mid-intake and restarted: billing re-sends the batches it got no answer
for, with the same orderIds; every decline is accepted once and reaches FlexFactor once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.audit import audit
from tests.faults_helpers import BillingClient, api_process
from tests.pipeline import running_stack, wait_until
from worker.sandbox.config import SandboxConfig

pytestmark = pytest.mark.pipeline
BATCHES, SIZE = 24, 10


def test_api_killed_mid_intake_loses_and_duplicates_nothing(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    sandbox = SandboxConfig(rate_limit=40, resolve_after_s=3600)
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXFACTOR_RATE_LIMIT=40) as stack:
        api = api_process(stack)
        try:
            api.start()
            stack.start_worker("w1", concurrency=2)
            stack.start_beat()  # its sweep sends what a killed API committed but never sent
            client = BillingClient(api.url, BATCHES, SIZE)
            client.start()
            wait_until(lambda: client.done_batches >= 6, timeout=60, what="6 batches acked")
            api.kill()  # the client is mid-request: that batch gets no answer
            wait_until(lambda: client.failures > 0, timeout=30,
                       what="the client to notice the API is gone")
            api.start()
            client.join()
        finally:
            api.stop()
        accepted = sorted(client.acknowledged)
        assert len(accepted) == BATCHES * SIZE
        assert all(r["accepted"] for r in client.acknowledged.values())
        stack.wait_settled(len(accepted), timeout=120)
        audit(stack, accepted)
