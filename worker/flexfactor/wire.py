"""FlexFactor request/response models with the exact wire names of the fact sheet.

Requests forbid unknown fields (a typo must fail here, not as a 400 in production); responses
allow them (FlexFactor may add fields at any time). Serialize a request with ``to_wire()``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from enum import IntEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
)
from pydantic.alias_generators import to_camel, to_pascal


def _utc_iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _whole_cents(value: Decimal) -> Decimal:
    if not value.is_finite() or value != value.quantize(Decimal("0.01")):
        raise ValueError("a dollar amount must be a whole number of cents")
    return value


def _two_decimals(value: Decimal) -> float:
    # A JSON *number* (not a string). Two-decimal amounts below 1e13 survive float exactly:
    # repr() gives the shortest round-trip text, so Decimal("19.99") is written as 19.99.
    return float(value.quantize(Decimal("0.01")))


UtcDatetime = Annotated[AwareDatetime, PlainSerializer(_utc_iso, return_type=str, when_used="json")]
Dollars = Annotated[
    Decimal,
    AfterValidator(_whole_cents),
    PlainSerializer(_two_decimals, return_type=float, when_used="json"),
]
NumStr = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, int) else v)]


class Request(BaseModel):
    """Base of every request body: camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready body: wire names, no nulls."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Response(BaseModel):
    """Base of every response: camelCase on the wire, unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class Envelope(Response):
    """The standard envelope most FlexFactor responses carry (fact sheet §8.1)."""

    success: bool | None = None
    result: str | None = None
    status_code: str | int | None = None
    errors: Any = None
    custom_properties: dict[str, Any] | None = None


# --- /oauth2/token -------------------------------------------------------------------------


class TokenRequest(Request):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="forbid")

    app_key: str
    app_secret: str


class TokenResponse(Envelope):
    access_token: str
    refresh_token: str | None = None
    expires: int  # epoch milliseconds
    id: str | None = None


# --- /tokenize (snake_case on the wire) ------------------------------------------------------


class SnakeRequest(Request):
    model_config = ConfigDict(alias_generator=None, populate_by_name=True, extra="forbid")


class CreditCard(SnakeRequest):
    first_name: str
    last_name: str
    number: str
    verification_value: str | None = None
    month: str  # MM
    year: str  # YYYY


class TokenizePaymentMethod(SnakeRequest):
    email: str | None = None
    sense_key: str | None = None
    credit_card: CreditCard


class TokenizeRequest(SnakeRequest):
    payment_method: TokenizePaymentMethod


class TokenizeResponse(Envelope):
    transaction: dict[str, Any] = Field(default_factory=dict)  # Spreedly-like, snake_case inside

    @property
    def token(self) -> str:
        """The vault token (``transaction.payment_method.token``) to send as ``cardNumber``."""
        token = (self.transaction.get("payment_method") or {}).get("token")
        if not isinstance(token, str) or not token:
            raise ValueError("tokenize response has no transaction.payment_method.token")
        return token


# --- /evaluate --------------------------------------------------------------------------------


class Transaction(Request):
    id: str
    timestamp_utc: UtcDatetime
    timezone_utc_offset: int | None = None
    amount: int = Field(ge=0)  # cents
    currency: str
    response_code: str | None = None
    response_description: str | None = None
    response_status: str | None = None
    response_sub_status: str | None = None
    response_code_source: str | None = None
    processor_name: str | None = None
    avs_result_code: str | None = None
    cvv_result_code: str | None = None
    cavv_result_code: str | None = None
    card_not_present: bool | None = None
    transaction_type: str | None = None
    dynamic_descriptor: str | None = None


class Payer(Request):
    email: str
    id: str | None = None
    phone: str | None = None
    birthdate: str | None = None  # YYYY-MM-DD


class BillingInformation(Request):
    first_name: str | None = None
    last_name: str | None = None
    country: str | None = None
    country_code: str | None = None
    address_line1: str | None = None
    address_line2: str | None = None
    city: str | None = None
    state: str | None = None
    zip_code: str | None = None
    phone: str | None = None


class PaymentMethod(Request):
    card_number: str  # the /tokenize token when token=True
    token: bool = True
    holder_name: str | None = None
    card_brand: str | None = None
    card_type: str | None = None
    card_country: str | None = None
    card_issuer: str | None = None
    card_level: str | None = None
    card_fingerprint: str | None = None
    expiration_month: int | None = None
    expiration_year: int | None = None
    card_bin_number: str | None = None
    card_last4_digits: str | None = None


class Subscription(Request):
    subscription_id: str | None = None
    interval: str | None = None
    price: int | None = Field(default=None, ge=0)  # cents
    currency: str | None = None
    payment_number: NumStr | None = None  # the official sample types these as strings
    total_payments: NumStr | None = None


class OrderItem(Request):
    sku: str | None = None
    name: str | None = None
    description: str | None = None
    amount: int | None = None  # cents
    discount_amount: int | None = None
    tax: int | None = None
    discount_type: str | None = None
    quantity: int | None = None


class Merchant(Request):
    name: str | None = None
    id: str | None = None
    mcc: int | None = None
    country: str | None = None


class EvaluateRequest(Request):
    is_declined: bool = True
    transaction_type: str | None = None  # AUTHORIZATION | PURCHASE
    mid: str | None = None  # filled by the client when missing
    order_id: str  # the merchant's; never changes between tries
    idempotency_key: str | None = None  # set by the client, fresh per HTTP attempt
    is_mit: bool = Field(alias="isMIT")
    site_id: str | None = None
    site_url: str | None = None
    customer_ip: str | None = None
    order_source: str | None = None
    is_recurring: bool | None = None
    expiry_date_utc: UtcDatetime | None = None
    sense_key: str | None = None
    correlation_id: str | None = None
    subscription: Subscription | None = None
    transaction: Transaction
    payer: Payer
    billing_information: BillingInformation
    shipping_information: BillingInformation | None = None
    payment_method: PaymentMethod
    order_items: list[OrderItem] | None = None
    merchant: Merchant | None = None
    additional_fields: list[dict[str, Any]] | None = None
    three_d_secure: dict[str, Any] | None = Field(default=None, alias="threeDSecure")


class EvaluateResponse(Envelope):
    order_session_key: str | None = None
    order_id: str | None = None
    status: str | None = None  # APPROVED | DECLINED | CHALLENGE | SUBMITTED | CAPTUREREQUIRED
    sense_key: str | None = None


# --- orders -----------------------------------------------------------------------------------


class OrderStatus(IntEnum):
    DRAFT = 0
    ONHOLD = 1
    CANCELLED = 2
    PROBLEM = 3
    PROCESSING = 4
    CAPTUREREQUIRED = 5
    RETURNED = 6
    COMPLETED = 7


class OrderDetails(Response):
    id: str
    status: int  # OrderStatus; kept an int so an undocumented code (e.g. EXPIRED) still parses
    status_name: str | None = None
    expiry_date: datetime | None = None
    order_placed_date: datetime | None = None
    amount: Decimal | None = None  # unit NOT FOUND in the fact sheet
    external_order_id: str | None = None
    correlation_id: str | None = None
    reference_number: str | None = None
    currency_code: str | None = None

    @property
    def order_status(self) -> OrderStatus | None:
        """``status`` as an OrderStatus, or None for a code the fact sheet does not list."""
        try:
            return OrderStatus(self.status)
        except ValueError:
            return None


class OrderPage(Response):
    first_item_on_page: int | None = None
    last_item_on_page: int | None = None
    has_next_page: bool | None = None
    has_previous_page: bool | None = None
    is_first_page: bool | None = None
    is_last_page: bool | None = None
    page_count: int | None = None
    page_number: int | None = None
    page_size: int | None = None
    # The real names of the total and the array are NOT FOUND; accept the likely spellings.
    total_item_count: int | None = Field(
        default=None, validation_alias=AliasChoices("totalItemCount", "totalCount", "total")
    )
    items: list[OrderDetails] = Field(
        default_factory=list, validation_alias=AliasChoices("items", "orders", "data")
    )


class OutcomeRequest(Request):
    order_session_key: str


class OutcomeResponse(Envelope):
    status: str | None = None  # APPROVED | DECLINED | EXPIRED | CANCELLED | SUBMITTED | ...
    confirmation_id: str | None = None


# --- refund / cancel / capture ----------------------------------------------------------------


class RefundRequest(Request):
    amount_to_refund: Dollars
    refund_message: str | None = None


class RefundResponse(Envelope):
    status: str | None = None  # SUCCESS | FAILED
    response_code: str | None = None
    response_message: str | None = None
    transaction_id: str | None = None


class CancelRequest(Request):
    idempotency_key: str | None = None


class CaptureRequest(Request):
    idempotency_key: str
    order_id: str  # FlexFactor's id (= orderSessionKey)
    amount: int = Field(ge=0)  # cents
    currency: str


class CaptureResponse(Envelope):
    status: str | None = None
    capture_status: str | None = None

    @property
    def outcome(self) -> str | None:
        """``status`` or, as one third-party client reads it, ``captureStatus``."""
        return self.status or self.capture_status


# --- webhooks and errors ----------------------------------------------------------------------


class WebhookEvent(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="allow")

    event: str
    time_stamp: datetime | None = None
    event_data: Any = None
    external_order_id: str | None = None
    order_id: str | None = None
    confirmation_id: str | None = None
    is_test_mode: bool | None = None
    is_resent: bool = False


class ProblemDetails(Response):
    type: str | None = None
    title: str | None = None
    status: int | str | None = None
    detail: str | None = None
    trace_id: str | None = None
    errors: dict[str, list[str]] | list[Any] | None = None
