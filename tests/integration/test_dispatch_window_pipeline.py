"""Windowed dispatch under real parts: a batch three times the window reaches FlexFactor exactly
once per order, the window going out at intake and the rest through beat's sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tests.factories import make_valid_decline
from tests.pipeline import running_stack
from worker.db.models import Order
from worker.dispatch import dispatch_window
from worker.intake_store import accept_declines
from worker.sandbox.config import SandboxConfig

pytestmark = pytest.mark.pipeline
WINDOW = 100


def test_a_batch_of_three_windows_reaches_flexfactor_once_per_order(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    overrides, total = {"FLEXMIT_DISPATCH_WINDOW": WINDOW, "FLEXFACTOR_RATE_LIMIT": 20}, 300
    sandbox = SandboxConfig(rate_limit=20, resolve_after_s=3600)
    with running_stack(database_url, shared_urls, tmp_path, sandbox, **overrides) as stack:
        assert dispatch_window(stack.settings) == WINDOW
        declines = [make_valid_decline(orderId=f"win-{i:04d}", amount=1000 + i)
                    for i in range(total)]
        outcome = accept_declines(stack.runtime, declines, source="cli")
        assert len(outcome.dispatch_pks) == WINDOW  # only the window goes out at intake
        with stack.runtime.sessions() as s:
            undispatched = s.scalar(select(func.count()).select_from(Order)
                                    .where(Order.dispatched_at.is_(None)))
        assert undispatched == total - WINDOW

        stack.start_worker("w1", concurrency=2)
        stack.start_beat()
        stack.wait_settled(total, timeout=total / 1.4 + 60)
        ledger = stack.ledger()

    assert ledger["distinct_orders"] == total
    assert ledger["flexfactor_orders_per_order_id_max"] == 1
    assert ledger["rate_limited_429"] == 0
    assert sum(topped_up(stack.log_text("w1"))) == total - WINDOW  # the sweeps sent the rest


def topped_up(log: str) -> list[int]:
    """``fresh`` of every ``sweep.dispatched`` line: orders each sweep added to the window."""
    out = []
    for line in log.splitlines():
        if "sweep.dispatched" in line and line.lstrip().startswith("{"):
            out.append(int(json.loads(line).get("fresh", 0)))
    return out
