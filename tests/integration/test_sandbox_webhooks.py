"""Each documented outcome end to end over real HTTP, with signed webhooks to a local receiver."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from worker.sandbox import SandboxConfig, running_sandbox
from worker.sandbox.config import DEFAULT_WEBHOOK_KEY_B64
from worker.sandbox.testing import (
    Received,
    WebhookReceiver,
    evaluate_body,
    wait_for,
    webhook_receiver,
)

CREDS = {"AppKey": "sandbox-key", "AppSecret": "sandbox-secret"}
BODY_KEYS = [
    "Event",
    "TimeStamp",
    "EventData",
    "ExternalOrderId",
    "OrderId",
    "ConfirmationId",
    "IsTestMode",
    "IsResent",
]


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as rec:
        yield rec


@pytest.fixture(scope="module")
def base_url(receiver: WebhookReceiver) -> Iterator[str]:
    config = SandboxConfig(resolve_after_s=0.2, webhook_url=receiver.url, webhook_retry_base_s=0.05)
    with running_sandbox(config) as url:
        yield url


@pytest.fixture
def control(base_url: str, receiver: WebhookReceiver) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url.removesuffix("/v1") + "/_sandbox") as ctl:
        ctl.post("/reset")
        with receiver.lock:
            receiver.received.clear()
            receiver.fail_first = 0
        original = ctl.get("/config").json()
        yield ctl
        ctl.post("/config", json=original)




def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def assert_signed(hook: Received, host: str = "127.0.0.1") -> dict[str, Any]:
    """Recompute both §6.4 signatures with the formula (independently of worker.flexfactor)."""
    key = base64.b64decode(DEFAULT_WEBHOOK_KEY_B64)
    h = hook.headers
    content_hash = _b64(hashlib.sha512(hook.body).digest())
    to_sign = f"POST\n{h['x-fc-nonce']};{h['x-fc-date']};{host};{content_hash}"
    signature = _b64(hmac.new(key, to_sign.encode(), hashlib.sha512).digest())
    assert h["x-fc-content-sha512"] == content_hash
    assert h["x-fc-signature"] == _b64(hmac.new(key, hook.body, hashlib.sha512).digest())
    assert h["x-fc-authorization"] == (
        "HMAC-SHA512 SignedHeaders=x-fc-nonce;x-fc-date;host;x-fc-content-sha512&Signature="
        + signature
    )
    assert re.fullmatch(r"[0-9a-f]{32}", h["x-fc-nonce"]) and h["x-fc-date"].endswith(" GMT")
    assert h["content-type"].startswith("text/plain") and "json" not in h["content-type"]
    body = json.loads(hook.body)
    assert list(body) == BODY_KEYS
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", body["TimeStamp"])
    assert re.fullmatch(r"[0-9A-F]{8}", body["ConfirmationId"]) and body["IsTestMode"] is True
    return dict(body)


def hooks_for(receiver: WebhookReceiver, key: str) -> list[dict[str, Any]]:
    return [json.loads(h.body) for h in receiver.snapshot() if json.loads(h.body)["OrderId"] == key]


def events_for(receiver: WebhookReceiver, key: str, count: int) -> list[dict[str, Any]]:
    def enough() -> list[dict[str, Any]] | None:
        found = hooks_for(receiver, key)
        return found if len(found) >= count else None

    return wait_for(enough)


def final_order(api: httpx.Client, key: str) -> dict[str, Any]:
    return wait_for(lambda: (o := api.get(f"/orders/{key}").json())["status"] not in (0, 4) and o)


OUTCOMES = [
    (1910, "SUBMITTED", 7, "Completed", ["order.completed"]),
    (1965, "SUBMITTED", 2, "Expired", ["order.expired"]),
    (1982, "SUBMITTED", 2, "Cancelled", ["order.cancelled"]),
    (1987, "CHALLENGE", 7, "Completed", ["challenge.presented", "order.completed"]),
    (1992, "DECLINED", 2, "Cancelled", []),
    (1997, "APPROVED", 7, "Completed", ["order.completed"]),
]


@pytest.mark.parametrize(("amount", "first", "status", "name", "events"), OUTCOMES)
def test_documented_outcome_end_to_end(
    api: httpx.Client,
    receiver: WebhookReceiver,
    amount: int,
    first: str,
    status: int,
    name: str,
    events: list[str],
) -> None:
    reply = api.post("/evaluate", json=evaluate_body(f"out-{amount}", amount)).json()
    key = reply["orderSessionKey"]
    assert reply["status"] == first
    order = final_order(api, key)
    assert (order["status"], order["statusName"]) == (status, name)
    if events:
        got = events_for(receiver, key, len(events))
        assert [e["Event"] for e in got] == events
        assert all(e["ExternalOrderId"] == f"out-{amount}" and not e["IsResent"] for e in got)
        for hook in receiver.snapshot():
            assert_signed(hook)


@pytest.mark.parametrize(
    ("token", "first", "final_name"),
    [
        ("tok_approve_1", "APPROVED", "Completed"),
        ("tok_decline_1", "DECLINED", "Cancelled"),
        ("tok_expire_1", "SUBMITTED", "Expired"),
        ("tok_challenge_1", "CHALLENGE", "Completed"),
    ],
)
def test_token_prefix_overrides_amount(
    api: httpx.Client, token: str, first: str, final_name: str
) -> None:
    body = evaluate_body(f"pre-{token}", 1910)
    body["paymentMethod"]["cardNumber"] = token
    reply = api.post("/evaluate", json=body).json()
    assert reply["status"] == first
    assert final_order(api, reply["orderId"])["statusName"] == final_name


def test_expiry_before_resolution_expires(
    api: httpx.Client, control: httpx.Client, receiver: WebhookReceiver
) -> None:
    control.post("/config", json={"resolve_after_s": 60})
    expiry = (datetime.now(UTC) + timedelta(seconds=0.5)).isoformat().replace("+00:00", "Z")
    key = api.post("/evaluate", json=evaluate_body("exp-1", 1910, expiryDateUtc=expiry)).json()[
        "orderId"
    ]
    assert final_order(api, key)["statusName"] == "Expired"
    assert [e["Event"] for e in events_for(receiver, key, 1)] == ["order.expired"]


@pytest.mark.parametrize(
    ("amount", "final"),
    [(1910, "APPROVED"), (1965, "EXPIRED"), (1982, "CANCELLED"), (1992, "DECLINED")],
)
def test_sync_mode_answers_current_state(
    api: httpx.Client, control: httpx.Client, amount: int, final: str
) -> None:
    control.post("/config", json={"mode": "sync", "resolve_after_s": 60})
    first = api.post("/evaluate", json=evaluate_body(f"sync-{amount}", amount)).json()
    expected_first = "DECLINED" if final == "DECLINED" else "PROCESSING"
    assert first["status"] == expected_first
    control.post("/resolve-all")
    again = api.post("/evaluate", json=evaluate_body(f"sync-{amount}", amount)).json()
    assert (again["status"], again["orderSessionKey"]) == (final, first["orderSessionKey"])


def test_failed_deliveries_are_retried_with_is_resent(
    api: httpx.Client, control: httpx.Client, receiver: WebhookReceiver
) -> None:
    receiver.fail_first = 2
    key = api.post("/evaluate", json=evaluate_body("retry-1", 1997)).json()["orderId"]
    got = events_for(receiver, key, 3)
    assert [(e["Event"], e["IsResent"]) for e in got] == [
        ("order.completed", False),
        ("order.completed", True),
        ("order.completed", True),
    ]
    assert [h.status for h in receiver.snapshot()] == [500, 500, 200]
    ledger = wait_for(lambda: (led := control.get("/ledger").json())["webhooks_delivered"] and led)
    assert (ledger["webhooks_failed"], ledger["webhooks_resent"], ledger["webhooks_delivered"]) == (
        2,
        2,
        1,
    )


def test_fail_rate_drops_and_gives_up_after_max_tries(
    api: httpx.Client, control: httpx.Client, receiver: WebhookReceiver
) -> None:
    control.post("/config", json={"webhook_fail_rate": 1.0, "webhook_max_tries": 3})
    api.post("/evaluate", json=evaluate_body("drop-1", 1997))
    ledger = wait_for(lambda: (led := control.get("/ledger").json())["webhooks_abandoned"] and led)
    assert (ledger["webhooks_failed"], ledger["webhooks_resent"], ledger["webhooks_delivered"]) == (
        3,
        2,
        0,
    )
    assert receiver.snapshot() == []


def test_duplicate_rate_resends_a_delivered_webhook(
    api: httpx.Client, control: httpx.Client, receiver: WebhookReceiver
) -> None:
    control.post("/config", json={"webhook_duplicate_rate": 1.0})
    key = api.post("/evaluate", json=evaluate_body("dup-1", 1997)).json()["orderId"]
    got = events_for(receiver, key, 2)
    assert [e["IsResent"] for e in got] == [False, True]
    assert got[0]["TimeStamp"] == got[1]["TimeStamp"]


def _flush(api: httpx.Client, receiver: WebhookReceiver, name: str) -> None:
    """Deliveries are FIFO: once a later sentinel event arrives, earlier ones have too."""
    key = api.post("/evaluate", json=evaluate_body(name, 1997)).json()["orderId"]
    events_for(receiver, key, 1)


def test_cancel_collapse_sends_one_cancelled_webhook(
    api: httpx.Client, receiver: WebhookReceiver
) -> None:
    control_key = api.post("/evaluate", json=evaluate_body("cc-1", 1910)).json()["orderId"]
    assert api.post(f"/orders/{control_key}/cancel", json={}).status_code == 200
    assert api.post("/orders/cc-1/external-cancel", json={}).status_code == 200
    _flush(api, receiver, "cc-sentinel")
    assert [e["Event"] for e in hooks_for(receiver, control_key)] == ["order.cancelled"]


def test_refund_and_chargeback_webhooks(
    api: httpx.Client, control: httpx.Client, receiver: WebhookReceiver
) -> None:
    key = api.post("/evaluate", json=evaluate_body("rc-1", 1997)).json()["orderId"]
    assert (
        api.post(f"/orders/{key}/refund", json={"amountToRefund": 5}).json()["status"] == "SUCCESS"
    )
    assert control.post(f"/orders/{key}/chargeback").status_code == 200
    got = events_for(receiver, key, 3)
    assert [e["Event"] for e in got] == [
        "order.completed",
        "order.refunded",
        "payment.chargeback.received",
    ]


def test_webhooks_can_be_switched_off(
    api: httpx.Client, control: httpx.Client, receiver: WebhookReceiver
) -> None:
    control.post("/config", json={"webhooks_enabled": False})
    key = api.post("/evaluate", json=evaluate_body("off-1", 1997)).json()["orderId"]
    control.post("/config", json={"webhooks_enabled": True})
    _flush(api, receiver, "off-sentinel")
    assert hooks_for(receiver, key) == []
