"""The demo's generated daily batch: realistic declines, a few deliberately bad rows, as CSV.

Amounts are chosen so the sandbox's outcome table (``worker.sandbox.outcomes``: the plan is
picked by the amount's last two cents digits) produces a realistic mix of rescues, expiries,
cancellations, challenges and hard declines. Every bad row is bad for exactly one reason, so the
summary can show that each was refused for the reason it was made with.
"""

from __future__ import annotations

import csv
import random
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from worker.pan import has_pan

# Sandbox plan -> (lowest cents, highest cents, share of good rows). The cents ranges are the
# sandbox's table; the shares are what a merchant might see on a typical day.
PLAN_MIX: dict[str, tuple[int, int, float]] = {
    "approve": (95, 99, 0.12),    # APPROVED at once
    "complete": (0, 59, 0.38),    # SUBMITTED, later order.completed -> APPROVED
    "challenge": (85, 89, 0.05),  # CHALLENGE, later order.completed -> APPROVED
    "expire": (60, 79, 0.27),     # SUBMITTED, later order.expired -> EXPIRED
    "cancel": (80, 84, 0.06),     # SUBMITTED, later order.cancelled -> CANCELLED
    "decline": (90, 94, 0.12),    # DECLINED at once
}
# The order state each plan ends in (what the summary compares against).
PLAN_STATE = {"approve": "APPROVED", "complete": "APPROVED", "challenge": "APPROVED",
              "expire": "EXPIRED", "cancel": "CANCELLED", "decline": "DECLINED"}
# Bad-row kind -> the field intake must name in its errors.
BAD_KINDS: dict[str, str] = {
    "stale declinedAt (yesterday)": "declinedAt",
    "raw card number in card.token": "card.token",
    'amount "19.99" (dollars, not cents)': "amount",
    "missing payer.email": "payer.email",
    'currency "USD1"': "currency",
    "expiryDateUtc too soon (3 days)": "expiryDateUtc",
}
COLUMNS = (
    "orderId", "declinedAt", "amount", "currency", "isRecurring", "expiryDateUtc", "siteId",
    "subscription.id", "subscription.interval", "subscription.paymentNumber",
    "subscription.totalPayments", "subscription.price",
    "decline.pspTransactionId", "decline.responseCode", "decline.responseDescription",
    "decline.processor", "decline.avsResultCode", "decline.cvvResultCode",
    "card.token", "card.bin", "card.last4", "card.brand", "card.expMonth", "card.expYear",
    "card.holderName", "card.country",
    "payer.email", "payer.id", "payer.phone",
    "billingAddress.firstName", "billingAddress.lastName", "billingAddress.addressLine1",
    "billingAddress.city", "billingAddress.state", "billingAddress.zipCode",
    "billingAddress.countryCode",
)
PRICES_DOLLARS = (4, 9, 12, 15, 19, 24, 29, 39, 49, 79, 99)
FIRST = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim")
LAST = ("Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson")
CITIES = (("Austin", "TX", "78701"), ("Denver", "CO", "80202"), ("Seattle", "WA", "98101"),
          ("Boston", "MA", "02108"), ("Chicago", "IL", "60601"), ("Miami", "FL", "33101"))
DECLINE_CODES = (("05", "Do not honor"), ("51", "Insufficient funds"),
                 ("61", "Exceeds withdrawal limit"), ("91", "Issuer unavailable"))


@dataclass
class DemoBatch:
    """The generated rows (flat, dotted column names) and what the demo expects of them."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    planned_states: Counter[str] = field(default_factory=Counter)  # good rows, by end state
    bad_kinds: Counter[str] = field(default_factory=Counter)

    @property
    def bad(self) -> int:
        return sum(self.bad_kinds.values())


def luhn_check_digit(partial: str) -> str:
    """The digit that makes ``partial + digit`` pass the Luhn checksum."""
    total = 0
    for index, char in enumerate(reversed(partial)):
        value = int(char)
        if index % 2 == 0:  # these positions are doubled once the check digit is appended
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str((10 - total % 10) % 10)


def demo_card_number(rng: random.Random) -> str:
    """A Luhn-valid test VISA number (the 411111... test range), built here, never stored."""
    partial = "411111111111" + "".join(rng.choice("0123456789") for _ in range(3))
    return partial + luhn_check_digit(partial)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pan_free_id(prefix: str, length: int) -> str:
    """``prefix`` + random hex; redrawn when the digits happen to form a Luhn-valid run (intake
    would rightly refuse such an id as a raw card number)."""
    while True:
        value = f"{prefix}{uuid.uuid4().hex[:length]}"
        if not has_pan(value):
            return value


def _vault_token() -> str:
    return _pan_free_id("tok_demo_", 32)  # never a sandbox magic prefix (tok_approve, ...)


def _declined_at(rng: random.Random, now: datetime, tz: ZoneInfo) -> datetime:
    """A moment earlier today in the merchant's zone (a daily batch spans the day so far)."""
    local = now.astimezone(tz)
    midnight = datetime.combine(local.date(), time.min, tzinfo=tz)
    elapsed = (local - midnight).total_seconds()
    return now - timedelta(seconds=rng.uniform(0, elapsed * 0.9))


