"""Deterministic outcomes: what the sandbox does with each /evaluate.

The plan is fixed when the order is created, from the card token prefix if it has one, else
from the LAST TWO DIGITS of ``transaction.amount`` (cents):

| cents | plan      | first answer | final order status        | webhooks                       |
|-------|-----------|--------------|---------------------------|--------------------------------|
| 00-59 | complete  | SUBMITTED    | 7 Completed (APPROVED)    | order.completed                |
| 60-79 | expire    | SUBMITTED    | Expired (EXPIRED)         | order.expired                  |
| 80-84 | cancel    | SUBMITTED    | 2 Cancelled by the system | order.cancelled                |
| 85-89 | challenge | CHALLENGE    | 7 Completed (APPROVED)    | challenge.presented (at once), |
|       |           |              |                           | then order.completed           |
| 90-94 | decline   | DECLINED     | 2 Cancelled, at once      | none (no order.declined event) |
| 95-99 | approve   | APPROVED     | 7 Completed, at once      | order.completed (at once)      |

"first answer" is the managed-mode answer; sync mode answers PROCESSING instead of SUBMITTED.

Token prefixes override the amount (``paymentMethod.cardNumber``): ``tok_approve`` (APPROVED
at once), ``tok_decline`` (DECLINED at once), ``tok_expire`` (SUBMITTED then expired),
``tok_cancel`` (SUBMITTED then cancelled), ``tok_challenge`` (CHALLENGE then completed),
``tok_complete`` (SUBMITTED then completed). /tokenize hands out such tokens for the cards of
fact sheet §9: 4000002760003184 → ``tok_approve_*``, 4000300011112220 → ``tok_decline_*``.

Timing: a pending order is Draft (0) when created and Processing (4) a moment later; it reaches
its final status ``resolve_after_s`` (+ up to ``resolve_jitter_s``) after creation, or at
``expiryDateUtc`` if that comes first, in which case it EXPIRES. ``transactionType=AUTHORIZATION``
answers CAPTUREREQUIRED (status 5, webhook order.capturerequired) whatever the amount; /capture
completes it; it is auto-voided (Cancelled, order.cancelled) after ``capture_window_s``.

Expired orders: FlexFactor's int code for EXPIRED is NOT FOUND (§7.2); the sandbox reports
``status`` = ``expired_status_code`` (default 2) with ``statusName`` "Expired".

Mode (§3.8): *managed* answers SUBMITTED (or CHALLENGE / the immediate outcome) and re-sends of
the same orderId answer SUBMITTED while pending, then the final status. *sync* is the sandbox's
reading of the NOT FOUND Sync-MIT semantics: every /evaluate with the same orderId answers the
CURRENT state: PROCESSING while the background rescue runs (CHALLENGE for a challenge), then
APPROVED, EXPIRED, CANCELLED or DECLINED. The table applies to CIT and MIT alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Final = Literal["completed", "expired", "cancelled", "declined"]


@dataclass(frozen=True)
class Plan:
    """What will happen to an order: an immediate answer or a pending one, and its end."""

    name: str
    final: Final
    immediate: bool = False  # final at once (DECLINED / APPROVED)
    challenge: bool = False


PLANS = {
    "complete": Plan("complete", "completed"),
    "expire": Plan("expire", "expired"),
    "cancel": Plan("cancel", "cancelled"),
    "challenge": Plan("challenge", "completed", challenge=True),
    "decline": Plan("decline", "declined", immediate=True),
    "approve": Plan("approve", "completed", immediate=True),
}

_BY_CENTS = (
    (59, "complete"),
    (79, "expire"),
    (84, "cancel"),
    (89, "challenge"),
    (94, "decline"),
    (99, "approve"),
)

MAGIC_CARDS = {"4000002760003184": "tok_approve", "4000300011112220": "tok_decline"}


def plan_for(amount_cents: int, card: str) -> Plan:
    """The plan for an order: a ``tok_<plan>`` card prefix wins, else the amount's cents."""
    for name, plan in PLANS.items():
        if card.startswith(f"tok_{name}"):
            return plan
    cents = amount_cents % 100
    for upper, name in _BY_CENTS:
        if cents <= upper:
            return PLANS[name]
    raise AssertionError("unreachable: cents is 0..99")


FINAL_API_STATUS = {
    "completed": "APPROVED",
    "expired": "EXPIRED",
    "cancelled": "CANCELLED",
    "declined": "DECLINED",
}
