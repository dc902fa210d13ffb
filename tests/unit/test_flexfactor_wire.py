"""Wire models: exact field names and units of the fact sheet, tolerant responses."""

from __future__ import annotations

from decimal import Decimal

import pydantic
import pytest

from worker.flexfactor import wire


def test_evaluate_request_round_trips_from_camel_case_with_exact_names() -> None:
    payload = {
        "isDeclined": True, "isMIT": True, "isRecurring": True, "mid": "m", "siteId": "s",
        "orderId": "o-1", "idempotencyKey": "k", "transactionType": "PURCHASE",
        "expiryDateUtc": "2026-12-22T07:00:00-05:00",
        "transaction": {"id": "t", "timestampUtc": "2026-12-01T09:30:00Z", "amount": 1999,
                        "currency": "USD", "timezoneUtcOffset": 0, "avsResultCode": "Y",
                        "cvvResultCode": "M", "cavvResultCode": "NA", "cardNotPresent": True},
        "payer": {"email": "a@b.c", "phone": "1"},
        "billingInformation": {"firstName": "A", "zipCode": "62701", "addressLine1": "1 Main"},
        "shippingInformation": {"countryCode": "US"},
        "paymentMethod": {"cardNumber": "tok", "token": True, "holderName": "A B",
                          "cardBrand": "VISA", "cardType": "CREDIT", "cardCountry": "US",
                          "expirationMonth": 1, "expirationYear": 2030,
                          "cardBinNumber": "424242", "cardLast4Digits": "4242"},
        "subscription": {"subscriptionId": "s1", "interval": "monthly", "price": 1999,
                         "currency": "USD", "paymentNumber": "2", "totalPayments": "12"},
        "orderItems": [{"sku": "x", "amount": 1999, "quantity": 1}],
        "threeDSecure": {"threeDsVersion": "2.2"},
    }  # fmt: skip
    wire_body = wire.EvaluateRequest.model_validate(payload).to_wire()
    expected = {**payload, "expiryDateUtc": "2026-12-22T12:00:00Z"}  # normalised to UTC
    assert wire_body == expected


def test_evaluate_request_refuses_unknown_fields_and_naive_times() -> None:
    base = {"orderId": "o", "isMIT": True, "payer": {"email": "e"}, "billingInformation": {},
            "paymentMethod": {"cardNumber": "t"},
            "transaction": {"id": "t", "timestampUtc": "2026-12-01T09:30:00Z", "amount": 1,
                            "currency": "USD"}}  # fmt: skip
    wire.EvaluateRequest.model_validate(base)
    with pytest.raises(pydantic.ValidationError):
        wire.EvaluateRequest.model_validate({**base, "isMit": True, "ordreId": "typo"})
    naive = {**base["transaction"], "timestampUtc": "2026-12-01T09:30:00"}
    with pytest.raises(pydantic.ValidationError):
        wire.EvaluateRequest.model_validate({**base, "transaction": naive})


def test_token_and_tokenize_requests_use_their_own_casing() -> None:
    assert wire.TokenRequest(app_key="k", app_secret="s").to_wire() == {
        "AppKey": "k",
        "AppSecret": "s",
    }
    card = wire.CreditCard(first_name="A", last_name="B", number="4", month="01", year="2030")
    req = wire.TokenizeRequest(payment_method=wire.TokenizePaymentMethod(credit_card=card))
    assert req.to_wire() == {
        "payment_method": {
            "credit_card": {
                "first_name": "A", "last_name": "B", "number": "4", "month": "01", "year": "2030",
            }
        }
    }  # fmt: skip


def test_refund_amount_is_a_two_decimal_number() -> None:
    body = wire.RefundRequest(amount_to_refund=Decimal("19.99")).to_wire()
    assert body == {"amountToRefund": 19.99}
    assert isinstance(body["amountToRefund"], float)
    assert wire.RefundRequest(amount_to_refund=Decimal("12")).to_wire() == {"amountToRefund": 12.0}
    with pytest.raises(pydantic.ValidationError):  # never round money silently
        wire.RefundRequest(amount_to_refund=Decimal("0.005"))


