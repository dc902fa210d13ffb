"""Rate limit (429 + Retry-After) and injected faults (503, 500, slow reply) over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from worker.sandbox import SandboxConfig, running_sandbox
from worker.sandbox.testing import evaluate_body

CREDS = {"AppKey": "sandbox-key", "AppSecret": "sandbox-secret"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_sandbox(SandboxConfig(resolve_after_s=30, rate_limit=0, slow_reply_s=1.0)) as url:
        yield url


def test_over_the_limit_is_429_with_retry_after(api: httpx.Client, control: httpx.Client) -> None:
    control.post("/reset")
    control.post("/config", json={"rate_limit": 5})
    replies = [api.get("/orders") for _ in range(15)]
    limited = [r for r in replies if r.status_code == 429]
    assert limited and all(r.headers["Retry-After"] == "1" for r in limited)
    assert limited[0].json()["status"] == 429 and limited[0].json()["traceId"].startswith("00-")
    ledger = control.get("/ledger").json()
    assert ledger["rate_limited_429"] == len(limited)
    assert ledger["max_accepted_in_any_second"] == 5
    assert ledger["calls"]["GET /v1/orders"]["429"] == len(limited)
    token = api.post("/oauth2/token", json=CREDS)
    assert token.status_code == 200  # /oauth2/token is never rate limited


def test_ledger_counts_busiest_second_with_limit_off(
    api: httpx.Client, control: httpx.Client
) -> None:
    for _ in range(7):
        assert api.get("/orders").status_code == 200
    ledger = control.get("/ledger").json()
    assert ledger["rate_limited_429"] == 0 and 1 <= ledger["max_accepted_in_any_second"] <= 7


def test_fault_503_creates_no_order(api: httpx.Client, control: httpx.Client) -> None:
    control.post("/config", json={"fault_503_rate": 1.0})
    reply = api.post("/evaluate", json=evaluate_body("f503-1", 1910))
    assert reply.status_code == 503 and reply.json()["status"] == 503
    assert control.get("/orders").json() == []
    control.post("/config", json={"fault_503_rate": 0.0})
    assert api.post("/evaluate", json=evaluate_body("f503-1", 1910)).status_code == 200


def test_fault_rule_is_deterministic_by_order_id(api: httpx.Client, control: httpx.Client) -> None:
    rule = {"route": "evaluate", "order_id_contains": "boom", "fault": "503", "times": 2}
    control.post("/config", json={"fault_rules": [rule]})
    assert api.post("/evaluate", json=evaluate_body("calm-1", 1910)).status_code == 200
    codes = [
        api.post("/evaluate", json=evaluate_body("boom-1", 1910)).status_code for _ in range(3)
    ]
    assert codes == [503, 503, 200]
    assert sorted(o["orderId"] for o in control.get("/orders").json()) == ["boom-1", "calm-1"]


def test_fault_rule_500_on_refund(api: httpx.Client, control: httpx.Client) -> None:
    rule = {"route": "refund", "order_id_contains": "r500", "fault": "500", "times": 1}
    control.post("/config", json={"fault_rules": [rule]})
    key = api.post("/evaluate", json=evaluate_body("r500-1", 1997)).json()["orderId"]
    assert api.post(f"/orders/{key}/refund", json={"amountToRefund": 1}).status_code == 500
    assert api.get(f"/orders/{key}").json()["refundedAmount"] == 0
    assert (
        api.post(f"/orders/{key}/refund", json={"amountToRefund": 1}).json()["status"] == "SUCCESS"
    )


def test_slow_reply_creates_the_order_then_times_out(
    api: httpx.Client, control: httpx.Client
) -> None:
    rule = {"route": "evaluate", "order_id_contains": "slow", "fault": "slow", "times": 1}
    control.post("/config", json={"fault_rules": [rule]})
    with pytest.raises(httpx.ReadTimeout):
        api.post("/evaluate", json=evaluate_body("slow-1", 1910), timeout=0.3)
    # the order exists although the caller never heard back; other requests still flow meanwhile
    rows = control.get("/orders").json()
    assert [r["orderId"] for r in rows] == ["slow-1"]
    again = api.post("/evaluate", json=evaluate_body("slow-1", 1910)).json()
    assert again["orderSessionKey"] == rows[0]["orderSessionKey"]
    assert control.get("/ledger").json()["evaluate_calls_per_order_id"] == {"slow-1": 2}
