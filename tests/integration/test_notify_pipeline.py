"""Pushes to billing under real parts: worker and beat processes, the sandbox, a real receiver."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import make_valid_decline
from tests.notify_helpers import SECRET, TOKEN, pushes
from tests.pipeline import running_stack, wait_until
from worker.api import create_app
from worker.notify_signing import verify_push
from worker.sandbox.testing import Received, webhook_receiver

pytestmark = pytest.mark.pipeline
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def delivered_ok(received: list[Received]) -> Counter[str]:
    return Counter(json.loads(r.body)["eventId"] for r in received if r.status == 200)


def test_each_final_state_reaches_billing_once(database_url: str, shared_urls: tuple[str, str],
                                               tmp_path: Path) -> None:
    """Five orders approved at once, five declined at once: ten signed pushes, one per event,
    sent by the beat's sweep through a real worker; later sweeps send nothing again."""
    amounts = [1995, 1996, 1997, 1998, 1999, 1990, 1991, 1992, 1993, 1994]
    with webhook_receiver() as billing, running_stack(
        database_url, shared_urls, tmp_path, FLEXMIT_BILLING_CALLBACK_URL=billing.url,
        FLEXMIT_BILLING_CALLBACK_SECRET=SECRET, FLEXMIT_SWEEP_INTERVAL_S=1,
    ) as stack:
        stack.start_worker("w1", concurrency=2)
        stack.start_beat()
        declines = [make_valid_decline(orderId=f"push-{i}", amount=a)
                    for i, a in enumerate(amounts)]
        with TestClient(create_app(stack.settings, stack.runtime)) as client:
            resp = client.post("/v1/declines", json={"declines": declines}, headers=AUTH)
            assert resp.status_code == 202, resp.text

        wait_until(lambda: sum(delivered_ok(billing.snapshot()).values()) >= 10, timeout=90,
                   what="ten pushes delivered to billing")
        wait_until(lambda: all(p.delivered_at is not None for p in pushes(stack.runtime)),
                   timeout=30, what="every push marked delivered")
        # Let the beat run the sweep a few more times: nothing may be sent again.
        sweeps_before = stack.log_text("beat").count("flexmit.sweep_pushes")
        wait_until(lambda: stack.log_text("beat").count("flexmit.sweep_pushes")
                   >= sweeps_before + 3, timeout=30, what="three more push sweeps")
        received = billing.snapshot()
        rows = pushes(stack.runtime)

    assert len(rows) == 10 and len(received) == 10
    assert sorted(delivered_ok(received).values()) == [1] * 10
    bodies = [json.loads(r.body) for r in received]
    by_order = {b["orderId"]: b for b in bodies}
    assert {by_order[f"push-{i}"]["state"] for i in range(5)} == {"APPROVED"}
    assert {by_order[f"push-{i}"]["state"] for i in range(5, 10)} == {"DECLINED"}
    assert all(b["retryAllowed"] == (b["state"] == "DECLINED") for b in bodies)
    assert all(r.headers["flexmit-event-id"] == json.loads(r.body)["eventId"] for r in received)
    assert all(verify_push(r.body, r.headers["flexmit-timestamp"],
                           r.headers["flexmit-signature"], SECRET) for r in received)
