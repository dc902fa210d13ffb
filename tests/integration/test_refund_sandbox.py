"""Refunds through flexmit's HTTP API against the sandbox over HTTP.

What FlexFactor received is read back from the sandbox (``refundsReceived``: each
``amountToRefund`` exactly as it parsed it), not from flexmit's own records.
"""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

from tests.pipeline import Stack
from tests.refund_helpers import (
    AUTH,
    REFUND_ROUTE,
    api_stack,
    approved_order,
    billing_states,
    calls,
    evaluate,
    get_order,
    history_causes,
    retry_allowed,
    sandbox_order,
    submit,
)
from worker.sandbox.config import FaultRule, SandboxConfig


def received(stack: Stack, order_id: str) -> list[Decimal]:
    """Each amountToRefund the sandbox received for the order, as dollars."""
    return [Decimal(v) for v in sandbox_order(stack, order_id)["refundsReceived"]]


def test_partial_then_remaining_refund_sends_exact_dollars(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """1999 cents: refund 500 -> FlexFactor gets 5.00; then the rest -> 14.99."""
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        order_id = approved_order(stack, client, 1999)

        first = client.post(f"/v1/orders/{order_id}/refund", json={"amountCents": 500},
                            headers=AUTH)
        assert first.status_code == 200, first.text
        assert first.json()["state"] == "PARTIALLY_REFUNDED"
        assert first.json()["refund"]["amountToRefund"] == "5.00"
        assert first.json()["refundedAmount"] == 500
        assert received(stack, order_id) == [Decimal("5.00")]

        rest = client.post(f"/v1/orders/{order_id}/refund", headers=AUTH)  # no body: the rest
        assert rest.status_code == 200, rest.text
        assert rest.json()["state"] == "REFUNDED"
        assert rest.json()["refund"] == {**rest.json()["refund"], "amountCents": 1499,
                                         "amountToRefund": "14.99", "remainingAmount": 0}
        row = sandbox_order(stack, order_id)
        assert received(stack, order_id) == [Decimal("5.00"), Decimal("14.99")]
        assert row["refundsReceived"][-1] == "14.99"
        assert row["refunded"] == 1999 and row["statusName"] == "Returned"

        view = get_order(client, order_id)
        assert view["refundedAmount"] == 1999
        assert [c for c in history_causes(view) if c == "refund"] == ["refund", "refund"]
        assert retry_allowed(client, order_id) is False  # it was paid: billing must not charge
    assert billing_states(stack, order_id) == [
        ("QUEUED", "APPROVED", False),
        ("APPROVED", "PARTIALLY_REFUNDED", False),
        ("PARTIALLY_REFUNDED", "REFUNDED", False),
    ]


def test_full_refund_of_1999_cents_sends_19_99(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        order_id = approved_order(stack, client, 1999)
        resp = client.post(f"/v1/orders/{order_id}/refund", json={"amountCents": 1999},
                           headers=AUTH)
        assert resp.status_code == 200, resp.text
        assert resp.json()["state"] == "REFUNDED"
        row = sandbox_order(stack, order_id)
    assert row["refundsReceived"] == ["19.99"]
    assert row["refunded"] == 1999 and row["statusName"] == "Returned"


def test_over_refund_and_bad_amounts_are_refused_before_flexfactor(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        order_id = approved_order(stack, client, 1999)
        url = f"/v1/orders/{order_id}/refund"

        over = client.post(url, json={"amountCents": 2000}, headers=AUTH)
        assert over.status_code == 422, over.text
        assert "more than the 1999 cents left" in over.json()["detail"]
        for bad in ({"amountCents": 19.99}, {"amountCents": "500"}, {"amountCents": 0},
                    {"amountCents": -5}, {"amount": 500}):
            assert client.post(url, json=bad, headers=AUTH).status_code == 422, bad
        assert calls(stack, REFUND_ROUTE) == {}  # nothing reached FlexFactor

        assert client.post(url, json={"amountCents": 1500}, headers=AUTH).status_code == 200
        again = client.post(url, json={"amountCents": 500}, headers=AUTH)
        assert again.status_code == 422 and again.json()["remainingAmount"] == 499
        assert calls(stack, REFUND_ROUTE)["total"] == 1
        assert get_order(client, order_id)["state"] == "PARTIALLY_REFUNDED"
        assert sandbox_order(stack, order_id)["refundsReceived"] == ["15.0"]


def test_refund_of_an_order_not_approved_is_refused(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        queued = submit(client, 1950)
        resp = client.post(f"/v1/orders/{queued}/refund", headers=AUTH)
        assert resp.status_code == 409 and resp.json()["state"] == "QUEUED"
        evaluate(stack, queued, "PENDING")
        assert client.post(f"/v1/orders/{queued}/refund", headers=AUTH).status_code == 409
        assert client.post("/v1/orders/nope/refund", headers=AUTH).status_code == 404
        assert calls(stack, REFUND_ROUTE) == {}


def test_flexfactor_failed_2001_changes_nothing(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """FlexFactor's remainder is lower than ours (refunded elsewhere): FAILED / 2001 -> 409."""
    with api_stack(database_url, shared_urls, tmp_path) as (stack, client):
        order_id = approved_order(stack, client, 1999)
        key = get_order(client, order_id)["orderSessionKey"]
        stack.runtime.flexfactor.refund(key, 1000)  # straight to FlexFactor, behind our back

        resp = client.post(f"/v1/orders/{order_id}/refund", headers=AUTH)
        assert resp.status_code == 409, resp.text
        assert resp.json()["responseCode"] == "2001"
        assert "FlexFactor refused the refund" in resp.json()["detail"]
        view = get_order(client, order_id)
        assert view["state"] == "APPROVED" and view["refundedAmount"] == 0
        assert "refund.refused_by_flexfactor" in history_causes(view)

        ok = client.post(f"/v1/orders/{order_id}/refund", json={"amountCents": 999},
                         headers=AUTH)
        assert ok.status_code == 200 and ok.json()["state"] == "PARTIALLY_REFUNDED"
        row = sandbox_order(stack, order_id)
    assert row["refundsReceived"] == ["10.0", "19.99", "9.99"]
    assert row["refunded"] == 1999


def test_concurrent_refunds_send_only_one(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """Two full refunds at once: one is made, the other refused without reaching FlexFactor."""
    slow = FaultRule(route="refund", fault="slow", times=1)
    sandbox = SandboxConfig(resolve_after_s=3600, fault_rules=[slow], slow_reply_s=1.5)
    with api_stack(database_url, shared_urls, tmp_path, sandbox) as (stack, client):
        order_id = approved_order(stack, client, 1999)
        start = threading.Barrier(2)
        answers: list[tuple[int, str]] = []

        def refund() -> None:
            start.wait(timeout=10)
            resp = client.post(f"/v1/orders/{order_id}/refund", headers=AUTH)
            answers.append((resp.status_code, resp.json().get("detail", "")))

        threads = [threading.Thread(target=refund) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(code for code, _ in answers) == [200, 409], answers
        assert "in progress" in next(d for code, d in answers if code == 409)
        assert calls(stack, REFUND_ROUTE)["total"] == 1
        assert get_order(client, order_id)["state"] == "REFUNDED"
        assert sandbox_order(stack, order_id)["refundsReceived"] == ["19.99"]
