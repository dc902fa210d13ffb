"""The real sandbox delivers signed webhooks (dropped, retried, duplicated) to the real API served
over HTTP; a real Celery worker applies them. Every order ends where FlexFactor decided."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from tests.factories import make_valid_decline
from tests.pipeline import Stack, running_stack, wait_until
from tests.webhooks_helpers import events, serving
from worker.api import create_app
from worker.db.models import Order
from worker.sandbox.config import SandboxConfig

pytestmark = pytest.mark.pipeline
AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}
# Cents pick the sandbox's plan (worker/sandbox/outcomes.py): complete, expire, cancel,
# challenge (then completed), decline (at once, no webhook), approve (at once + webhook).
AMOUNTS = [1910, 1965, 1982, 1987, 1992, 1997]
WEBHOOKS_PER_PLAN = {"complete": 1, "expire": 1, "cancel": 1, "challenge": 2, "decline": 0,
                     "approve": 1}
FINAL_STATE = {"completed": "APPROVED", "expired": "EXPIRED", "cancelled": "CANCELLED",
               "declined": "DECLINED"}


def sandbox_orders(stack: Stack) -> list[dict[str, Any]]:
    resp = httpx.get(f"{stack.sandbox_root}/_sandbox/orders", timeout=10)
    resp.raise_for_status()
    return list(resp.json())


def our_states(stack: Stack) -> dict[str, str]:
    with stack.runtime.sessions() as session:
        return {oid: state for oid, state in session.execute(select(Order.order_id, Order.state))}


def matches_sandbox(stack: Stack, total: int) -> bool:
    """Every sandbox order is final and our order is in the state that final means."""
    theirs = sandbox_orders(stack)
    ours = our_states(stack)
    return len(theirs) == total and all(
        o["final"] is not None and ours.get(o["orderId"]) == FINAL_STATE[o["final"]]
        for o in theirs)


def all_delivered_and_processed(stack: Stack) -> bool:
    """Every delivery the sandbox saw answered 2xx is stored, and none awaits processing."""
    stored = [e for e in events(stack.runtime) if e.verified]
    delivered = stack.ledger()["webhooks_delivered"]
    return len(stored) == delivered and all(e.processed_at is not None for e in stored)


def test_sandbox_webhooks_settle_every_order(database_url: str, shared_urls: tuple[str, str],
                                              tmp_path: Path) -> None:
    sandbox = SandboxConfig(resolve_after_s=1.5, webhook_duplicate_rate=0.3,
                            webhook_fail_rate=0.2, webhook_retry_base_s=0.2)
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXFACTOR_WEBHOOK_KEY=sandbox.webhook_key_b64) as stack, \
            serving(create_app(stack.settings, stack.runtime)) as api:
        stack.sandbox_config(webhook_url=f"{api}/v1/flexfactor/webhooks")
        stack.start_worker("w1", concurrency=2)
        declines = [make_valid_decline(orderId=f"wh-{i:02d}", amount=AMOUNTS[i % 6])
                    for i in range(30)]
        resp = httpx.post(f"{api}/v1/declines", json={"declines": declines}, headers=AUTH,
                          timeout=30)
        assert resp.status_code == 202, resp.text

        wait_until(lambda: matches_sandbox(stack, 30), timeout=120,
                   what=f"orders to match the sandbox ({stack.by_state()})")
        wait_until(lambda: all_delivered_and_processed(stack), timeout=60,
                   what="every delivered webhook to be stored and processed")
        plans = Counter(o["plan"] for o in sandbox_orders(stack))
        ledger = stack.ledger()
        stored = events(stack.runtime)

    assert ledger["webhooks_failed"] > 0 and ledger["webhooks_duplicated"] > 0  # faults happened
    assert not [e for e in stored if not e.verified]  # the sandbox's signatures all verified
    firsts = [e for e in stored if e.dedupe_key is not None]
    assert len(firsts) == sum(WEBHOOKS_PER_PLAN[p] * n for p, n in plans.items())
    assert {e.outcome for e in firsts} <= {"applied", "noted", "already_in_state"}
    dups = [e for e in stored if e.outcome == "duplicate"]
    assert len(firsts) + len(dups) == ledger["webhooks_delivered"]
