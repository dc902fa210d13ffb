"""``POST /v1/orders/{orderId}/cancel`` against the sandbox over HTTP.

The route cancels locally at once (billing may retry at once); the FlexFactor call it owes is
made by ``run_pending_action``, called here directly as the ``flexmit.remote_action`` task would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.pipeline import wait_until
from tests.refund_helpers import (
    AUTH,
    api_stack,
    approved_order,
    billing_states,
    calls,
    evaluate,
    get_order,
    history_causes,
    order_pk,
    retry_allowed,
    sandbox_order,
    submit,
)
from worker.cancel import run_pending_action
from worker.evaluate import evaluate_order
from worker.sandbox.config import FaultRule, SandboxConfig

CANCEL = "POST /v1/orders/{id}/cancel"
EXTERNAL = "POST /v1/orders/{id}/external-cancel"


def test_cancel_of_a_queued_order_lifts_the_suppression_and_never_sends_it(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        order_id = submit(client, 1950)
        assert retry_allowed(client, order_id) is False

        resp = client.post(f"/v1/orders/{order_id}/cancel", headers=AUTH)
        assert resp.status_code == 202, resp.text
        assert resp.json()["state"] == "CANCELLED"
        assert retry_allowed(client, order_id) is True

        pk = order_pk(stack, order_id)
        assert evaluate_order(stack.runtime, pk, owner="late-message") is None
        assert run_pending_action(stack.runtime, pk, owner="t") is True
        ledger = stack.ledger()
        assert ledger["evaluate_calls_total"] == 0
        # FlexFactor never had it: external-cancel by our orderId, its 404 ends the matter.
        assert ledger["calls"][EXTERNAL] == {"total": 1, "404": 1}
        assert "flexfactor.external-cancel" in history_causes(get_order(client, order_id))
        assert run_pending_action(stack.runtime, pk, owner="t2") is False  # nothing owed now
    assert billing_states(stack, order_id) == [("QUEUED", "CANCELLED", True)]


def test_cancel_of_a_pending_order_reaches_flexfactor_by_its_key(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        order_id = submit(client, 1950)  # cents 00-59: SUBMITTED, completes much later
        evaluate(stack, order_id, "PENDING")
        assert sandbox_order(stack, order_id)["final"] is None

        resp = client.post(f"/v1/orders/{order_id}/cancel", headers=AUTH)
        assert resp.status_code == 202 and resp.json()["state"] == "CANCELLED"
        assert retry_allowed(client, order_id) is True
        assert run_pending_action(stack.runtime, order_pk(stack, order_id), owner="t") is True

        assert calls(stack, CANCEL) == {"total": 1, "200": 1}
        row = sandbox_order(stack, order_id)
        assert row["statusName"] == "Cancelled" and row["final"] == "cancelled"

        again = client.post(f"/v1/orders/{order_id}/cancel", headers=AUTH)
        assert again.status_code == 200 and again.json()["state"] == "CANCELLED"
        assert run_pending_action(stack.runtime, order_pk(stack, order_id), owner="t") is False
        assert calls(stack, CANCEL)["total"] == 1


def test_cancel_of_an_unknown_order_uses_external_cancel(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """/evaluate timed out (FlexFactor made the order, we never got its key): external-cancel
    by our orderId cancels it at FlexFactor."""
    slow = FaultRule(route="evaluate", fault="slow", times=1)
    sandbox = SandboxConfig(resolve_after_s=3600, fault_rules=[slow], slow_reply_s=3)
    with api_stack(database_url, shared_urls, tmp_path, sandbox,
                   FLEXFACTOR_TIMEOUT_S=1) as (stack, client):
        order_id = submit(client, 1950)
        evaluate(stack, order_id, "UNKNOWN")
        assert get_order(client, order_id)["orderSessionKey"] is None

        assert client.post(f"/v1/orders/{order_id}/cancel", headers=AUTH).status_code == 202
        assert retry_allowed(client, order_id) is True
        assert run_pending_action(stack.runtime, order_pk(stack, order_id), owner="t") is True

        assert calls(stack, EXTERNAL) == {"total": 1, "200": 1}
        assert sandbox_order(stack, order_id)["statusName"] == "Cancelled"


def test_cancel_of_an_approved_order_says_use_refund(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        order_id = approved_order(stack, client, 1999)
        resp = client.post(f"/v1/orders/{order_id}/cancel", headers=AUTH)
        assert resp.status_code == 409, resp.text
        assert "refund" in resp.json()["detail"]
        assert get_order(client, order_id)["state"] == "APPROVED"
        assert retry_allowed(client, order_id) is False
        assert client.post("/v1/orders/nope/cancel", headers=AUTH).status_code == 404
        assert calls(stack, CANCEL) == {} and calls(stack, EXTERNAL) == {}


@pytest.mark.pipeline
def test_a_real_worker_sends_the_owed_cancel(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """Worker evaluates (PENDING); the cancel route's message makes the worker cancel it at
    FlexFactor by its key; nothing is called twice."""
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        stack.start_worker("w1", concurrency=1)
        order_id = submit(client, 1950)
        wait_until(lambda: get_order(client, order_id)["state"] == "PENDING", timeout=60,
                   what="the worker to evaluate the order")

        assert client.post(f"/v1/orders/{order_id}/cancel", headers=AUTH).status_code == 202
        wait_until(lambda: sandbox_order(stack, order_id)["statusName"] == "Cancelled",
                   timeout=60, what="the worker to cancel the order at FlexFactor")
        wait_until(lambda: "flexfactor.cancel" in history_causes(get_order(client, order_id)),
                   timeout=30, what="the cancel to be recorded")
        assert calls(stack, CANCEL) == {"total": 1, "200": 1}
        assert stack.ledger()["evaluate_calls_total"] == 1