def test_capture_and_cancel_requests() -> None:
    capture = wire.CaptureRequest(idempotency_key="k", order_id="o", amount=500, currency="USD")
    assert capture.to_wire() == {
        "idempotencyKey": "k",
        "orderId": "o",
        "amount": 500,
        "currency": "USD",
    }
    assert wire.CancelRequest().to_wire() == {}


def test_token_response_keeps_expiry_in_epoch_ms() -> None:
    resp = wire.TokenResponse.model_validate(
        {"accessToken": "a", "refreshToken": "r", "expires": 1_800_000_600_000, "session": None}
    )
    assert resp.expires == 1_800_000_600_000 and resp.model_extra == {"session": None}


def test_tokenize_response_token_and_missing_token() -> None:
    ok = wire.TokenizeResponse.model_validate(
        {"transaction": {"payment_method": {"token": "T", "last_four_digits": "1111"}},
         "success": True, "statusCode": None, "cardBinInfo": None}
    )  # fmt: skip
    assert ok.token == "T"
    with pytest.raises(ValueError):
        _ = wire.TokenizeResponse.model_validate({"transaction": {}}).token


def test_order_details_accepts_unknown_status_codes_and_fields() -> None:
    details = wire.OrderDetails.model_validate(
        {"id": "x", "status": 9, "statusName": "Expired", "externalOrderId": "m-1", "foo": 1}
    )
    assert details.order_status is None and details.status_name == "Expired"
    assert details.external_order_id == "m-1"
    assert wire.OrderStatus(5).name == "CAPTUREREQUIRED" and wire.OrderStatus.COMPLETED == 7


@pytest.mark.parametrize(
    ("items", "total"), [("items", "totalItemCount"), ("orders", "totalCount")]
)
def test_order_page_accepts_the_likely_names_of_the_list_and_total(items: str, total: str) -> None:
    page = wire.OrderPage.model_validate(
        {
            items: [{"id": "a", "status": 0}],
            total: 1,
            "isLastPage": True,
            "statuses": {"0": "Draft"},
        }
    )
    assert [o.id for o in page.items] == ["a"] and page.total_item_count == 1
    assert page.is_last_page is True


def test_capture_response_reads_status_or_capture_status() -> None:
    assert wire.CaptureResponse.model_validate({"status": "SUCCESS"}).outcome == "SUCCESS"
    assert wire.CaptureResponse.model_validate({"captureStatus": "FAILED"}).outcome == "FAILED"


def test_webhook_event_parses_the_official_pascal_case_sample() -> None:
    raw = (
        '{"Event":"order.completed","TimeStamp":"2023-03-20T17:16:40.8987031Z","EventData":null,'
        '"ExternalOrderId":"m-1","OrderId":"g-1","ConfirmationId":"22ACD1D9",'
        '"IsTestMode":true,"IsResent":false}'
    )
    event = wire.WebhookEvent.model_validate_json(raw)
    assert (event.event, event.external_order_id, event.order_id) == (
        "order.completed",
        "m-1",
        "g-1",
    )
    assert event.confirmation_id == "22ACD1D9" and event.is_test_mode is True
    assert event.is_resent is False and event.time_stamp is not None
    assert event.time_stamp.year == 2023


def test_evaluate_response_and_problem_details() -> None:
    resp = wire.EvaluateResponse.model_validate(
        {"orderSessionKey": "g", "orderId": "g", "status": "CHALLENGE", "success": True,
         "errors": [], "customProperties": {}}
    )  # fmt: skip
    assert (resp.order_session_key, resp.status, resp.success) == ("g", "CHALLENGE", True)
    problem = wire.ProblemDetails.model_validate(
        {"status": "400", "title": "t", "traceId": "00-1", "errors": {"A": ["m"]}}
    )
    assert problem.status == "400" and problem.trace_id == "00-1" and problem.errors == {"A": ["m"]}
