"""Pure pieces of the sandbox: outcome table, Luhn, validation, paging, windows, route names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker.sandbox.config import SandboxConfig
from worker.sandbox.gate import route_name
from worker.sandbox.ledger import Ledger
from worker.sandbox.outcomes import plan_for
from worker.sandbox.ratelimit import SlidingWindow
from worker.sandbox.routes.orders import paged
from worker.sandbox.testing import evaluate_body
from worker.sandbox.validation import luhn_ok, validate_evaluate

NOW = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cents", "plan"),
    [
        (0, "complete"),
        (59, "complete"),
        (60, "expire"),
        (79, "expire"),
        (80, "cancel"),
        (84, "cancel"),
        (85, "challenge"),
        (89, "challenge"),
        (90, "decline"),
        (94, "decline"),
        (95, "approve"),
        (99, "approve"),
    ],
)
def test_outcome_table_by_cents(cents: int, plan: str) -> None:
    assert plan_for(1900 + cents, "tok_x").name == plan


@pytest.mark.parametrize(
    ("token", "plan"),
    [
        ("tok_approve_a", "approve"),
        ("tok_decline", "decline"),
        ("tok_expire9", "expire"),
        ("tok_cancel", "cancel"),
        ("tok_challenge", "challenge"),
        ("tok_complete", "complete"),
    ],
)
def test_token_prefix_wins(token: str, plan: str) -> None:
    assert plan_for(1999, token).name == plan


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("4000002760003184")
    assert not luhn_ok("4111111111111112") and not luhn_ok("4111") and not luhn_ok("abc")


def test_valid_body_has_no_errors_and_pascalcase_keys_for_missing() -> None:
    config = SandboxConfig()
    assert validate_evaluate(evaluate_body("u-1"), config, NOW) == {}
    body = evaluate_body("u-2")
    del body["billingInformation"]["city"], body["isMIT"]
    assert set(validate_evaluate(body, config, NOW)) == {"BillingInformation.City", "IsMIT"}
    assert validate_evaluate([], config, NOW) == {
        "$": ["The JSON value could not be converted to EvaluateRequest."]
    }


def test_expiry_required_only_for_managed_mit() -> None:
    body = evaluate_body("u-3")
    del body["expiryDateUtc"]
    assert set(validate_evaluate(body, SandboxConfig(), NOW)) == {"ExpiryDateUtc"}
    assert validate_evaluate(body, SandboxConfig(mode="sync"), NOW) == {}
    assert validate_evaluate({**body, "isMIT": False}, SandboxConfig(), NOW) == {}


def test_paging_math() -> None:
    page = paged(list(range(3)), 23, 3, 10)
    assert (page["pageCount"], page["firstItemOnPage"], page["lastItemOnPage"]) == (3, 21, 23)
    assert page["isLastPage"] and not page["hasNextPage"] and page["hasPreviousPage"]
    empty = paged([], 0, 1, 10)
    assert (empty["pageCount"], empty["firstItemOnPage"], empty["isLastPage"]) == (0, 0, True)


def test_sliding_window_allows_limit_per_second() -> None:
    window = SlidingWindow()
    assert [window.try_accept(10.0 + i * 0.1, 3) for i in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert window.try_accept(11.01, 3)  # the first one left the window
    assert all(window.try_accept(20.0, 0) for _ in range(100))  # 0 = off


def test_ledger_busiest_second() -> None:
    ledger = Ledger()
    for t in (0.0, 0.5, 0.9, 1.2, 3.0):
        ledger.count_accepted(t)
    assert ledger.max_accepted_in_any_second == 3


@pytest.mark.parametrize(
    ("method", "path", "label", "short"),
    [
        ("POST", "/v1/evaluate", "POST /v1/evaluate", "evaluate"),
        ("GET", "/v1/orders/abc", "GET /v1/orders/{id}", "order"),
        (
            "POST",
            "/v1/orders/abc/external-cancel",
            "POST /v1/orders/{id}/external-cancel",
            "external-cancel",
        ),
        ("POST", "/v1/oauth2/token", "POST /v1/oauth2/token", "token"),
    ],
)
def test_route_names(method: str, path: str, label: str, short: str) -> None:
    assert route_name(method, path) == (label, short)
