"""FlexFactorClient over httpx.MockTransport: wire shapes, retries, tokens, limiter, no leaks."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from worker.flexfactor import wire
from worker.flexfactor.client import AttemptRecord, FlexFactorClient
from worker.flexfactor.errors import (
    FlexFactorAuthError,
    FlexFactorBusinessError,
    FlexFactorConflict,
    FlexFactorConnectionError,
    FlexFactorError,
    FlexFactorNotFound,
    FlexFactorServerError,
    FlexFactorTimeout,
    FlexFactorValidationError,
)
from worker.flexfactor.wire import (
    BillingInformation,
    EvaluateRequest,
    Payer,
    PaymentMethod,
    Subscription,
    Transaction,
)
from worker.protocols import RateLimitWaitTooLong
from worker.settings import Settings

BASE = "https://ff.test/v1"
MID = "11111111-2222-3333-4444-555555555555"
SITE = "99999999-8888-7777-6666-555555555555"
APP_KEY = "app-key-public"
APP_SECRET = "app-secret-DO-NOT-LEAK-7f3a"
TOKENIZATION_KEY = "tokenization-key-DO-NOT-LEAK"
CARD_TOKEN = "cardtokenDONOTLEAK0123456789"
START = 1_800_000_000.0

Reply = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeServer:
    """Answers /oauth2/token with fresh bearers; other routes from per-route reply scripts."""

    def __init__(self, clock: Clock | None = None, token_ttl_s: float = 600.0) -> None:
        self.clock = clock or Clock()
        self.token_ttl_s = token_ttl_s
        self.requests: list[httpx.Request] = []
        self.scripts: dict[str, list[Reply]] = {}
        self.tokens_issued = 0

    def on(self, method: str, path: str, *replies: Reply) -> FakeServer:
        """Queue replies for a route; the last one repeats."""
        self.scripts.setdefault(f"{method} {path}", []).extend(replies)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        key = f"{request.method} {request.url.path.removeprefix('/v1')}"
        if key == "POST /oauth2/token" and key not in self.scripts:
            return self._issue_token()
        script = self.scripts[key]
        reply = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(reply, Exception):
            raise reply
        if callable(reply):
            return reply(request)
        return reply

    def _issue_token(self) -> httpx.Response:
        self.tokens_issued += 1
        expires_ms = int((self.clock() + self.token_ttl_s) * 1000)
        return httpx.Response(
            200,
            json={
                "accessToken": f"bearer-DO-NOT-LEAK-{self.tokens_issued}",
                "refreshToken": "refresh-DO-NOT-LEAK",
                "expires": expires_ms,
                "success": True,
                "result": None,
                "status": None,
                "statusCode": None,
                "errors": [],
                "customProperties": {},
            },
        )

    def calls(self, path: str) -> list[httpx.Request]:
        """Requests made to ``path`` (without the /v1 prefix)."""
        return [r for r in self.requests if r.url.path.removeprefix("/v1") == path]


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


class FakeLimiter:
    """Records what the client asks of the shared limiter."""

    def __init__(self) -> None:
        self.acquired: list[float] = []
        self.penalties: list[float] = []

    def acquire(self, max_wait_s: float = 30.0) -> float:
        self.acquired.append(max_wait_s)
        return 0.0

    def penalize(self, retry_after_s: float) -> None:
        self.penalties.append(retry_after_s)


def make_client(
    server: FakeServer, **kw: Any
) -> tuple[FlexFactorClient, list[float], list[AttemptRecord]]:
    """A client on the fake server; returns it with its recorded sleeps and attempt records."""
    sleeps: list[float] = []
    records: list[AttemptRecord] = []
    options: dict[str, Any] = {
        "base_url": BASE,
        "app_key": APP_KEY,
        "app_secret": APP_SECRET,
        "mid": MID,
        "site_id": SITE,
        "tokenization_key": TOKENIZATION_KEY,
        "http": httpx.Client(transport=httpx.MockTransport(server)),
        "sleep": sleeps.append,
        "clock": server.clock,
        "on_attempt": records.append,
    }
    options.update(kw)
    return FlexFactorClient(**options), sleeps, records


def evaluate_request(**overrides: Any) -> EvaluateRequest:
    fields: dict[str, Any] = {
        "order_id": "merchant-order-42",
        "is_mit": True,
        "is_recurring": True,
        "expiry_date_utc": datetime(2026, 12, 22, 12, 0, tzinfo=UTC),
        "transaction": Transaction(
            id="psp-tx-1",
            timestamp_utc=datetime(2026, 12, 1, 9, 30, tzinfo=UTC),
            amount=1999,
            currency="USD",
            response_code="05",
        ),
        "payer": Payer(email="shopper@example.com"),
        "billing_information": BillingInformation(
            first_name="Ada",
            last_name="Lovelace",
            country="US",
            country_code="US",
            address_line1="1 Main St",
            city="Springfield",
            state="IL",
            zip_code="62701",
        ),
        "payment_method": PaymentMethod(
            card_number=CARD_TOKEN,
            token=True,
            expiration_month=12,
            expiration_year=2030,
            card_bin_number="424242",
            card_last4_digits="4242",
            card_brand="VISA",
        ),
        "subscription": Subscription(
            subscription_id="sub-1",
            interval="monthly",
            price=1999,
            currency="USD",
            payment_number=3,
            total_payments=12,
        ),
    }
    fields.update(overrides)
    return EvaluateRequest(**fields)


def evaluate_ok(status: str = "SUBMITTED") -> httpx.Response:
    key = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    return httpx.Response(
        200,
        json={
            "orderSessionKey": key,
            "senseKey": None,
            "orderId": key,
            "success": True,
            "result": "Success",
            "status": status,
            "statusCode": None,
            "errors": [],
            "customProperties": {},
        },
    )


# --- wire shapes ------------------------------------------------------------------------------


def test_evaluate_sends_exact_wire_body_with_bearer_and_fills_mid_and_site() -> None:
    server = FakeServer().on("POST", "/evaluate", evaluate_ok("SUBMITTED"))
    client, _, _ = make_client(server)

    resp = client.evaluate(evaluate_request())

    assert resp.status == "SUBMITTED"
    assert resp.order_session_key == "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
    (req,) = server.calls("/evaluate")
    assert req.headers["Authorization"] == "Bearer bearer-DO-NOT-LEAK-1"
    assert req.headers["Accept"] == "application/json"
    assert req.headers["Content-Type"] == "application/json"
    sent = body(req)
    assert sent["mid"] == MID and sent["siteId"] == SITE
    assert sent["isDeclined"] is True and sent["isMIT"] is True and sent["isRecurring"] is True
    assert sent["orderId"] == "merchant-order-42"
    assert uuid.UUID(sent["idempotencyKey"]).version == 4
    assert sent["expiryDateUtc"] == "2026-12-22T12:00:00Z"
    assert sent["transaction"] == {
        "id": "psp-tx-1",
        "timestampUtc": "2026-12-01T09:30:00Z",
        "amount": 1999,
        "currency": "USD",
        "responseCode": "05",
    }
    assert sent["paymentMethod"]["cardNumber"] == CARD_TOKEN
    assert sent["paymentMethod"]["token"] is True
    assert sent["paymentMethod"]["cardLast4Digits"] == "4242"
    assert sent["billingInformation"]["zipCode"] == "62701"
    assert sent["subscription"] == {
        "subscriptionId": "sub-1",
        "interval": "monthly",
        "price": 1999,
        "currency": "USD",
        "paymentNumber": "3",
        "totalPayments": "12",
    }
    assert "null" not in req.content.decode()


def test_evaluate_keeps_a_caller_supplied_mid() -> None:
    server = FakeServer().on("POST", "/evaluate", evaluate_ok())
    client, _, _ = make_client(server)
    client.evaluate(evaluate_request(mid="other-mid"))
    assert body(server.calls("/evaluate")[0])["mid"] == "other-mid"


def test_token_request_uses_pascal_case_credentials_and_no_bearer() -> None:
    server = FakeServer()
    client, _, _ = make_client(server)

    token = client.fetch_token()

    (req,) = server.calls("/oauth2/token")
    assert body(req) == {"AppKey": APP_KEY, "AppSecret": APP_SECRET}
    assert "Authorization" not in req.headers
    assert token.access_token == "bearer-DO-NOT-LEAK-1"
    assert token.expires_ms == int((START + 600) * 1000)


def test_tokenize_passes_mid_and_tokenization_key_and_returns_the_vault_token() -> None:
    reply = {"transaction": {"succeeded": True, "payment_method": {"token": CARD_TOKEN}}}
    server = FakeServer().on("POST", "/tokenize", httpx.Response(200, json=reply))
    client, _, _ = make_client(server)
    card = wire.CreditCard(
        first_name="Ada",
        last_name="L",
        number="4111111111111111",
        verification_value="123",
        month="12",
        year="2030",
    )
    req = wire.TokenizeRequest(
        payment_method=wire.TokenizePaymentMethod(email="a@b.c", credit_card=card)
    )

    resp = client.tokenize(req)

    assert resp.token == CARD_TOKEN
    (sent,) = server.calls("/tokenize")
    assert sent.url.params["mid"] == MID
    assert sent.url.params["environment"] == TOKENIZATION_KEY
    assert body(sent)["payment_method"]["credit_card"]["verification_value"] == "123"


def test_tokenize_without_a_tokenization_key_fails_before_any_request() -> None:
    server = FakeServer()
    client, _, _ = make_client(server, tokenization_key=None)
    card = wire.CreditCard(first_name="A", last_name="B", number="4", month="01", year="2030")
    with pytest.raises(ValueError, match="tokenization key"):
        client.tokenize(wire.TokenizeRequest(payment_method={"credit_card": card}))
    assert server.requests == []


@pytest.mark.parametrize(("cents", "text"), [(1999, "19.99"), (1, "0.01"), (100000, "1000.0")])
def test_refund_sends_dollars_as_a_json_number(cents: int, text: str) -> None:
    ok = {"status": "SUCCESS", "success": True, "errors": [], "customProperties": {}}
    server = FakeServer().on("POST", "/orders/sess-1/refund", httpx.Response(200, json=ok))
    client, _, _ = make_client(server)

    resp = client.refund("sess-1", cents, message="customer asked")

    assert resp.status == "SUCCESS"
    raw = server.calls("/orders/sess-1/refund")[0].content.decode()
    assert re.search(r'"amountToRefund":\s*' + re.escape(text) + r"[,}]", raw), raw
    assert '"refundMessage": "customer asked"' in raw


def test_refund_rejects_a_non_positive_amount_without_calling() -> None:
    server = FakeServer()
    client, _, _ = make_client(server)
    with pytest.raises(ValueError):
        client.refund("sess-1", 0)
    assert server.requests == []


def test_refund_failed_2001_raises_business_error_and_is_not_retried() -> None:
    failed = {
        "responseCode": "2001",
        "responseMessage": "Amount to refund (1.00) is greater than maximum refund amount",
        "transactionId": None,
        "success": False,
        "status": "FAILED",
        "errors": [
            {"item1": "Amount to refund ...", "item2": "2001", "item3": "2001", "item4": True}
        ],
    }
    server = FakeServer().on("POST", "/orders/sess-1/refund", httpx.Response(200, json=failed))
    client, sleeps, _ = make_client(server)

    with pytest.raises(FlexFactorBusinessError) as info:
        client.refund("sess-1", 100)

    assert info.value.response_code == "2001"
    assert "2001" in str(info.value)
    assert len(server.calls("/orders/sess-1/refund")) == 1 and sleeps == []


def test_get_order_parses_int_status() -> None:
    order = {
        "id": "sess-1",
        "status": 7,
        "statusName": "Completed",
        "expiryDate": None,
        "orderPlacedDate": "2026-12-01T09:30:00Z",
        "currencyCode": "USD",
        "newField": 1,
    }
    server = FakeServer().on("GET", "/orders/sess-1", httpx.Response(200, json=order))
    client, _, _ = make_client(server)

    details = client.get_order("sess-1")

    assert details.order_status is wire.OrderStatus.COMPLETED
    assert details.status_name == "Completed"
    assert server.calls("/orders/sess-1")[0].content == b""


def test_list_orders_sends_paging_and_filters_and_parses_the_page() -> None:
    page = {
        "pageNumber": 2,
        "pageSize": 5,
        "pageCount": 3,
        "hasNextPage": True,
        "totalItemCount": 11,
        "items": [{"id": "o1", "status": 4, "statusName": "Processing"}],
    }
    server = FakeServer().on("GET", "/orders", httpx.Response(200, json=page))
    client, _, _ = make_client(server)

    result = client.list_orders(
        query="merchant-order-42",
        status=[4, 7],
        page_number=2,
        page_size=5,
        from_=datetime(2026, 12, 1, tzinfo=UTC),
    )

    params = server.calls("/orders")[0].url.params
    assert params.get_list("status") == ["4", "7"]
    assert params["pageNumber"] == "2" and params["pageSize"] == "5"
    assert params["query"] == "merchant-order-42"
    assert params["from"] == "2026-12-01T00:00:00+00:00" and "to" not in params
    assert result.total_item_count == 11 and result.has_next_page is True
    assert [o.id for o in result.items] == ["o1"]


def test_cancel_retries_a_503_with_the_same_idempotency_key() -> None:
    server = FakeServer().on(
        "POST", "/orders/sess-1/cancel", httpx.Response(503), httpx.Response(200, json={})
    )
    client, _, _ = make_client(server)

    client.cancel("sess-1", idempotency_key="cancel-key-1")

    sent = [body(r) for r in server.calls("/orders/sess-1/cancel")]
    assert sent == [{"idempotencyKey": "cancel-key-1"}] * 2


def test_cancel_without_a_key_uses_one_generated_key_across_retries() -> None:
    server = FakeServer().on(
        "POST", "/orders/sess-1/cancel", httpx.ReadTimeout("slow"), httpx.Response(200, json={})
    )
    client, _, _ = make_client(server)

    client.cancel("sess-1")  # a read timeout is retried: cancel is replay-safe

    keys = {body(r)["idempotencyKey"] for r in server.calls("/orders/sess-1/cancel")}
    assert len(keys) == 1 and len(server.calls("/orders/sess-1/cancel")) == 2


def test_external_cancel_is_keyed_by_the_merchant_order_id_escaped_in_the_path() -> None:
    server = FakeServer().on("POST", "/orders/inv/7/external-cancel", httpx.Response(200))
    client, _, _ = make_client(server)
    client.external_cancel("inv/7")
    assert server.requests[-1].url.raw_path == b"/v1/orders/inv%2F7/external-cancel"


def test_capture_sends_cents_and_accepts_capture_status() -> None:
    server = FakeServer().on(
        "POST", "/capture", httpx.Response(200, json={"captureStatus": "SUCCESS", "success": True})
    )
    client, _, _ = make_client(server)

    resp = client.capture("ff-order-1", 1999, "USD")

    assert resp.outcome == "SUCCESS"
    sent = body(server.calls("/capture")[0])
    assert sent["orderId"] == "ff-order-1" and sent["amount"] == 1999
    assert sent["currency"] == "USD" and uuid.UUID(sent["idempotencyKey"])


def test_capture_failed_raises_business_error() -> None:
    server = FakeServer().on(
        "POST", "/capture", httpx.Response(200, json={"status": "FAILED", "success": False})
    )
    client, _, _ = make_client(server)
    with pytest.raises(FlexFactorBusinessError):
        client.capture("ff-order-1", 1999, "USD")


def test_outcome_posts_the_order_session_key() -> None:
    reply = {"status": "APPROVED", "confirmationId": "382AB3", "success": True}
    server = FakeServer().on("POST", "/outcome", httpx.Response(200, json=reply))
    client, _, _ = make_client(server)
    assert client.outcome("sess-1").confirmation_id == "382AB3"
    assert body(server.calls("/outcome")[0]) == {"orderSessionKey": "sess-1"}


# --- retries ----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_evaluate_retries_gateway_errors_with_same_order_id_and_fresh_keys(status: int) -> None:
    server = FakeServer().on(
        "POST", "/evaluate", httpx.Response(status), httpx.Response(status), evaluate_ok()
    )
    client, sleeps, records = make_client(server)

    assert client.evaluate(evaluate_request()).status == "SUBMITTED"

    sent = [body(r) for r in server.calls("/evaluate")]
    assert [b["orderId"] for b in sent] == ["merchant-order-42"] * 3
    keys = [b["idempotencyKey"] for b in sent]
    assert len(set(keys)) == 3
    evaluate_records = [r for r in records if r.route == "/evaluate"]
    assert [r.idempotency_key for r in evaluate_records] == keys
    assert [(r.outcome, r.status_code) for r in evaluate_records] == [
        ("retry", status),
        ("retry", status),
        ("ok", 200),
    ]
    assert len(sleeps) == 2 and all(0 <= s <= 5 for s in sleeps)
    assert server.tokens_issued == 1


def test_gateway_errors_give_up_after_max_attempts() -> None:
    server = FakeServer().on("POST", "/evaluate", httpx.Response(503))
    client, sleeps, _ = make_client(server, max_attempts=3)
    with pytest.raises(FlexFactorServerError) as info:
        client.evaluate(evaluate_request())
    assert info.value.status_code == 503
    assert len(server.calls("/evaluate")) == 3 and len(sleeps) == 2


def test_evaluate_500_is_not_retried_but_get_order_500_is() -> None:
    order = {"id": "sess-1", "status": 4}
    server = (
        FakeServer()
        .on("POST", "/evaluate", httpx.Response(500))
        .on("GET", "/orders/sess-1", httpx.Response(500), httpx.Response(200, json=order))
    )
    client, _, _ = make_client(server)

    with pytest.raises(FlexFactorServerError):
        client.evaluate(evaluate_request())
    assert client.get_order("sess-1").order_status is wire.OrderStatus.PROCESSING

    assert len(server.calls("/evaluate")) == 1 and len(server.calls("/orders/sess-1")) == 2


def test_evaluate_read_timeout_raises_timeout_at_once() -> None:
    server = FakeServer().on("POST", "/evaluate", httpx.ReadTimeout("read timed out"))
    client, sleeps, records = make_client(server)

    with pytest.raises(FlexFactorTimeout) as info:
        client.evaluate(evaluate_request())

    assert not isinstance(info.value, FlexFactorConnectionError)
    assert len(server.calls("/evaluate")) == 1 and sleeps == []
    assert records[-1].outcome == "error" and records[-1].error_type == "FlexFactorTimeout"


@pytest.mark.parametrize(
    "exc", [httpx.WriteTimeout("w"), httpx.RemoteProtocolError("server disconnected")]
)
def test_refund_ambiguous_transport_failures_are_timeouts_not_retried(exc: Exception) -> None:
    server = FakeServer().on("POST", "/orders/sess-1/refund", exc)
    client, _, _ = make_client(server)
    with pytest.raises(FlexFactorTimeout):
        client.refund("sess-1", 1999)
    assert len(server.calls("/orders/sess-1/refund")) == 1


def test_connect_error_is_retried_even_for_evaluate() -> None:
    server = FakeServer().on(
        "POST", "/evaluate", httpx.ConnectError("refused"), httpx.ConnectTimeout("t"), evaluate_ok()
    )
    client, sleeps, _ = make_client(server)
    assert client.evaluate(evaluate_request()).status == "SUBMITTED"
    assert len(server.calls("/evaluate")) == 3 and len(sleeps) == 2


def test_connect_error_exhausted_raises_connection_error() -> None:
    server = FakeServer().on("POST", "/evaluate", httpx.ConnectError("refused"))
    client, _, _ = make_client(server, max_attempts=2)
    with pytest.raises(FlexFactorConnectionError):
        client.evaluate(evaluate_request())
    assert len(server.calls("/evaluate")) == 2


def test_429_with_retry_after_seconds_penalizes_the_limiter_then_waits() -> None:
    limited = httpx.Response(429, headers={"Retry-After": "7"})
    server = FakeServer().on("POST", "/evaluate", limited, evaluate_ok())
    limiter = FakeLimiter()
    client, sleeps, _ = make_client(server, limiter=limiter)

    client.evaluate(evaluate_request())

    assert limiter.penalties == [7.0] and sleeps == [7.0]
    assert len(server.calls("/evaluate")) == 2


def test_429_with_http_date_waits_until_that_date() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    server = FakeServer().on(
        "POST", "/evaluate", httpx.Response(429, headers={"Retry-After": when}), evaluate_ok()
    )
    client, sleeps, _ = make_client(server)
    client.evaluate(evaluate_request())
    assert len(sleeps) == 1 and 27.0 <= sleeps[0] <= 30.0


def test_429_hint_is_capped_and_missing_hint_defaults_to_one_second() -> None:
    server = FakeServer().on(
        "GET",
        "/orders/x",
        httpx.Response(429, headers={"Retry-After": "600"}),
        httpx.Response(429),
        httpx.Response(200, json={"id": "x", "status": 0}),
    )
    client, sleeps, _ = make_client(server)
    client.get_order("x")
    assert sleeps == [60.0, 1.0]


def test_limiter_is_asked_once_per_attempt_but_never_for_the_token() -> None:
    server = FakeServer().on("POST", "/evaluate", httpx.Response(503), evaluate_ok())
    limiter = FakeLimiter()
    client, _, _ = make_client(server, limiter=limiter, rate_max_wait_s=12.5)

    client.evaluate(evaluate_request())

    assert server.tokens_issued == 1
    assert limiter.acquired == [12.5, 12.5]  # two /evaluate attempts, zero for /oauth2/token


def test_limiter_refusal_sends_nothing() -> None:
    class Refusing(FakeLimiter):
        def acquire(self, max_wait_s: float = 30.0) -> float:
            raise RateLimitWaitTooLong(99.0)

    server = FakeServer().on("POST", "/evaluate", evaluate_ok())
    client, _, _ = make_client(server, limiter=Refusing())
    with pytest.raises(RateLimitWaitTooLong):
        client.evaluate(evaluate_request())
    assert server.calls("/evaluate") == []


# --- errors that are final --------------------------------------------------------------------


def test_evaluate_400_problem_details_is_final_with_field_errors() -> None:
    problem = {
        "status": 400,
        "title": "One or more validation errors occurred.",
        "traceId": "00-abc-01",
        "errors": {"Transaction.Id": ["The Id field is required."]},
    }
    server = FakeServer().on("POST", "/evaluate", httpx.Response(400, json=problem))
    client, sleeps, records = make_client(server)

    with pytest.raises(FlexFactorValidationError) as info:
        client.evaluate(evaluate_request())

    assert info.value.field_errors == {"Transaction.Id": ["The Id field is required."]}
    assert info.value.trace_id == "00-abc-01" and records[-1].trace_id == "00-abc-01"
    assert len(server.calls("/evaluate")) == 1 and sleeps == []


def test_401_renews_the_token_once_and_repeats_the_call() -> None:
    def only_second_token(request: httpx.Request) -> httpx.Response:
        ok = request.headers["Authorization"].endswith("-2")
        return evaluate_ok() if ok else httpx.Response(401)

    server = FakeServer().on("POST", "/evaluate", only_second_token)
    client, sleeps, records = make_client(server)

    assert client.evaluate(evaluate_request()).status == "SUBMITTED"

    assert server.tokens_issued == 2 and sleeps == []
    assert [r.outcome for r in records if r.route == "/evaluate"] == ["renew", "ok"]
    keys = [body(r)["idempotencyKey"] for r in server.calls("/evaluate")]
    assert len(set(keys)) == 2


def test_a_second_401_is_raised_as_auth_error() -> None:
    server = FakeServer().on("POST", "/evaluate", httpx.Response(401))
    client, _, _ = make_client(server)
    with pytest.raises(FlexFactorAuthError) as info:
        client.evaluate(evaluate_request())
    assert info.value.status_code == 401
    assert len(server.calls("/evaluate")) == 2 and server.tokens_issued == 2


@pytest.mark.parametrize(
    ("status", "cls"),
    [(403, FlexFactorAuthError), (404, FlexFactorNotFound), (409, FlexFactorConflict)],
)
def test_403_404_409_are_final(status: int, cls: type[Exception]) -> None:
    server = FakeServer().on("POST", "/orders/sess-1/cancel", httpx.Response(status))
    client, sleeps, _ = make_client(server)
    with pytest.raises(cls):
        client.cancel("sess-1")
    assert len(server.calls("/orders/sess-1/cancel")) == 1 and sleeps == []
    assert server.tokens_issued == 1


def test_bad_credentials_raise_auth_error_without_the_secret() -> None:
    problem = {"status": 400, "title": "Invalid credentials", "errors": {"AppSecret": ["bad"]}}
    server = FakeServer().on("POST", "/oauth2/token", httpx.Response(400, json=problem))
    client, _, _ = make_client(server)
    with pytest.raises(FlexFactorAuthError) as info:
        client.get_order("sess-1")
    assert APP_SECRET not in str(info.value)
    assert server.calls("/orders/sess-1") == []


def test_unexpected_response_shape_names_fields_but_not_values() -> None:
    server = FakeServer().on(
        "GET", "/orders/x", httpx.Response(200, json={"id": CARD_TOKEN, "status": "weird"})
    )
    client, _, _ = make_client(server)
    with pytest.raises(FlexFactorError, match="status") as info:
        client.get_order("x")
    assert CARD_TOKEN not in str(info.value)


# --- tokens, settings, secrets ----------------------------------------------------------------


def test_token_is_reused_until_shortly_before_it_expires() -> None:
    server = FakeServer().on("GET", "/orders/x", httpx.Response(200, json={"id": "x", "status": 0}))
    client, _, _ = make_client(server)
    expires = START + 600

    client.get_order("x")
    server.clock.now = expires - 61
    client.get_order("x")
    assert server.tokens_issued == 1
    server.clock.now = expires - 59
    client.get_order("x")

    assert server.tokens_issued == 2
    assert server.requests[-1].headers["Authorization"] == "Bearer bearer-DO-NOT-LEAK-2"


def test_from_settings_builds_a_working_client() -> None:
    settings = Settings(
        flexfactor_base_url=BASE + "/",
        flexfactor_app_key=APP_KEY,
        flexfactor_app_secret=APP_SECRET,
        flexfactor_mid=MID,
        flexfactor_tokenization_key=TOKENIZATION_KEY,
    )
    server = FakeServer().on("POST", "/evaluate", evaluate_ok())
    client = FlexFactorClient.from_settings(
        settings, http=httpx.Client(transport=httpx.MockTransport(server))
    )
    with client:
        client.evaluate(evaluate_request())
    assert body(server.calls("/oauth2/token")[0])["AppSecret"] == APP_SECRET
    assert body(server.calls("/evaluate")[0])["mid"] == MID


def test_from_settings_refuses_missing_credentials() -> None:
    with pytest.raises(ValueError, match="FLEXFACTOR_APP_KEY"):
        FlexFactorClient.from_settings(Settings(flexfactor_app_key=None, flexfactor_mid=MID))


def test_no_error_message_or_log_line_carries_secrets_tokens_or_card_data() -> None:
    # A server that echoes a PAN in its title and values in field messages.
    echo = {"title": "bad card 4111111111111111", "errors": {"X": [APP_SECRET, CARD_TOKEN]}}
    server = (
        FakeServer()
        .on("POST", "/evaluate", httpx.Response(401), httpx.Response(400, json=echo))
        .on("POST", "/tokenize", httpx.ReadTimeout("t"))
        .on("POST", "/orders/s/refund", httpx.Response(200, json={"status": "FAILED"}))
    )
    client, _, records = make_client(server)
    card = wire.CreditCard(
        first_name="A", last_name="B", number="4111111111111111", month="01", year="2030"
    )
    calls: list[Callable[[], object]] = [
        lambda: client.evaluate(evaluate_request()),
        lambda: client.tokenize(wire.TokenizeRequest(payment_method={"credit_card": card})),
        lambda: client.refund("s", 5),
    ]
    messages: list[str] = []
    with capture_logs() as logs:
        for call in calls:
            with pytest.raises(FlexFactorError) as info:
                call()
            messages += [str(info.value), repr(info.value)]

    text = " ".join(messages) + repr(logs) + repr(records)
    assert len(logs) >= 4 and {e["route"] for e in logs} >= {"/evaluate", "/tokenize"}
    for secret in (
        APP_SECRET,
        "bearer-DO-NOT-LEAK",
        CARD_TOKEN,
        "4111111111111111",
        TOKENIZATION_KEY,
        "refresh-DO-NOT-LEAK",
    ):
        assert secret not in text
