"""Decline intake: the contract's decline model, its validation rules and the card-number guard.

Pure functions, no database: ``validate_decline`` turns anything that arrived into
``Accepted`` or ``Rejected`` and never raises. Error keys are dotted field paths as the sender
wrote them (``card.token``, ``billingAddress.state``); ``$`` stands for the body as a whole.

Required for an MIT ``/evaluate`` (flexfactor-api.md §3; the MIT minimum payload itself is not
published, so this is the CIT minimum plus what MIT and a rescue need):

- ``orderId``, ``declinedAt``, ``amount``, ``currency``, ``isRecurring``;
- ``decline.pspTransactionId`` and ``decline.responseCode`` (``transaction.id`` and
  ``transaction.responseCode``; the 2024 sandbox answered 400 without them);
- ``card.token``, ``card.expMonth``, ``card.expYear`` (``paymentMethod``: the vault token and
  expiry; FlexFactor cannot retry a card without them);
- ``payer.email``;
- ``billingAddress.firstName``, ``lastName``, ``addressLine1``, ``city``, ``zipCode``,
  ``countryCode``, and ``billingAddress.state`` when ``countryCode`` is ``US``;
- ``subscription.id`` and ``subscription.interval`` when ``isRecurring`` is true.

Everything else in CONTRACT.md is optional (``null`` or absent). Unknown fields are ignored,
but they are still scanned for card numbers. Money is strict: ``amount`` and
``subscription.price`` are JSON integers (never 19.99, "1999" or true) from 1 to 2**31-1 cents
(FlexFactor's amount is a 32-bit int). A naive ``expiryDateUtc`` is read as UTC (its name says
so); ``declinedAt`` must carry its zone, since "today" depends on it.

The PAN guard: any run of 13 to 19 digits that passes Luhn (``worker.pan``: digits may be split
by single spaces or dashes into groups of at least 3, as card numbers are printed), in any key or
value at any depth, is refused at its path and replaced by ``[PAN REDACTED]`` in the copy kept
for a rejected item. Shorter groups are dates and phone numbers (``inv-2026-11-25-000123`` is
not a card).
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, NoReturn, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from worker.pan import PAN_MASK, has_pan, may_hold_pan
from worker.settings import Settings

log = logging.getLogger(__name__)

ROOT = "$"
PAN_PLACEHOLDER = PAN_MASK
TRUNCATED = "[TRUNCATED]"
PAN_MESSAGE = "looks like a raw card number; send the FlexFactor vault token in card.token instead"
CENTS_MESSAGE = "must be an integer number of cents greater than 0"
CLOCK_SKEW = timedelta(minutes=5)
MIN_EXPIRY = timedelta(days=14)
MAX_EXPIRY = timedelta(days=90)
MAX_CENTS = 2**31 - 1
MAX_DEPTH = 32  # nesting levels scanned; a decline has 3
MAX_VALUES = 10_000  # keys and values scanned per item; a decline has about 60

# ISO 4217 alpha-3 codes in current use (list one, 2025), funds codes included; precious metals,
# testing codes, XXX and the non-transactable XDR/XSU/XUA/XB* units are left out.
_ISO_4217_CODES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR
FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
"""
ISO_4217 = frozenset(_ISO_4217_CODES.split())

_ORDER_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
_ALPHA2 = re.compile(r"[A-Z]{2}")
_US_ZIP = re.compile(r"\d{5}(-?\d{4})?", re.ASCII)

T = TypeVar("T")


# ---------------------------------------------------------------- card numbers (PAN guard)


def _number_text(value: int | float) -> str | None:
    """The digits a number would print as, or None when it cannot hold a PAN."""
    if isinstance(value, float):
        if not math.isfinite(value) or not value.is_integer() or abs(value) >= 1e20:
            return None
        value = int(value)
    if abs(value) >= 10**20:
        return None
    return str(value)


