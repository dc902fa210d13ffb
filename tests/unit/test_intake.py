"""worker.intake: the decline model, every intake rule, the PAN guard, never raising."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import REMOVE, make_valid_decline, vault_token
from worker import intake
from worker.intake import (
    PAN_MESSAGE,
    PAN_PLACEHOLDER,
    ROOT,
    Accepted,
    Decline,
    Rejected,
    find_pans,
    parse_declines_body,
    redact_pans,
    validate_decline,
)
from worker.pan import luhn_ok
from worker.settings import Settings

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 10:00 in New York
NY = Settings(_env_file=None, FLEXMIT_MERCHANT_TZ="America/New_York")  # type: ignore[call-arg]
UTC_SETTINGS = Settings(_env_file=None, FLEXMIT_MERCHANT_TZ="UTC")  # type: ignore[call-arg]
VISA = "4111111111111111"
PANS = [VISA, "5555555555554444", "378282246310005", "4222222222222", "6011111111111117",
        "4000000000000000006"]  # 16, 16, 15 (Amex), 13, 16 (Discover), 19 digits


def check(raw: object, *, now: datetime = NOW, cfg: Settings = NY) -> Accepted | Rejected:
    result = validate_decline(raw, now=now, settings=cfg)
    assert isinstance(result, Accepted | Rejected)
    return result


def errors_of(raw: object, **kwargs: Any) -> dict[str, list[str]]:
    result = check(raw, **kwargs)
    assert isinstance(result, Rejected), "expected a rejection"
    assert result.errors
    return result.errors


def accepted(raw: object, **kwargs: Any) -> Accepted:
    result = check(raw, **kwargs)
    assert isinstance(result, Accepted), getattr(result, "errors", None)
    return result


def decline(**overrides: Any) -> dict[str, Any]:
    return make_valid_decline(NOW, **overrides)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------- the happy path


def test_factory_decline_is_accepted_and_dumps_back_to_the_contract_json() -> None:
    raw = decline()
    ok = accepted(raw)
    assert ok.decline.model_dump(by_alias=True, mode="json", exclude_unset=True) == raw
    dumped = ok.decline.model_dump(by_alias=True, mode="json")
    assert dumped["orderId"] == raw["orderId"] and dumped["amount"] == 1999
    assert dumped["billingAddress"]["zipCode"] == "78701"
    assert "addressLine2" in dumped["billingAddress"]  # every contract field, null when absent


def test_the_contract_example_is_accepted() -> None:
    raw = json.loads("""{
      "orderId": "inv-2026-11-25-000123", "declinedAt": "2026-11-25T08:15:00Z", "amount": 1999,
      "currency": "USD", "isRecurring": true, "expiryDateUtc": "2026-12-16T08:15:00Z",
      "siteId": null,
      "subscription": {"id": "sub_42", "interval": "monthly", "paymentNumber": 3,
                       "totalPayments": null, "price": 1999},
      "decline": {"pspTransactionId": "ch_1", "responseCode": "05",
                  "responseDescription": "Do not honor", "processor": "acme",
                  "avsResultCode": "Y", "cvvResultCode": "M"},
      "card": {"token": "tok_abcDEF123", "bin": "411111", "last4": "1111", "brand": "VISA",
               "expMonth": 12, "expYear": 2028, "holderName": "Ada Lovelace", "country": "US"},
      "payer": {"email": "ada@example.com", "id": "cus_1", "phone": null},
      "billingAddress": {"firstName": "Ada", "lastName": "Lovelace", "addressLine1": "1 Main St",
                         "city": "Austin", "state": "TX", "zipCode": "78701",
                         "countryCode": "US"}}""")
    ok = accepted(raw, now=datetime(2026, 11, 25, 9, 0, tzinfo=UTC), cfg=UTC_SETTINGS)
    assert ok.decline.model_dump(by_alias=True, mode="json", exclude_unset=True) == raw
    assert ok.expiry_at == datetime(2026, 12, 16, 8, 15, tzinfo=UTC)


def test_instants_come_back_in_utc() -> None:
    ok = accepted(decline(declinedAt="2026-11-25T09:30:00-05:00",
                          expiryDateUtc="2026-12-20T12:00:00+01:00"))
    assert ok.declined_at == datetime(2026, 11, 25, 14, 30, tzinfo=UTC)
    assert ok.declined_at.utcoffset() == timedelta(0)
    assert ok.expiry_at == datetime(2026, 12, 20, 11, 0, tzinfo=UTC)


def test_expiry_defaults_to_declined_at_plus_the_setting() -> None:
    cfg = Settings(_env_file=None, FLEXMIT_EXPIRY_DAYS=30)  # type: ignore[call-arg]
    ok = accepted(decline(expiryDateUtc=REMOVE), cfg=cfg)
    assert ok.expiry_at == NOW + timedelta(days=30)


def test_accepted_model_reads_snake_case_in_python() -> None:
    ok = accepted(decline())
    assert isinstance(ok.decline, Decline)
    assert ok.decline.billing_address.country_code == "US"
    assert ok.decline.decline.response_code == "05"
    assert ok.decline.card.exp_year == NOW.year + 2


# ---------------------------------------------------------------- every rule fails at its field

FAILING: list[tuple[dict[str, Any], str, str]] = [
    ({"amount": 19.99}, "amount", "must be an integer number of cents greater than 0"),
    ({"amount": "1999"}, "amount", "must be an integer number of cents greater than 0"),
    ({"amount": True}, "amount", "must be an integer number of cents greater than 0"),
    ({"amount": 0}, "amount", "greater than 0"),
    ({"amount": -5}, "amount", "greater than 0"),
    ({"amount": None}, "amount", "is required"),
    ({"amount": REMOVE}, "amount", "is required"),
    ({"amount": 2**31}, "amount", "must be at most"),
    ({"currency": "usd"}, "currency", "ISO 4217"),
    ({"currency": "XYZ"}, "currency", "ISO 4217"),
    ({"currency": "XAU"}, "currency", "ISO 4217"),
    ({"currency": 840}, "currency", "ISO 4217"),
    ({"currency": REMOVE}, "currency", "is required"),
    ({"isRecurring": "true"}, "isRecurring", "must be true or false"),
    ({"isRecurring": 1}, "isRecurring", "must be true or false"),
    ({"isRecurring": REMOVE}, "isRecurring", "is required"),
    ({"orderId": ""}, "orderId", "1 to 64 characters"),
    ({"orderId": "a" * 65}, "orderId", "1 to 64 characters"),
    ({"orderId": "inv 1"}, "orderId", "1 to 64 characters"),
    ({"orderId": 123}, "orderId", "1 to 64 characters"),
    ({"orderId": REMOVE}, "orderId", "is required"),
    ({"declinedAt": "2026-11-25T10:00:00"}, "declinedAt", "with a time zone"),
    ({"declinedAt": "2026-11-25"}, "declinedAt", "with a time zone"),
    ({"declinedAt": "yesterday"}, "declinedAt", "ISO 8601"),
    ({"declinedAt": 1764082800}, "declinedAt", "ISO 8601"),
    ({"declinedAt": REMOVE}, "declinedAt", "is required"),
    ({"declinedAt": "2026-11-25T15:06:00Z"}, "declinedAt", "is in the future"),
    ({"declinedAt": "2026-11-24T20:00:00Z"}, "declinedAt", "not today"),
    ({"expiryDateUtc": iso(NOW + timedelta(days=13, hours=23))}, "expiryDateUtc",
     "at least 14 days"),
    ({"expiryDateUtc": iso(NOW + timedelta(days=91))}, "expiryDateUtc", "at most 90 days"),
    ({"expiryDateUtc": "soon"}, "expiryDateUtc", "ISO 8601"),
    ({"siteId": 7}, "siteId", "must be a string"),
    ({"card.token": REMOVE}, "card.token", "is required"),
    ({"card.token": ""}, "card.token", "must not be empty"),
    ({"card.token": 12345}, "card.token", "must be a string"),
    ({"card.token": "x" * 513}, "card.token", "at most 512"),
    ({"card.expMonth": 0}, "card.expMonth", "1 to 12"),
    ({"card.expMonth": 13}, "card.expMonth", "1 to 12"),
    ({"card.expMonth": "12"}, "card.expMonth", "1 to 12"),
    ({"card.expMonth": REMOVE}, "card.expMonth", "is required"),
    ({"card.expYear": 28}, "card.expYear", "4-digit"),
    ({"card.expYear": "2028"}, "card.expYear", "4-digit"),
    ({"card.expYear": REMOVE}, "card.expYear", "is required"),
    ({"card.expYear": 2025, "card.expMonth": 12}, "card.expYear", "expired at the end of 12/2025"),
    ({"card.expYear": 2026, "card.expMonth": 10}, "card.expMonth", "expired at the end of 10/2026"),
    ({"card.bin": "4111"}, "card.bin", "6 to 8 digits"),
    ({"card.bin": "41111a"}, "card.bin", "6 to 8 digits"),
    ({"card.bin": 411111}, "card.bin", "6 to 8 digits"),
    ({"card.last4": "111"}, "card.last4", "last 4 digits"),
    ({"card.last4": 1111}, "card.last4", "last 4 digits"),
    ({"card": REMOVE}, "card", "is required"),
    ({"card": "tok_1"}, "card", "must be an object"),
    ({"payer.email": "nope"}, "payer.email", "email address"),
    ({"payer.email": "a@b"}, "payer.email", "email address"),
    ({"payer.email": None}, "payer.email", "is required"),
    ({"payer": None}, "payer", "is required"),
    ({"billingAddress.firstName": ""}, "billingAddress.firstName", "must not be empty"),
    ({"billingAddress.firstName": "   "}, "billingAddress.firstName", "must not be empty"),
    ({"billingAddress.lastName": REMOVE}, "billingAddress.lastName", "is required"),
    ({"billingAddress.addressLine1": None}, "billingAddress.addressLine1", "is required"),
    ({"billingAddress.city": REMOVE}, "billingAddress.city", "is required"),
    ({"billingAddress.zipCode": REMOVE}, "billingAddress.zipCode", "is required"),
    ({"billingAddress.zipCode": "7870"}, "billingAddress.zipCode", "US ZIP code"),
    ({"billingAddress.countryCode": "USA"}, "billingAddress.countryCode", "alpha-2"),
    ({"billingAddress.countryCode": "us"}, "billingAddress.countryCode", "alpha-2"),
    ({"billingAddress.countryCode": REMOVE}, "billingAddress.countryCode", "is required"),
    ({"billingAddress.state": REMOVE}, "billingAddress.state", "countryCode is US"),
    ({"billingAddress.state": ""}, "billingAddress.state", "countryCode is US"),
    ({"decline.pspTransactionId": REMOVE}, "decline.pspTransactionId", "is required"),
    ({"decline.responseCode": 5}, "decline.responseCode", "must be a string"),
    ({"decline": REMOVE}, "decline", "is required"),
    ({"subscription.id": REMOVE}, "subscription.id", "when isRecurring is true"),
    ({"subscription.interval": ""}, "subscription.interval", "when isRecurring is true"),
    ({"subscription": REMOVE}, "subscription.id", "when isRecurring is true"),
    ({"subscription": [1]}, "subscription", "must be an object"),
    ({"subscription.paymentNumber": 0}, "subscription.paymentNumber", "greater than 0"),
    ({"subscription.paymentNumber": "3"}, "subscription.paymentNumber", "integer"),
    ({"subscription.totalPayments": -1}, "subscription.totalPayments", "greater than 0"),
    ({"subscription.price": 19.99}, "subscription.price", "integer number of cents"),
    ({"subscription.paymentNumber": 5, "subscription.totalPayments": 4},
     "subscription.paymentNumber", "not be greater than subscription.totalPayments"),
]


@pytest.mark.parametrize(("overrides", "path", "fragment"), FAILING,
                         ids=[f"{p}:{i}" for i, (_, p, _f) in enumerate(FAILING)])
def test_each_rule_rejects_naming_its_field(overrides: dict[str, Any], path: str,
                                            fragment: str) -> None:
    errors = errors_of(decline(**overrides))
    assert path in errors, errors
    assert any(fragment in message for message in errors[path]), errors[path]


def test_all_errors_are_reported_at_once() -> None:
    errors = errors_of(decline(amount="x", currency="usd",
                               **{"card.token": REMOVE, "billingAddress.state": REMOVE}))
    assert {"amount", "currency", "card.token", "billingAddress.state"} <= set(errors)


def test_exact_messages() -> None:
    assert errors_of(decline(amount=19.99))["amount"] == [
        "must be an integer number of cents greater than 0"]
    assert errors_of(decline(declinedAt="2026-11-25T03:00:00Z"))["declinedAt"] == [
        "decline is from 2026-11-24, not today (2026-11-25 in America/New_York); "
        "FlexFactor only rescues same-day declines"]
    assert errors_of(decline(**{"card.token": VISA}))["card.token"] == [
        "looks like a raw card number; send the FlexFactor vault token in card.token instead"]


# ---------------------------------------------------------------- and passes when it should

PASSING: list[dict[str, Any]] = [
    {"billingAddress.countryCode": "GB", "billingAddress.state": REMOVE,
     "billingAddress.zipCode": "SW1A 1AA"},
    {"isRecurring": False, "subscription": REMOVE},
    {"isRecurring": False, "subscription": None},
    {"expiryDateUtc": REMOVE},
    {"expiryDateUtc": None},
    {"expiryDateUtc": iso(NOW + timedelta(days=14))},
    {"expiryDateUtc": iso(NOW + timedelta(days=90))},
    {"expiryDateUtc": (NOW + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%S")},  # naive = UTC
    {"declinedAt": "2026-11-25T15:04:00Z"},  # within the 5-minute clock skew
    {"declinedAt": "2026-11-25T05:00:00Z"},  # 00:00 in New York: today's first minute
    {"declinedAt": "2026-11-25T10:00:00-05:00"},
    {"declinedAt": "2026-11-25T15:00:00.123456+00:00"},
    {"card.expYear": 2026, "card.expMonth": 11},  # expires at the end of this month
    {"card.bin": "41111111"},
    {"card.bin": None, "card.last4": None, "card.brand": None, "card.holderName": None},
    {"billingAddress.zipCode": "78701-1234"},
    {"billingAddress.addressLine2": "Suite 5"},
    {"billingAddress.addressLine2": ""},
    {"payer.phone": "+1 512 555 0100", "payer.id": None},
    {"subscription.totalPayments": 12, "subscription.paymentNumber": 12},
    {"siteId": "3fa85f64-5717-4562-b3fc-2c963f66afa6"},
    {"orderId": "A.b_c:d-1"},
    {"orderId": "x" * 64},
    {"amount": 2**31 - 1},
    {"currency": "EUR"},
    {"currency": "JPY"},
    {"unknownField": {"nested": [1, 2, "three"]}, "another": 12345678901},
    {"declinedAt": "2026-11-25T15:00:00Z", "decline.responseDescription": None},
]


@pytest.mark.parametrize("overrides", PASSING, ids=[str(i) for i in range(len(PASSING))])
def test_valid_variants_are_accepted(overrides: dict[str, Any]) -> None:
    accepted(decline(**overrides))


# ---------------------------------------------------------------- same day, in the merchant's zone


def test_three_am_utc_is_yesterday_in_new_york() -> None:
    raw = decline(declinedAt="2026-11-25T03:00:00Z")
    assert "not today" in errors_of(raw)["declinedAt"][0]
    accepted(raw, cfg=UTC_SETTINGS)


def test_late_evening_in_new_york_is_still_today_after_utc_midnight() -> None:
    now = datetime(2026, 11, 26, 4, 30, tzinfo=UTC)  # 23:30 on the 25th in New York
    raw = make_valid_decline(now, declinedAt="2026-11-25T23:00:00Z")
    accepted(raw, now=now)
    assert "decline is from 2026-11-25, not today (2026-11-26 in UTC)" in errors_of(
        raw, now=now, cfg=UTC_SETTINGS)["declinedAt"][0]


def test_clock_skew_across_midnight_counts_as_today() -> None:
    now = datetime(2026, 11, 26, 4, 58, tzinfo=UTC)  # 23:58 in New York
    accepted(make_valid_decline(now, declinedAt="2026-11-26T05:01:00Z"), now=now)


def test_a_naive_now_means_utc() -> None:
    accepted(decline(), now=NOW.replace(tzinfo=None))


# ---------------------------------------------------------------- the PAN guard


def no_pan_in(result: Accepted | Rejected, pan: str) -> None:
    text = repr(result) + json.dumps(getattr(result, "redacted", None))
    for form in (pan, " ".join(re.findall(".{1,4}", pan)), "-".join(re.findall(".{1,4}", pan))):
        assert form not in text


PLACES: list[tuple[dict[str, Any], str]] = [
    ({"notes": VISA}, "notes"),
    ({"meta": {"deep": {"deeper": [0, VISA]}}}, "meta.deep.deeper[1]"),
    ({"notes": "4111 1111 1111 1111"}, "notes"),
    ({"notes": "4111-1111-1111-1111"}, "notes"),
    ({"notes": "card 4111111111111111 exp 12/28"}, "notes"),
    ({"notes": "4111 1111 1111 1111 123"}, "notes"),  # PAN then CVV
    ({"notes": int(VISA)}, "notes"),
    ({"notes": float(VISA)}, "notes"),
    ({"card.token": VISA}, "card.token"),
    ({"card.holderName": "Ada 4111111111111111"}, "card.holderName"),
    ({"billingAddress.addressLine2": "3782 822463 10005"}, "billingAddress.addressLine2"),
    ({"amount": int(VISA)}, "amount"),
    ({"orderId": VISA}, "orderId"),
    ({"payer.phone": "4111-1111-1111-1111"}, "payer.phone"),
]


@pytest.mark.parametrize(("overrides", "path"), PLACES, ids=[p for _, p in PLACES])
def test_a_pan_anywhere_is_refused_and_redacted(overrides: dict[str, Any], path: str) -> None:
    result = check(decline(**overrides))
    assert isinstance(result, Rejected)
    assert result.errors[path] == [PAN_MESSAGE]
    assert result.redacted is not None
    node: Any = result.redacted
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        node = node[int(part[1:-1])] if part.startswith("[") else node[part]
    assert node == PAN_PLACEHOLDER
    no_pan_in(result, VISA if "378282" not in str(overrides) else "378282246310005")


@pytest.mark.parametrize("pan", PANS)
def test_known_test_pans_of_every_length_are_caught(pan: str) -> None:
    result = check(decline(extra=pan))
    assert isinstance(result, Rejected)
    assert result.errors["extra"] == [PAN_MESSAGE]
    no_pan_in(result, pan)


def test_a_pan_as_a_key_is_redacted_without_echoing_it() -> None:
    result = check(decline(**{VISA: "x", "meta": {"4111-1111-1111-1111": 1}}))
    assert isinstance(result, Rejected)
    assert PAN_PLACEHOLDER in result.errors
    assert f"meta.{PAN_PLACEHOLDER}" in result.errors
    no_pan_in(result, VISA)


def test_a_pan_in_the_order_id_drops_the_order_id() -> None:
    result = check(decline(orderId=VISA))
    assert isinstance(result, Rejected) and result.order_id is None
    assert result.errors["orderId"] == [PAN_MESSAGE]  # no extra format noise about the placeholder


def test_a_rejected_item_keeps_a_valid_order_id() -> None:
    result = check(decline(orderId="inv-77", amount=0))
    assert isinstance(result, Rejected) and result.order_id == "inv-77"


NOT_PANS = [
    "4111111111111112",  # Luhn fails
    "1234567890123",  # 13 digits, Luhn fails
    "inv-2026-11-25-000123",  # date-like groups are not card formatting
    "2026-11-25T08:15:00Z",
    "+86 138 0013 8000",
    "41111111111111111111",  # 20 digits: too long for a card
    "411111111111",  # 12 digits
]


@pytest.mark.parametrize("text", NOT_PANS)
def test_numbers_that_are_not_card_numbers_pass(text: str) -> None:
    assert not find_pans({"x": text})
    accepted(decline(notes=text))


def test_a_13_digit_number_that_fails_luhn_is_not_a_pan() -> None:
    assert not luhn_ok("1234567890123")
    accepted(decline(notes=1234567890123))


def test_luhn() -> None:
    assert luhn_ok(VISA) and luhn_ok("79927398713")
    assert not luhn_ok("79927398710")
    assert not luhn_ok("") and not luhn_ok("0") and not luhn_ok("4111-1111")


def test_find_and_redact_helpers() -> None:
    raw = {"a": [VISA, {"b": "ok"}], "c": {"d": "4111 1111 1111 1111"}, VISA: 1}
    assert find_pans(raw) == ["a[0]", "c.d", PAN_PLACEHOLDER]
    red = redact_pans(raw)
    assert red == {"a": [PAN_PLACEHOLDER, {"b": "ok"}], "c": {"d": PAN_PLACEHOLDER},
                   PAN_PLACEHOLDER: 1}
    assert raw["a"][0] == VISA  # the input is not changed
    assert find_pans(VISA) == [ROOT]
    assert find_pans([1, 2]) == []


def test_redacted_copy_is_json_safe() -> None:
    red = redact_pans({"n": float("nan"), "b": b"4111111111111111", "o": object(), "t": (1, 2)})
    json.dumps(red, allow_nan=False)
    assert red["b"] == PAN_PLACEHOLDER and red["t"] == [1, 2]


# ---------------------------------------------------------------- garbage never raises


class Hostile:
    def __str__(self) -> str:
        raise RuntimeError("no")


def _cycle() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


def _deep(levels: int) -> dict[str, Any]:
    node: dict[str, Any] = {}
    for _ in range(levels):
        node = {"x": node}
    return node


GARBAGE: list[object] = [None, [], {}, "", "x", 0, 1.5, True, [decline()], {"declines": []},
                         {"card": None, "payer": [], "billingAddress": "x"}, _cycle(),
                         _deep(500), object(), Hostile(), b"\xff", {1: 2, (3,): 4},
                         10**5000, {"amount": 10**5000}, {"orderId": Hostile()},
                         {"declinedAt": datetime(2026, 11, 25)}, [[[[[]]]]] * 3,
                         {"k": list(range(20_000))}]


@pytest.mark.parametrize("raw", GARBAGE, ids=[type(g).__name__ + str(i)
                                              for i, g in enumerate(GARBAGE)])
def test_garbage_is_rejected_not_raised(raw: object) -> None:
    result = check(raw)
    assert isinstance(result, Rejected) and result.errors
    assert all(isinstance(k, str) and v for k, v in result.errors.items())
    json.dumps(result.redacted)


def test_non_object_bodies_are_kept_wrapped() -> None:
    result = check(["a", VISA])
    assert isinstance(result, Rejected)
    assert result.errors[ROOT] == ["must be a JSON object: one decline"]
    assert result.redacted == {ROOT: ["a", PAN_PLACEHOLDER]}


def test_an_internal_failure_is_a_rejection(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(intake, "_rule_errors", boom)
    result = check(decline())
    assert isinstance(result, Rejected) and ROOT in result.errors


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
    | st.text(max_size=30) | st.sampled_from([*PANS, "4111 1111 1111 1111", "1999", "USD"]),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=12) | st.sampled_from(sorted(decline())), children,
                      max_size=6),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_never_raises(raw: object) -> None:
    result = check(raw)
    if isinstance(result, Rejected):
        assert result.errors and all(result.errors.values())
        json.dumps(result.redacted)
    for pan in PANS:
        assert pan not in repr(result)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(sorted(decline())), json_values, max_size=4))
def test_a_valid_decline_with_fields_replaced_by_garbage_never_raises(
        replace: dict[str, Any]) -> None:
    raw = decline()
    raw.update(replace)
    result = check(raw)
    if isinstance(result, Rejected):
        assert result.errors and set(result.errors) != {ROOT}
    for pan in PANS:
        assert pan not in repr(result)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(["card", "meta", "billingAddress", "x"]), min_size=1,
                max_size=3), st.sampled_from(PANS))
def test_a_pan_planted_anywhere_is_found(keys: list[str], pan: str) -> None:
    raw = decline()
    node = raw
    for key in keys[:-1]:
        node = node.setdefault(key, {}) if isinstance(node.get(key), dict) else node.setdefault(
            key + "_", {})
    node[keys[-1]] = pan
    result = check(raw)
    assert isinstance(result, Rejected)
    assert PAN_MESSAGE in [m for ms in result.errors.values() for m in ms]
    assert pan not in repr(result)


def test_factory_tokens_never_look_like_pans() -> None:
    assert not any(find_pans(vault_token()) for _ in range(2000))


# ---------------------------------------------------------------- request bodies


def test_parse_one_decline_or_a_batch() -> None:
    one = decline()
    assert parse_declines_body(one) == [one]
    assert parse_declines_body({"declines": [one, 5]}) == [one, 5]


@pytest.mark.parametrize("body", [[1], "x", None, 5, {"declines": "x"}, {"declines": []},
                                  {"declines": [{}], "orderId": "a"}])
def test_parse_refuses_other_bodies(body: object) -> None:
    with pytest.raises(ValueError, match="decline"):
        parse_declines_body(body)
