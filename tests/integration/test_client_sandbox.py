"""The FlexFactor client walks every route against the running sandbox over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from worker.flexfactor.client import FlexFactorClient
from worker.flexfactor.errors import (
    FlexFactorAuthError,
    FlexFactorBusinessError,
    FlexFactorNotFound,
    FlexFactorValidationError,
)
from worker.flexfactor.wire import EvaluateRequest, OrderStatus, TokenizeRequest
from worker.sandbox import SandboxConfig, running_sandbox
from worker.sandbox.config import DEFAULT_MID
from worker.sandbox.testing import evaluate_body

TEST_CARD = "4111111111111111"  # the public test card number


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_sandbox(SandboxConfig(resolve_after_s=3600, rate_limit=0)) as url:
        yield url


@pytest.fixture
def client(base_url: str) -> Iterator[FlexFactorClient]:
    with FlexFactorClient(base_url=base_url, app_key="sandbox-key", app_secret="sandbox-secret",
                          mid=DEFAULT_MID, tokenization_key="sandbox-tokenization-key") as c:
        yield c


def evaluate(client: FlexFactorClient, order_id: str, amount: int, **extra: Any) -> Any:
    body = evaluate_body(order_id, amount, **extra)
    return client.evaluate(EvaluateRequest.model_validate(body))


def test_token_lives_ten_minutes(client: FlexFactorClient) -> None:
    token = client.fetch_token()
    assert token.access_token
    assert abs(token.expires_ms / 1000 - (time.time() + 600)) < 30


def test_tokenize_then_evaluate_with_the_vault_token(client: FlexFactorClient) -> None:
    card = {"first_name": "Ada", "last_name": "Lovelace", "number": TEST_CARD,
            "verification_value": "123", "month": "12", "year": "2030"}
    vaulted = client.tokenize(TokenizeRequest.model_validate(
        {"payment_method": {"email": "ada@example.com", "credit_card": card}}))
    assert vaulted.token and TEST_CARD not in vaulted.token
    body = evaluate_body("tok-1", 1099)
    body["paymentMethod"]["cardNumber"] = vaulted.token
    answer = client.evaluate(EvaluateRequest.model_validate(body))
    assert answer.status == "APPROVED" and answer.order_session_key


def test_order_lookup_list_and_outcome(client: FlexFactorClient) -> None:
    key = evaluate(client, "look-1", 1099).order_session_key
    order = client.get_order(key)
    assert order.order_status == OrderStatus.COMPLETED
    page = client.list_orders(query="look-1")
    listed = [item.model_dump(by_alias=True) for item in page.items]
    assert [(o.get("externalOrderId"), o.get("id")) for o in listed] == [("look-1", key)]
    assert client.outcome(key).status == "APPROVED"


def test_refund_in_dollars_and_over_refund_refused(client: FlexFactorClient) -> None:
    key = evaluate(client, "refund-1", 1999).order_session_key
    assert client.refund(key, 500).status == "SUCCESS"
    with pytest.raises(FlexFactorBusinessError) as failed:
        client.refund(key, 1500)  # only 14.99 is left
    assert failed.value.response_code == "2001"


def test_cancel_and_external_cancel_stop_pending_rescues(client: FlexFactorClient) -> None:
    key = evaluate(client, "cancel-1", 1010).order_session_key
    client.cancel(key)
    assert client.get_order(key).order_status == OrderStatus.CANCELLED
    other = evaluate(client, "cancel-2", 1010).order_session_key
    client.external_cancel("cancel-2")
    assert client.get_order(other).order_status == OrderStatus.CANCELLED


def test_capture_completes_an_authorization(client: FlexFactorClient) -> None:
    answer = evaluate(client, "auth-1", 1010, transactionType="AUTHORIZATION")
    assert answer.status == "CAPTUREREQUIRED"
    assert client.capture(answer.order_id, 1010, "USD").outcome == "SUCCESS"
    assert client.get_order(answer.order_session_key).order_status == OrderStatus.COMPLETED


def test_real_errors_map_onto_the_error_tree(client: FlexFactorClient, base_url: str) -> None:
    with pytest.raises(FlexFactorValidationError) as invalid:
        evaluate(client, "bad-1", 25_000)  # the sandbox takes only > 10 and < 20000 cents
    assert "Transaction.Amount" in invalid.value.field_errors
    assert invalid.value.trace_id
    with pytest.raises(FlexFactorNotFound):
        client.get_order("00000000-0000-0000-0000-000000000000")
    with FlexFactorClient(base_url=base_url, app_key="sandbox-key", app_secret="wrong",
                          mid=DEFAULT_MID) as stranger, pytest.raises(FlexFactorAuthError):
        stranger.fetch_token()