@dataclass
class _Scan:
    """One walk over an input: its redacted copy, PAN paths and other problems."""

    pans: list[str] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)
    seen: int = 0

    def walk(self, value: object, path: str, depth: int, stack: tuple[int, ...] = ()) -> Any:
        """The JSON-safe, PAN-free copy of ``value`` (found PANs are recorded under ``path``)."""
        self.seen += 1
        if self.seen > MAX_VALUES:
            self.problems.setdefault(ROOT, f"has more than {MAX_VALUES} values; not checked")
            return TRUNCATED
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, str):
            return self._leaf(value, value, path)
        if isinstance(value, int | float):
            return self._number(value, path)
        if isinstance(value, dict | list | tuple):
            return self._container(value, path, depth, stack)
        text = _safe_str(value)
        return self._leaf(text, text, path)

    def _leaf(self, text: str, keep: object, path: str) -> object:
        if has_pan(text):
            self.pans.append(path or ROOT)
            return PAN_PLACEHOLDER
        return keep

    def _number(self, value: int | float, path: str) -> object:
        if isinstance(value, float) and not math.isfinite(value):
            return repr(value)  # NaN and infinities are not JSON
        text = _number_text(value)
        if text is not None:
            return self._leaf(text, value, path)
        if isinstance(value, int) and value.bit_length() > 14_000:
            return TRUNCATED  # too long for str(): it could not be stored as JSON either
        return value

    def _container(self, value: dict[Any, Any] | list[Any] | tuple[Any, ...], path: str,
                   depth: int, stack: tuple[int, ...]) -> Any:
        if depth >= MAX_DEPTH or id(value) in stack:
            self.problems.setdefault(path or ROOT, "is nested too deeply")
            return TRUNCATED
        inner = (*stack, id(value))
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for raw_key, item in value.items():
                # Hot path: keys and leaves that cannot hold 13 digits are kept without a walk
                # (exactly what walk() would return for them).
                short = type(raw_key) is str and len(raw_key) < 13
                key = raw_key if short else self._key(raw_key, path, out)
                if self.seen < MAX_VALUES and _plain(item):
                    self.seen += 1
                    out[key] = item
                else:
                    out[key] = self.walk(item, _join(path, key), depth + 1, inner)
            return out
        return [self.walk(item, f"{path}[{i}]", depth + 1, inner) for i, item in enumerate(value)]

    def _key(self, raw_key: object, path: str, out: dict[str, Any]) -> str:
        key = raw_key if isinstance(raw_key, str) else _safe_str(raw_key)
        if not has_pan(key):
            return key
        key, n = PAN_PLACEHOLDER, 1
        while key in out:
            n += 1
            key = f"{PAN_PLACEHOLDER} {n}"
        self.pans.append(_join(path, key))
        return key


def _plain(value: object) -> bool:
    """A leaf walk() keeps as it is: null, bool, text without 13 digits, an int under 10**12."""
    if type(value) is str:
        return not may_hold_pan(value)
    if type(value) is int:
        return -10**12 < value < 10**12
    return value is None or type(value) is bool


def _safe_str(value: object) -> str:
    try:
        return str(value)[:100_000]
    except Exception:  # a hostile __str__ must not break intake
        return f"<{type(value).__name__}>"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _scan(obj: object) -> tuple[Any, _Scan]:
    scan = _Scan()
    return scan.walk(obj, "", 0), scan


def find_pans(obj: object) -> list[str]:
    """Dotted paths (``$`` for the whole value) of every key or value that holds a PAN."""
    return _scan(obj)[1].pans


def redact_pans(obj: object) -> Any:
    """A JSON-safe copy of ``obj`` with every PAN-holding key or value replaced."""
    return _scan(obj)[0]


# ---------------------------------------------------------------- field types


def _fail(kind: str, message: str) -> NoReturn:
    raise PydanticCustomError(kind, message)


def _text(max_len: int, *, required: bool) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value is None:
            _fail("missing", "is required")
        if not isinstance(value, str):
            _fail("string_type", "must be a string")
        if required and not value.strip():
            _fail("blank", "must not be empty")
        if len(value) > max_len:
            _fail("too_long", f"must be at most {max_len} characters")
        return value

    return check


def _matching(pattern: re.Pattern[str], message: str) -> Callable[[object], str]:
    def check(value: object) -> str:
        if value is None:
            _fail("missing", "is required")
        if not isinstance(value, str) or len(value) > 254 or not pattern.fullmatch(value):
            _fail("format", message)
        return value

    return check


def _currency(value: object) -> str:
    if value is None:
        _fail("missing", "is required")
    if not isinstance(value, str) or value not in ISO_4217:
        _fail("currency", "must be an ISO 4217 currency code in upper case, e.g. USD")
    return value


def _int_in(low: int, high: int, message: str,
            too_big: str | None = None) -> Callable[[object], int]:
    def check(value: object) -> int:
        if value is None:
            _fail("missing", "is required")
        if type(value) is not int or value < low:  # type(): True is an int, but not a count
            _fail("int", message)
        if value > high:
            _fail("too_big", too_big or message)
        return value

    return check


def _strict_bool(value: object) -> bool:
    if value is None:
        _fail("missing", "is required")
    if not isinstance(value, bool):
        _fail("bool", "must be true or false")
    return value


