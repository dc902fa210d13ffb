"""``flexmit refund`` and ``flexmit cancel`` against the sandbox, configured by environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.pipeline import Stack
from tests.refund_helpers import (
    REFUND_ROUTE,
    api_stack,
    approved_order,
    calls,
    get_order,
    retry_allowed,
    sandbox_order,
    submit,
)
from worker.cli import main
from worker.runtime import reset_runtime
from worker.settings import get_settings


@pytest.fixture(autouse=True)
def _fresh_process_state() -> Iterator[None]:
    # The CLI reads get_settings() (cached) and get_runtime(): start and end clean.
    get_settings.cache_clear()
    reset_runtime()
    yield
    reset_runtime()
    get_settings.cache_clear()


def flexmit(stack: Stack, *args: str) -> Result:
    """Run ``flexmit ARGS`` in this process with the stack's settings as environment."""
    result = CliRunner().invoke(main, list(args), env=stack.settings.to_env())
    reset_runtime()  # the command's runtime was built from the env just used
    get_settings.cache_clear()
    return result


def test_cli_refunds_in_part_then_in_full(database_url: str, shared_urls: tuple[str, str],
                                          tmp_path: Path) -> None:
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        order_id = approved_order(stack, client, 1999)

        part = flexmit(stack, "refund", order_id, "--amount-cents", "500")
        assert part.exit_code == 0, part.output
        assert "refunded 5.00 USD" in part.output and "PARTIALLY_REFUNDED" in part.output
        assert "14.99 USD left" in part.output

        over = flexmit(stack, "refund", order_id, "--amount-cents", "1500")
        assert over.exit_code == 1
        assert "more than the 1499 cents left" in over.output

        rest = flexmit(stack, "refund", order_id)
        assert rest.exit_code == 0, rest.output
        assert "refunded 14.99 USD" in rest.output and "REFUNDED" in rest.output

        again = flexmit(stack, "refund", order_id)
        assert again.exit_code == 1 and "is REFUNDED" in again.output
        assert sandbox_order(stack, order_id)["refundsReceived"] == ["5.0", "14.99"]
        assert calls(stack, REFUND_ROUTE)["total"] == 2
        assert get_order(client, order_id)["refundedAmount"] == 1999


def test_cli_cancels_a_pending_order_and_refuses_an_approved_one(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        queued = submit(client, 1950)
        done = flexmit(stack, "cancel", queued)
        assert done.exit_code == 0, done.output
        assert "CANCELLED" in done.output and "external-cancel" in done.output
        assert retry_allowed(client, queued) is True
        assert flexmit(stack, "cancel", queued).output.strip().endswith("already CANCELLED")

        approved = approved_order(stack, client, 1997)
        refused = flexmit(stack, "cancel", approved)
        assert refused.exit_code == 1 and "use POST" in refused.output
        assert get_order(client, approved)["state"] == "APPROVED"

        missing = flexmit(stack, "refund", "no-such-order")
        assert missing.exit_code == 1 and "no order with orderId" in missing.output
