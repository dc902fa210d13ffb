"""The sandbox's HTTP API over real HTTP: auth, validation, idempotency, orders, refund, cancel."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from worker.sandbox import SandboxConfig, running_sandbox
from worker.sandbox.config import DEFAULT_MID
from worker.sandbox.testing import evaluate_body

CREDS = {"AppKey": "sandbox-key", "AppSecret": "sandbox-secret"}


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running_sandbox(SandboxConfig(resolve_after_s=30)) as url:
        yield url


def evaluate(api: httpx.Client, order_id: str, amount: int = 1910, **kw: Any) -> dict[str, Any]:
    reply = api.post("/evaluate", json=evaluate_body(order_id, amount, **kw))
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


# -- token ---------------------------------------------------------------------------------


@pytest.mark.parametrize("keys", [("AppKey", "AppSecret"), ("appKey", "appSecret")])
def test_token_keys_are_case_insensitive_and_expire_in_ms(
    base_url: str, keys: tuple[str, str]
) -> None:
    import time

    before_ms = int(time.time() * 1000)
    reply = httpx.post(
        f"{base_url}/oauth2/token", json=dict(zip(keys, CREDS.values(), strict=True))
    )
    body = reply.json()
    assert reply.status_code == 200
    assert body["accessToken"].count(".") == 2 and body["refreshToken"]
    assert before_ms + 599_000 <= body["expires"] <= int(time.time() * 1000) + 601_000
    assert {"success", "result", "status", "statusCode", "errors", "customProperties", "id"} <= set(
        body
    )


def test_bad_credentials_are_400(base_url: str) -> None:
    reply = httpx.post(f"{base_url}/oauth2/token", json={"AppKey": "sandbox-key", "AppSecret": "x"})
    assert reply.status_code == 400


@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic abc"])
def test_missing_or_unknown_token_is_401(base_url: str, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    assert httpx.get(f"{base_url}/orders", headers=headers).status_code == 401


def test_expired_token_is_401() -> None:
    with running_sandbox(SandboxConfig(token_ttl_s=600)) as url:
        token = httpx.post(f"{url}/oauth2/token", json=CREDS).json()["accessToken"]
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/orders", headers=auth).status_code == 200
        httpx.post(url.removesuffix("/v1") + "/_sandbox/advance-clock", json={"seconds": 601})
        assert httpx.get(f"{url}/orders", headers=auth).status_code == 401


# -- tokenize ------------------------------------------------------------------------------

CARD = {
    "first_name": "Ada",
    "last_name": "Lovelace",
    "number": "4111111111111111",
    "verification_value": "123",
    "month": "12",
    "year": "2030",
}


def _tokenize(
    base_url: str, card: dict[str, Any], environment: str = "sandbox-tokenization-key"
) -> httpx.Response:
    params = {"mid": DEFAULT_MID, "environment": environment}
    return httpx.post(
        f"{base_url}/tokenize", params=params, json={"payment_method": {"credit_card": card}}
    )


def test_tokenize_without_bearer_returns_token_and_card_metadata(base_url: str) -> None:
    reply = _tokenize(base_url, CARD)
    method = reply.json()["transaction"]["payment_method"]
    assert reply.status_code == 200 and reply.json()["success"] is True
    assert method["token"].startswith("tok_")
    assert (method["last_four_digits"], method["first_six_digits"], method["card_type"]) == (
        "1111",
        "411111",
        "visa",
    )
    assert "4111111111111111" not in reply.text


def test_tokenize_rejects_bad_key_and_bad_luhn(base_url: str) -> None:
    assert _tokenize(base_url, CARD, environment="wrong").status_code == 401
    bad = _tokenize(base_url, {**CARD, "number": "4111111111111112"})
    assert bad.status_code == 400
    assert "payment_method.credit_card.number" in bad.json()["errors"]


def test_tokenize_magic_card_gives_approve_token(base_url: str) -> None:
    token = _tokenize(base_url, {**CARD, "number": "4000002760003184"}).json()
    assert token["transaction"]["payment_method"]["token"].startswith("tok_approve")


# -- /evaluate validation ------------------------------------------------------------------

MISSING = [
    (("orderId",), "OrderId"),
    (("idempotencyKey",), "IdempotencyKey"),
    (("isDeclined",), "IsDeclined"),
    (("mid",), "Mid"),
    (("isMIT",), "IsMIT"),
    (("expiryDateUtc",), "ExpiryDateUtc"),
    (("transaction",), "Transaction"),
    (("transaction", "id"), "Transaction.Id"),
    (("transaction", "amount"), "Transaction.Amount"),
    (("transaction", "currency"), "Transaction.Currency"),
    (("transaction", "timestampUtc"), "Transaction.TimestampUtc"),
    (("payer",), "Payer"),
    (("payer", "email"), "Payer.Email"),
    (("billingInformation",), "BillingInformation"),
    (("billingInformation", "firstName"), "BillingInformation.FirstName"),
    (("billingInformation", "lastName"), "BillingInformation.LastName"),
    (("billingInformation", "country"), "BillingInformation.Country"),
    (("billingInformation", "countryCode"), "BillingInformation.CountryCode"),
    (("billingInformation", "addressLine1"), "BillingInformation.AddressLine1"),
    (("billingInformation", "city"), "BillingInformation.City"),
    (("billingInformation", "zipCode"), "BillingInformation.ZipCode"),
    (("billingInformation", "state"), "BillingInformation.State"),
    (("paymentMethod",), "PaymentMethod"),
    (("paymentMethod", "cardNumber"), "PaymentMethod.CardNumber"),
    (("paymentMethod", "expirationMonth"), "PaymentMethod.ExpirationMonth"),
    (("paymentMethod", "expirationYear"), "PaymentMethod.ExpirationYear"),
]


def _without(body: dict[str, Any], path: tuple[str, ...]) -> dict[str, Any]:
    target = body
    for part in path[:-1]:
        target = target[part]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(("path", "error_key"), MISSING, ids=[m[1] for m in MISSING])
def test_each_missing_required_field_has_its_own_path(
    api: httpx.Client, control: httpx.Client, path: tuple[str, ...], error_key: str
) -> None:
    reply = api.post("/evaluate", json=_without(evaluate_body("v-1"), path))
    body = reply.json()
    assert reply.status_code == 400
    assert body["title"] == "One or more validation errors occurred." and body["status"] == 400
    assert body["traceId"].startswith("00-") and body["traceId"].endswith("-01")
    assert set(body["errors"]) == {error_key}
    assert control.get("/ledger").json()["validation_errors_by_field"] == {error_key: 1}
    assert control.get("/orders").json() == []


@pytest.mark.parametrize(
    ("change", "error_key"),
    [
        ({"mid": str(uuid.uuid4())}, "Mid"),
        ({"expiryDateUtc": "not a date"}, "ExpiryDateUtc"),
        ({"expiryDateUtc": "2001-01-01T00:00:00Z"}, "ExpiryDateUtc"),
        ({"idempotencyKey": "not-a-guid"}, "IdempotencyKey"),
        (
            {
                "paymentMethod": {
                    "cardNumber": "4111111111111112",
                    "token": False,
                    "expirationMonth": 12,
                    "expirationYear": 2030,
                }
            },
            "PaymentMethod.CardNumber",
        ),
    ],
)
def test_invalid_values_are_rejected(
    api: httpx.Client, change: dict[str, Any], error_key: str
) -> None:
    reply = api.post("/evaluate", json=evaluate_body("v-2", **change))
    assert reply.status_code == 400 and set(reply.json()["errors"]) == {error_key}
    if error_key == "ExpiryDateUtc":
        assert reply.json()["errors"][error_key] == ["The field ExpiryDateUtc is invalid."]


@pytest.mark.parametrize(
    ("amount", "ok"),
    [(10, False), (11, True), (19999, True), (20000, False), ("1999", False), (19.99, False)],
)
def test_amount_bounds(api: httpx.Client, amount: Any, ok: bool) -> None:
    body = evaluate_body("amt-1")
    body["transaction"]["amount"] = amount
    reply = api.post("/evaluate", json=body)
    assert (reply.status_code == 200) is ok
    if not ok:
        assert set(reply.json()["errors"]) == {"Transaction.Amount"}


def test_zipcode_legacy_casing_and_non_us_state_are_accepted(api: httpx.Client) -> None:
    body = evaluate_body("zip-1")
    billing = body["billingInformation"]
    billing["zipcode"] = billing.pop("zipCode")
    billing.update(country="DE", countryCode="DE")
    del billing["state"]
    assert api.post("/evaluate", json=body).status_code == 200


def test_strict_transaction_fields(api: httpx.Client, control: httpx.Client) -> None:
    control.post("/config", json={"strict_transaction_fields": True})
    body = evaluate_body("strict-1")
    for name in ("responseCode", "avsResultCode", "cvvResultCode"):
        del body["transaction"][name]
    errors = api.post("/evaluate", json=body).json()["errors"]
    assert set(errors) == {
        "Transaction.ResponseCode",
        "Transaction.AvsResultCode",
        "Transaction.CvvResultCode",
    }


def test_sync_mode_does_not_need_expiry(api: httpx.Client, control: httpx.Client) -> None:
    control.post("/config", json={"mode": "sync"})
    body = evaluate_body("sync-noexp", 1910)
    del body["expiryDateUtc"]
    assert api.post("/evaluate", json=body).json()["status"] == "PROCESSING"


# -- orders and idempotency ----------------------------------------------------------------


def test_same_order_id_maps_to_one_order(api: httpx.Client, control: httpx.Client) -> None:
    first, second = evaluate(api, "same-1"), evaluate(api, "same-1")
    assert first["orderSessionKey"] == first["orderId"] == second["orderSessionKey"]
    assert first["status"] == second["status"] == "SUBMITTED"
    ledger = control.get("/ledger").json()
    assert ledger["evaluate_calls_per_order_id"] == {"same-1": 2}
    assert ledger["flexfactor_orders_per_order_id_max"] == 1 and ledger["distinct_orders"] == 1


def test_idempotency_key_replay_and_conflict(api: httpx.Client) -> None:
    body = evaluate_body("idem-1")
    first = api.post("/evaluate", json=body)
    assert api.post("/evaluate", json=body).json() == first.json()
    changed = {**body, "transaction": {**body["transaction"], "amount": 1234}}
    conflict = api.post("/evaluate", json=changed)
    assert conflict.status_code == 409 and conflict.json()["status"] == 409


def test_trailing_slashes_are_accepted(api: httpx.Client) -> None:
    assert api.post("/evaluate/", json=evaluate_body("slash-1")).status_code == 200
    assert api.get("/orders/").status_code == 200


def test_get_order_fields(api: httpx.Client) -> None:
    key = evaluate(api, "get-1", amount=1234)["orderSessionKey"]
    order = api.get(f"/orders/{key}").json()
    assert order["id"] == key and order["externalOrderId"] == "get-1"
    assert isinstance(order["status"], int) and order["statusName"] in {"Draft", "Processing"}
    assert (order["amount"], order["currencyCode"]) == (1234, "USD")
    assert order["expiryDate"].startswith("2099-01-01") and order["orderPlacedDate"].endswith("Z")
    assert api.get(f"/orders/{uuid.uuid4()}").status_code == 404


def test_list_orders_paging_query_and_status(api: httpx.Client) -> None:
    for i in range(12):
        evaluate(api, f"page-{i:02d}", amount=1910)
    evaluate(api, "other-1", amount=1997)
    first = api.get("/orders", params={"query": "page-"}).json()
    assert (first["totalItemCount"], first["pageSize"], len(first["items"])) == (12, 10, 10)
    assert first["hasNextPage"] and first["isFirstPage"] and not first["isLastPage"]
    assert (first["firstItemOnPage"], first["lastItemOnPage"], first["pageCount"]) == (1, 10, 2)
    second = api.get("/orders", params={"query": "page-", "pageNumber": 2}).json()
    assert (second["firstItemOnPage"], second["lastItemOnPage"], len(second["items"])) == (
        11,
        12,
        2,
    )
    assert second["isLastPage"] and second["hasPreviousPage"] and not second["hasNextPage"]
    exact = api.get("/orders", params={"query": "page-03"}).json()["items"]
    assert [o["externalOrderId"] for o in exact] == ["page-03"]
    completed = api.get("/orders", params={"status": [7]}).json()
    assert [o["externalOrderId"] for o in completed["items"]] == ["other-1"]
    assert completed["statuses"]["7"] == "Completed"


# -- refund, cancel, capture, outcome --------------------------------------------------------


def test_refund_in_dollars_partial_then_over_then_full(api: httpx.Client) -> None:
    key = evaluate(api, "ref-1", amount=1999)["orderSessionKey"]  # 99 cents: APPROVED at once
    part = api.post(f"/orders/{key}/refund", json={"amountToRefund": 5.00}).json()
    assert part["status"] == "SUCCESS" and part["success"] is True
    assert api.get(f"/orders/{key}").json()["status"] == 7
    over = api.post(f"/orders/{key}/refund", json={"amountToRefund": 20.00})
    body = over.json()
    assert over.status_code == 200 and body["success"] is False and body["status"] == "FAILED"
    assert body["responseCode"] == "2001"
    assert body["responseMessage"] == (
        "Amount to refund (20.00) is greater than maximum refund amount in (14.99))"
    )
    assert body["errors"][0]["item2"] == "2001" and body["errors"][0]["item4"] is True
    rest = api.post(f"/orders/{key}/refund", json={"amountToRefund": "14.99"}).json()
    assert rest["status"] == "SUCCESS"
    order = api.get(f"/orders/{key}").json()
    assert (order["status"], order["statusName"], order["refundedAmount"]) == (6, "Returned", 1999)


def test_refund_of_pending_order_fails(api: httpx.Client) -> None:
    key = evaluate(api, "ref-2", amount=1910)["orderSessionKey"]
    body = api.post(f"/orders/{key}/refund", json={"amountToRefund": 1}).json()
    assert body["responseCode"] == "2001" and "(0.00))" in body["responseMessage"]


def test_cancel_and_external_cancel_collapse(api: httpx.Client, control: httpx.Client) -> None:
    key = evaluate(api, "can-1", amount=1910)["orderSessionKey"]
    first = api.post(f"/orders/{key}/cancel", json={})
    assert (first.status_code, first.json()) == (200, {})
    again = api.post("/orders/can-1/external-cancel", json={})
    assert (again.status_code, again.json()) == (200, {})
    order = api.get(f"/orders/{key}").json()
    assert (order["status"], order["statusName"]) == (2, "Cancelled")
    assert control.get("/orders").json()[0]["final"] == "cancelled"


def test_cancel_idempotency_key_replay_and_conflict(api: httpx.Client) -> None:
    evaluate(api, "can-2", amount=1910)
    key = str(uuid.uuid4())
    assert (
        api.post("/orders/can-2/external-cancel", json={"idempotencyKey": key}).status_code == 200
    )
    assert (
        api.post("/orders/can-2/external-cancel", json={"idempotencyKey": key}).status_code == 200
    )
    other = api.post("/orders/can-2/external-cancel", json={"idempotencyKey": key, "x": 1})
    assert other.status_code == 409


def test_cancel_refused_for_completed_and_unknown(api: httpx.Client) -> None:
    key = evaluate(api, "can-3", amount=1999)["orderSessionKey"]
    assert api.post(f"/orders/{key}/cancel", json={}).status_code == 400
    assert api.post("/orders/nope/external-cancel", json={}).status_code == 404


def test_authorization_then_capture(api: httpx.Client) -> None:
    reply = evaluate(api, "cap-1", amount=1910, transactionType="AUTHORIZATION")
    key = reply["orderId"]
    assert reply["status"] == "CAPTUREREQUIRED" and api.get(f"/orders/{key}").json()["status"] == 5
    body = {"idempotencyKey": str(uuid.uuid4()), "orderId": key, "amount": 1910, "currency": "USD"}
    captured = api.post("/capture", json=body).json()
    assert captured["status"] == "SUCCESS" and api.get(f"/orders/{key}").json()["status"] == 7
    again = api.post("/capture", json={**body, "idempotencyKey": str(uuid.uuid4())}).json()
    assert again["status"] == "FAILED"


def test_outcome_is_deprecated_but_answers(api: httpx.Client) -> None:
    key = evaluate(api, "out-1", amount=1997)["orderSessionKey"]
    body = api.post("/outcome", json={"orderSessionKey": key}).json()
    assert body["status"] == "APPROVED" and len(body["confirmationId"]) == 8
    assert (
        api.post("/outcome", json={"orderSessionKey": str(uuid.uuid4())}).json()["status"]
        == "NOTFOUND"
    )


def test_ledger_has_every_documented_key(api: httpx.Client, control: httpx.Client) -> None:
    evaluate(api, "led-1")
    ledger = control.get("/ledger").json()
    assert {
        "calls",
        "distinct_orders",
        "evaluate_calls_per_order_id",
        "evaluate_order_ids_with_retries",
        "flexfactor_orders_per_order_id_max",
        "rate_limited_429",
        "max_accepted_in_any_second",
        "validation_errors_by_field",
        "webhooks_delivered",
        "webhooks_failed",
        "webhooks_resent",
        "orders_by_status",
    } <= set(ledger)
    assert ledger["calls"]["POST /v1/evaluate"] == {"total": 1, "200": 1}
    assert ledger["orders_by_status"] in ({"Draft": 1}, {"Processing": 1})