def _datetime(*, naive_is_utc: bool) -> Callable[[object], datetime]:
    def check(value: object) -> datetime:
        if value is None:
            _fail("missing", "is required")
        parsed = _parse_iso(value)
        if parsed is not None and parsed.tzinfo is None and naive_is_utc:
            parsed = parsed.replace(tzinfo=UTC)
        if parsed is None or parsed.utcoffset() is None:
            _fail("datetime", "must be an ISO 8601 date-time with a time zone, "
                              "e.g. 2026-11-25T08:15:00Z")
        return parsed

    return check


def _parse_iso(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


ReqText = Annotated[str, BeforeValidator(_text(255, required=True))]
OptText = Annotated[str, BeforeValidator(_text(255, required=False))]
Token = Annotated[str, BeforeValidator(_text(512, required=True))]
OrderId = Annotated[str, BeforeValidator(_matching(
    _ORDER_ID, "must be 1 to 64 characters: letters, digits, '.', '_', ':' or '-'"))]
Email = Annotated[str, BeforeValidator(_matching(
    _EMAIL, "must be an email address like name@example.com"))]
CountryCode = Annotated[str, BeforeValidator(_matching(
    _ALPHA2, "must be an ISO 3166-1 alpha-2 country code in upper case, e.g. US"))]
Bin = Annotated[str, BeforeValidator(_matching(
    re.compile(r"[0-9]{6,8}"), "must be a string of the card number's first 6 to 8 digits"))]
Last4 = Annotated[str, BeforeValidator(_matching(
    re.compile(r"[0-9]{4}"), "must be a string of the card number's last 4 digits"))]
Currency = Annotated[str, BeforeValidator(_currency)]
Cents = Annotated[int, BeforeValidator(_int_in(
    1, MAX_CENTS, CENTS_MESSAGE, f"must be at most {MAX_CENTS} cents"))]
Count = Annotated[int, BeforeValidator(_int_in(
    1, MAX_CENTS, "must be an integer greater than 0", f"must be at most {MAX_CENTS}"))]
ExpMonth = Annotated[int, BeforeValidator(_int_in(1, 12, "must be an integer month from 1 to 12"))]
ExpYear = Annotated[int, BeforeValidator(_int_in(
    1000, 9999, "must be a 4-digit integer year, e.g. 2028"))]
StrictBool = Annotated[bool, BeforeValidator(_strict_bool)]
AwareDatetime = Annotated[datetime, BeforeValidator(_datetime(naive_is_utc=False))]
UtcDatetime = Annotated[datetime, BeforeValidator(_datetime(naive_is_utc=True))]


# ---------------------------------------------------------------- the decline (CONTRACT.md)


class _Model(BaseModel):
    """camelCase on the wire (input and output), snake_case in Python; unknown keys ignored."""

    model_config = ConfigDict(alias_generator=to_camel, serialize_by_alias=True,
                              extra="ignore", frozen=True)


class Subscription(_Model):
    id: OptText | None = None
    interval: OptText | None = None
    payment_number: Count | None = None
    total_payments: Count | None = None
    price: Cents | None = None


class PspDecline(_Model):
    """The declined PSP attempt (FlexFactor's ``transaction``)."""

    psp_transaction_id: ReqText
    response_code: ReqText
    response_description: OptText | None = None
    processor: OptText | None = None
    avs_result_code: OptText | None = None
    cvv_result_code: OptText | None = None


class Card(_Model):
    token: Token
    bin: Bin | None = None
    last4: Last4 | None = None
    brand: OptText | None = None
    exp_month: ExpMonth
    exp_year: ExpYear
    holder_name: OptText | None = None
    country: OptText | None = None


class Payer(_Model):
    email: Email
    id: OptText | None = None
    phone: OptText | None = None


class BillingAddress(_Model):
    first_name: ReqText
    last_name: ReqText
    address_line1: ReqText
    address_line2: OptText | None = None
    city: ReqText
    state: OptText | None = None
    zip_code: ReqText
    country_code: CountryCode


class Decline(_Model):
    """One decline as billing sends it; ``model_dump(mode="json")`` gives the contract JSON."""

    order_id: OrderId
    declined_at: AwareDatetime
    amount: Cents
    currency: Currency
    is_recurring: StrictBool
    expiry_date_utc: UtcDatetime | None = None
    site_id: OptText | None = None
    subscription: Subscription | None = None
    decline: PspDecline
    card: Card
    payer: Payer
    billing_address: BillingAddress


# ---------------------------------------------------------------- results


@dataclass(frozen=True)
class Accepted:
    """A valid same-day decline, with its instants in UTC."""

    decline: Decline
    expiry_at: datetime
    declined_at: datetime


@dataclass(frozen=True)
class Rejected:
    """A refused item: per-field errors and the PAN-free copy of what arrived (kept, not dropped).

    ``redacted`` is always a dict in practice: a body that is not an object comes wrapped as
    ``{"$": value}``.
    """

    order_id: str | None
    errors: dict[str, list[str]]
    redacted: dict[str, Any] | None


# ---------------------------------------------------------------- validation


def validate_decline(raw: object, *, now: datetime, settings: Settings) -> Accepted | Rejected:
    """Accept or reject one decline as of ``now`` (naive means UTC); never raises."""
    try:
        return _validate(raw, _as_utc(now), settings)
    except Exception as exc:  # last line of defence: the input is kept, never lost
        log.error("intake validation failed unexpectedly: %s", type(exc).__name__)
        return Rejected(None, {ROOT: ["could not be validated (internal error)"]}, None)


def _validate(raw: object, now: datetime, settings: Settings) -> Accepted | Rejected:
    data, scan = _scan(raw)
    errors: dict[str, list[str]] = {}
    for path in scan.pans:
        _add(errors, path, PAN_MESSAGE)
    for path, message in scan.problems.items():
        _add(errors, path, message)
    if not isinstance(data, dict):
        _add(errors, ROOT, "must be a JSON object: one decline")
        return Rejected(None, errors, {ROOT: data})
    blocked = set(errors)  # a redacted value is not the sender's: no further noise about it
    decline: Decline | None = None
    try:
        decline = Decline.model_validate(data)
    except ValidationError as exc:
        _extend(errors, _field_errors(exc), blocked)
    _extend(errors, _rule_errors(data, now, settings), blocked)
    if errors or decline is None:
        return Rejected(_order_id(data), errors or {ROOT: ["is not a valid decline"]}, data)
    declined_at = decline.declined_at.astimezone(UTC)
    expiry = decline.expiry_date_utc
    expiry_at = (expiry.astimezone(UTC) if expiry is not None
                 else declined_at + timedelta(days=settings.expiry_days))
    return Accepted(decline, expiry_at=expiry_at, declined_at=declined_at)


def _as_utc(now: datetime) -> datetime:
    return now.replace(tzinfo=UTC) if now.utcoffset() is None else now.astimezone(UTC)


def _add(errors: dict[str, list[str]], path: str, message: str) -> None:
    messages = errors.setdefault(path, [])
    if message not in messages:
        messages.append(message)


def _extend(errors: dict[str, list[str]], found: Iterator[tuple[str, str]],
            blocked: set[str]) -> None:
    for path, message in found:
        if not any(path == b or path.startswith((f"{b}.", f"{b}[")) for b in blocked):
            _add(errors, path, message)


def _field_errors(exc: ValidationError) -> Iterator[tuple[str, str]]:
    """(path, message) for each pydantic error, in plain English."""
    for err in exc.errors(include_url=False, include_context=False):
        path = _loc_path(err["loc"])
        kind = err["type"]
        if kind == "missing":
            yield path, "is required"
        elif kind in ("model_type", "model_attributes_type", "dict_type"):
            yield path, "is required" if err.get("input") is None else "must be an object"
        else:
            yield path, err["msg"]


def _loc_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = f"{path}[{part}]" if isinstance(part, int) else _join(path, part)
    return path or ROOT


def is_order_id(value: object) -> bool:
    """True if ``value`` is a well-formed ``orderId`` (only such a one can name an order)."""
    return isinstance(value, str) and _ORDER_ID.fullmatch(value) is not None


def _order_id(data: dict[str, Any]) -> str | None:
    value = data.get("orderId")
    return value if isinstance(value, str) and is_order_id(value) else None


# ---------------------------------------------------------------- rules across fields and time


def _rule_errors(data: dict[str, Any], now: datetime,
                 settings: Settings) -> Iterator[tuple[str, str]]:
    """Errors that depend on several fields or on ``now``; fields already wrong are skipped."""
    yield from _declined_at_errors(data.get("declinedAt"), now, settings)
    yield from _expiry_errors(data.get("expiryDateUtc"), now)
    yield from _recurring_errors(data)
    yield from _address_errors(data.get("billingAddress"))
    yield from _card_expiry_errors(data.get("card"), now.astimezone(settings.tz).date())
    yield from _payment_count_errors(data.get("subscription"))


# The field checks the cross-field rules reuse, built once (not per item: this is the hot path).
_AWARE_CHECK = _datetime(naive_is_utc=False)
_UTC_CHECK = _datetime(naive_is_utc=True)
_MONTH_CHECK = _int_in(1, 12, "")
_YEAR_CHECK = _int_in(1000, 9999, "")
_COUNT_CHECK = _int_in(1, MAX_CENTS, "")


def _valid(check: Callable[[object], T], value: object) -> T | None:
    """``check(value)``, or None where the field check already reports a problem."""
    try:
        return check(value)
    except (PydanticCustomError, ValueError, TypeError, OverflowError):
        return None


def _declined_at_errors(value: object, now: datetime,
                        settings: Settings) -> Iterator[tuple[str, str]]:
    declined = _valid(_AWARE_CHECK, value)
    if declined is None:
        return
    if declined - now > CLOCK_SKEW:
        yield "declinedAt", (f"is in the future ({declined.isoformat()} is more than 5 minutes "
                             f"after now, {now.isoformat()}); check the sender's clock")
        return
    today = now.astimezone(settings.tz).date()
    day = min(declined, now).astimezone(settings.tz).date()  # skew never moves it to tomorrow
    if day != today:
        yield "declinedAt", (f"decline is from {day}, not today ({today} in "
                             f"{settings.merchant_tz}); FlexFactor only rescues same-day declines")


def _expiry_errors(value: object, now: datetime) -> Iterator[tuple[str, str]]:
    expiry = None if value is None else _valid(_UTC_CHECK, value)
    if expiry is None:
        return
    if expiry < now + MIN_EXPIRY:
        yield "expiryDateUtc", (f"must be at least 14 days after now (not before "
                                f"{_stamp(now + MIN_EXPIRY)}); FlexFactor needs a rescue "
                                "window of at least two weeks")
    elif expiry > now + MAX_EXPIRY:
        yield "expiryDateUtc", (f"must be at most 90 days after now (not after "
                                f"{_stamp(now + MAX_EXPIRY)})")


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _recurring_errors(data: dict[str, Any]) -> Iterator[tuple[str, str]]:
    sub = data.get("subscription")
    if data.get("isRecurring") is not True or not (sub is None or isinstance(sub, dict)):
        return
    for key in ("id", "interval"):
        if sub is None or _blank(sub.get(key)):
            yield f"subscription.{key}", "is required when isRecurring is true"


def _address_errors(address: object) -> Iterator[tuple[str, str]]:
    if not isinstance(address, dict) or address.get("countryCode") != "US":
        return
    if _blank(address.get("state")):
        yield "billingAddress.state", "is required when billingAddress.countryCode is US"
    zip_code = address.get("zipCode")
    if isinstance(zip_code, str) and zip_code.strip() and not _US_ZIP.fullmatch(zip_code):
        yield "billingAddress.zipCode", "must be a US ZIP code: 5 digits, or ZIP+4 (78701-1234)"


def _card_expiry_errors(card: object, today: date) -> Iterator[tuple[str, str]]:
    if not isinstance(card, dict):
        return
    month = _valid(_MONTH_CHECK, card.get("expMonth"))
    year = _valid(_YEAR_CHECK, card.get("expYear"))
    if month is None or year is None or (year, month) >= (today.year, today.month):
        return
    path = "card.expMonth" if year == today.year else "card.expYear"
    yield path, f"the card expired at the end of {month:02d}/{year} (today is {today})"


def _payment_count_errors(sub: object) -> Iterator[tuple[str, str]]:
    if not isinstance(sub, dict):
        return
    number = _valid(_COUNT_CHECK, sub.get("paymentNumber"))
    total = _valid(_COUNT_CHECK, sub.get("totalPayments"))
    if number is not None and total is not None and number > total:
        yield "subscription.paymentNumber", "must not be greater than subscription.totalPayments"


# ---------------------------------------------------------------- request bodies


def parse_declines_body(body: object) -> list[object]:
    """The items of a body: one decline object, or ``{"declines": [...]}``; else ValueError."""
    if not isinstance(body, dict):
        raise ValueError('the body must be one decline object or {"declines": [...]}')
    if "declines" not in body:
        return [body]
    items = body["declines"]
    if set(body) != {"declines"}:
        raise ValueError('a batch body has only the key "declines"; put each decline in its list')
    if not isinstance(items, list):
        raise ValueError('"declines" must be a list of decline objects')
    if not items:
        raise ValueError('"declines" is empty; send at least one decline')
    return list(items)