def _pick_plan(rng: random.Random) -> str:
    names = list(PLAN_MIX)
    return rng.choices(names, weights=[PLAN_MIX[n][2] for n in names])[0]


def _amount(rng: random.Random, plan: str) -> int:
    low, high, _ = PLAN_MIX[plan]
    return rng.choice(PRICES_DOLLARS) * 100 + rng.randint(low, high)


def good_row(rng: random.Random, index: int, now: datetime, tz: ZoneInfo,
             plan: str) -> dict[str, Any]:
    """One valid decline (flat) whose amount makes the sandbox follow ``plan``."""
    declined = _declined_at(rng, now, tz)
    amount = _amount(rng, plan)
    first, last = rng.choice(FIRST), rng.choice(LAST)
    city, state, zip_code = rng.choice(CITIES)
    code, text = rng.choice(DECLINE_CODES)
    return {
        "orderId": f"inv-{now.astimezone(tz):%Y-%m-%d}-{index:06d}",
        "declinedAt": _iso(declined), "amount": amount, "currency": "USD",
        "isRecurring": "true",
        # Half give their own rescue window, half take FLEXMIT_EXPIRY_DAYS.
        "expiryDateUtc": _iso(declined + timedelta(days=21)) if index % 2 else "",
        "siteId": "", "subscription.id": f"sub_{index:06d}", "subscription.interval": "monthly",
        "subscription.paymentNumber": rng.randint(2, 24), "subscription.totalPayments": "",
        "subscription.price": amount, "decline.pspTransactionId": _pan_free_id("ch_", 20),
        "decline.responseCode": code, "decline.responseDescription": text,
        "decline.processor": "acme", "decline.avsResultCode": "Y", "decline.cvvResultCode": "M",
        "card.token": _vault_token(), "card.bin": "411111", "card.last4": f"{index % 10000:04d}",
        "card.brand": "VISA", "card.expMonth": rng.randint(1, 12),
        "card.expYear": now.year + rng.randint(1, 4), "card.holderName": f"{first} {last}",
        "card.country": "US", "payer.email": f"{first}.{last}.{index}@example.com".lower(),
        "payer.id": f"cus_{index:06d}", "payer.phone": "",
        "billingAddress.firstName": first, "billingAddress.lastName": last,
        "billingAddress.addressLine1": f"{rng.randint(1, 999)} Main St",
        "billingAddress.city": city, "billingAddress.state": state,
        "billingAddress.zipCode": zip_code, "billingAddress.countryCode": "US",
    }


def spoil(row: dict[str, Any], kind: str, now: datetime, rng: random.Random) -> None:
    """Make ``row`` bad in exactly the way ``kind`` (a key of BAD_KINDS) names."""
    field_name = BAD_KINDS[kind]
    if field_name == "declinedAt":
        row["declinedAt"] = _iso(now - timedelta(days=1))
    elif field_name == "card.token":
        row["card.token"] = demo_card_number(rng)
    elif field_name == "amount":
        row["amount"] = "19.99"
    elif field_name == "payer.email":
        row["payer.email"] = ""
    elif field_name == "currency":
        row["currency"] = "USD1"
    else:
        row["expiryDateUtc"] = _iso(now + timedelta(days=3))


def make_batch(count: int, bad_fraction: float, *, now: datetime, tz: ZoneInfo,
               seed: int | None = None) -> DemoBatch:
    """``count`` declines, about ``bad_fraction`` of them bad (kinds in turn), the rest valid."""
    rng = random.Random(seed)
    bad_total = min(count, round(count * max(bad_fraction, 0.0)))
    bad_at = set(rng.sample(range(count), bad_total))
    kinds = list(BAD_KINDS)
    batch = DemoBatch()
    for index in range(count):
        plan = _pick_plan(rng)
        row = good_row(rng, index + 1, now, tz, plan)
        if index in bad_at:
            kind = kinds[batch.bad % len(kinds)]
            spoil(row, kind, now, rng)
            batch.bad_kinds[kind] += 1
        else:
            batch.planned_states[PLAN_STATE[plan]] += 1
        batch.rows.append(row)
    return batch


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` as the contract's CSV (dotted columns; an empty cell is absent)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path
