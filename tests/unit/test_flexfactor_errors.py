"""error_from_response / error_from_transport: every status and ProblemDetails variant (§8)."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from worker.flexfactor.errors import (
    DEFAULT_RETRY_AFTER_S,
    FlexFactorAuthError,
    FlexFactorBusinessError,
    FlexFactorConflict,
    FlexFactorConnectionError,
    FlexFactorError,
    FlexFactorNotFound,
    FlexFactorRateLimited,
    FlexFactorServerError,
    FlexFactorTimeout,
    FlexFactorValidationError,
    error_from_response,
    error_from_transport,
    parse_retry_after,
)

URL = "https://ff.test/v1/evaluate"


def response(status: int, body: Any = None, *, url: str = URL, **kw: Any) -> httpx.Response:
    request = httpx.Request("POST", url, content=b'{"paymentMethod":{"cardNumber":"tok-secret"}}')
    if isinstance(body, str | bytes):
        return httpx.Response(status, content=body, request=request, **kw)
    return httpx.Response(status, json=body, request=request, **kw)


def test_standard_problem_details() -> None:
    body = {
        "type": "https://tools.ietf.org/html/rfc7231#section-6.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "traceId": "00-aaa-bbb-01",
        "errors": {"OrderId": ["Merchant's orderId is required"], "Payer.Email": ["bad", "x"]},
    }
    err = error_from_response(response(400, body))
    assert type(err) is FlexFactorValidationError
    assert err.field_errors == {
        "OrderId": ["Merchant's orderId is required"],
        "Payer.Email": ["bad", "x"],
    }
    assert err.trace_id == "00-aaa-bbb-01" and err.status_code == 400 and err.body == body
    assert "OrderId" in str(err) and "Payer.Email" in str(err) and "00-aaa-bbb-01" in str(err)


def test_string_status_with_trace_id_inside_the_errors_map() -> None:
    body = {
        "status": "400",
        "errors": {
            "OrderId": ["Merchant's orderId is required"],
            "TraceId": ["00-ccc-01"],
            "IdempotencyKey": ["The IdempotencyKey field is required."],
        },
    }
    err = error_from_response(response(400, body))
    assert isinstance(err, FlexFactorValidationError)
    assert set(err.field_errors) == {"OrderId", "IdempotencyKey"}
    assert err.trace_id == "00-ccc-01"


@pytest.mark.parametrize(
    ("field", "message"),
    [
        ("IdempotencyKey", "The IdempotencyKey field is required."),
        ("ExpiryDateUtc", "The field ExpiryDateUtc is invalid."),
    ],
)
def test_flat_dictionary_variant(field: str, message: str) -> None:
    err = error_from_response(response(400, {"TraceId": ["00-flat-01"], field: [message]}))
    assert isinstance(err, FlexFactorValidationError)
    assert err.field_errors == {field: [message]}
    assert err.trace_id == "00-flat-01"


def test_400_without_json_is_still_a_validation_error() -> None:
    err = error_from_response(response(400, "Bad Request"))
    assert isinstance(err, FlexFactorValidationError)
    assert err.field_errors == {} and err.body == "Bad Request"


def test_400_on_the_token_route_means_bad_credentials() -> None:
    err = error_from_response(response(400, {"title": "x"}, url="https://ff.test/v1/oauth2/token"))
    assert type(err) is FlexFactorAuthError


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (401, FlexFactorAuthError),
        (403, FlexFactorAuthError),
        (404, FlexFactorNotFound),
        (409, FlexFactorConflict),
        (429, FlexFactorRateLimited),
        (500, FlexFactorServerError),
        (502, FlexFactorServerError),
        (503, FlexFactorServerError),
        (504, FlexFactorServerError),
        (405, FlexFactorError),
    ],
)
def test_status_maps_to_its_class(status: int, cls: type[FlexFactorError]) -> None:
    err = error_from_response(response(status, {"traceId": "00-t-01"}))
    assert type(err) is cls
    assert err.status_code == status and err.trace_id == "00-t-01"
    assert f"-> {status}" in str(err) and "/v1/evaluate" in str(err)


def test_429_reads_retry_after_seconds() -> None:
    err = error_from_response(response(429, None, headers={"Retry-After": "2.5"}))
    assert isinstance(err, FlexFactorRateLimited) and err.retry_after_s == 2.5


def test_retry_after_forms() -> None:
    now = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2026, 11, 1, 12, 0, 42, tzinfo=UTC), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == 42.0
    assert parse_retry_after(later, now=now.timestamp() + 100) == 0.0  # a date in the past
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-3") == 0.0
    for junk in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(junk) == DEFAULT_RETRY_AFTER_S


def test_business_failure_uses_response_code() -> None:
    body = {
        "responseCode": "2001",
        "responseMessage": "Amount to refund (1.00) is greater than maximum refund amount",
        "success": False,
        "status": "FAILED",
        "errors": [{"item1": "m", "item2": "2001", "item3": "2001", "item4": True}],
    }
    err = error_from_response(response(200, body))
    assert isinstance(err, FlexFactorBusinessError)
    assert err.response_code == "2001" and "greater than maximum refund" in str(err)


def test_business_failure_code_falls_back_to_the_error_tuple() -> None:
    body = {"success": False, "status": "FAILED", "errors": [{"item1": "nope", "item2": "3003"}]}
    err = error_from_response(response(200, body))
    assert isinstance(err, FlexFactorBusinessError) and err.response_code == "3003"


def test_messages_never_carry_the_request_body_headers_or_pan_like_digits() -> None:
    request = httpx.Request(
        "POST",
        URL,
        headers={"Authorization": "Bearer jwt-secret"},
        content=b'{"paymentMethod":{"cardNumber":"tok-secret"}}',
    )
    resp = httpx.Response(500, json={"title": "card 4111111111111111 broke"}, request=request)
    err = error_from_response(resp)
    text = str(err) + repr(err)
    assert "tok-secret" not in text and "jwt-secret" not in text
    assert "4111111111111111" not in text and "[digits]" in text


def test_query_string_is_not_in_the_message() -> None:
    url = "https://ff.test/v1/tokenize?mid=m&environment=tokenization-secret"
    err = error_from_response(response(500, None, url=url))
    assert "tokenization-secret" not in str(err) and "/v1/tokenize" in str(err)


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("t"), httpx.PoolTimeout("p")],
)
def test_transport_failures_before_sending_are_connection_errors(exc: Exception) -> None:
    assert isinstance(exc, httpx.TransportError)
    err = error_from_transport(exc, "POST /evaluate")
    assert type(err) is FlexFactorConnectionError and err.__cause__ is exc


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("r"),
        httpx.WriteTimeout("w"),
        httpx.RemoteProtocolError("disconnected"),
        httpx.ReadError("reset"),
    ],
)
def test_transport_failures_after_sending_are_timeouts(exc: Exception) -> None:
    assert isinstance(exc, httpx.TransportError)
    err = error_from_transport(exc, "POST /evaluate")
    assert type(err) is FlexFactorTimeout
    assert not isinstance(err, FlexFactorConnectionError)
    assert "may have been processed" in str(err)
