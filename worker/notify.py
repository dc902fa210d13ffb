"""Deliver the billing outbox (``billing_pushes``): signed POSTs, a retry ladder, in order.

``worker.orders.transition`` writes one ``BillingPush`` row in the transaction of every state
change that reaches or leaves a final state; this module delivers it (CONTRACT.md "Pushes to
billing", headers in ``worker.notify_signing``).

* Due = not delivered, ``next_attempt_at <= now``, not claimed, and no OLDER undelivered push of
  the same order still pending: billing sees an order's pushes in the order they happened.
* The beat sweep stamps each due push (``next_attempt_at`` moves to "message in flight" plus a
  grace, by compare-and-set, so two sweeps never both send) and sends ``flexmit.push``.
* The task claims the row by compare-and-set (lease, owner, expected attempt number) before the
  POST, so a duplicated message never delivers twice; 2xx sets ``delivered_at``, anything else
  schedules the next try on the ladder (the last step repeats until billing answers 2xx).
* No ``FLEXMIT_BILLING_CALLBACK_URL`` (or no secret): pushes are parked, never sent
  (``next_attempt_at`` NULL, ``last_error`` says why); billing may poll ``GET /v1/orders``.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import structlog
from celery import Celery
from sqlalchemy import exists, or_, select, update
from sqlalchemy.orm import Session, aliased, sessionmaker

from worker.celeryconfig import QUEUE
from worker.db.models import BillingPush
from worker.dispatch import redispatch_grace
from worker.metrics import PUSHES_FAILED, PUSHES_SENT
from worker.notify_signing import HEADER_EVENT_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP, sign_push
from worker.orders import utcnow
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.runtime import Runtime

log = structlog.get_logger(__name__)

PUSH_TASK = "flexmit.push"
DEFAULT_LADDER_S: tuple[int, ...] = (60, 300, 1800, 7200, 43200, 86400)
SWEEP_BATCH = 500
TIMEOUT_S = 5.0  # billing should answer fast; a slow receiver is retried, not waited on
MIN_LEASE_S = 30  # a claim must outlive the POST's timeout
NO_URL = "no callback configured"
NO_SECRET = "no callback secret configured"  # noqa: S105 (a message, not a secret)


@dataclass(frozen=True)
class PushOutcome:
    """What one ``deliver_push`` did; ``follow_up`` are (push_pk, attempts) now due to send."""

    result: str  # delivered | failed | parked | not_claimed
    follow_up: tuple[tuple[int, int], ...] = ()


def push_ladder(settings: Settings) -> list[int]:
    """Seconds between tries: ``settings.push_ladder_s`` when that exists, else the default."""
    ladder = getattr(settings, "push_ladder_s", None)
    return list(ladder) if ladder else list(DEFAULT_LADDER_S)


def retry_delay(ladder: list[int], failures: int) -> timedelta:
    """Wait after the ``failures``-th failed try (1-based); the last step repeats."""
    return timedelta(seconds=ladder[min(max(failures, 1), len(ladder)) - 1])


def unconfigured_reason(settings: Settings) -> str | None:
    """Why pushes cannot be sent with ``settings`` (None when URL and secret are set)."""
    if not settings.billing_callback_url:
        return NO_URL
    secret = settings.billing_callback_secret
    return NO_SECRET if secret is None or not secret.get_secret_value() else None


def _no_older_pending() -> Any:
    # A push waits while an older push of the same order is undelivered and still scheduled.
    older = aliased(BillingPush)
    return ~exists().where(
        older.order_pk == BillingPush.order_pk, older.id < BillingPush.id,
        older.delivered_at.is_(None), older.next_attempt_at.is_not(None),
    )


def _unclaimed(now: datetime) -> Any:
    return or_(BillingPush.claimed_until.is_(None), BillingPush.claimed_until < now)


def due_pushes(session: Session, now: datetime, limit: int = SWEEP_BATCH,
               order_pk: int | None = None) -> list[tuple[int, int]]:
    """``(push_pk, attempts)`` of pushes to try now, oldest first."""
    query = (
        select(BillingPush.id, BillingPush.attempts)
        .where(BillingPush.delivered_at.is_(None), BillingPush.next_attempt_at <= now)
        .where(_unclaimed(now), _no_older_pending())
        .order_by(BillingPush.id).limit(limit)
    )
    if order_pk is not None:
        query = query.where(BillingPush.order_pk == order_pk)
    return [(pk, attempts) for pk, attempts in session.execute(query)]


def mark_dispatched(session: Session, due: list[tuple[int, int]], now: datetime,
                    grace: timedelta) -> list[tuple[int, int]]:
    """Move each due push's ``next_attempt_at`` past the grace; returns those this caller won."""
    won = []
    for pk, attempts in due:
        result = session.execute(
            update(BillingPush)
            .where(BillingPush.id == pk, BillingPush.attempts == attempts)
            .where(BillingPush.delivered_at.is_(None), BillingPush.next_attempt_at <= now)
            .values(next_attempt_at=now + grace)
        )
        if result.rowcount:  # type: ignore[attr-defined]
            won.append((pk, attempts))
    return won


def park_due(session: Session, now: datetime, reason: str, limit: int = SWEEP_BATCH) -> int:
    """Park due pushes that cannot be sent (nothing configured); returns how many."""
    pks = [pk for pk, _ in due_pushes(session, now, limit)]
    if pks:
        session.execute(update(BillingPush).where(BillingPush.id.in_(pks))
                        .values(next_attempt_at=None, last_error=reason))
    return len(pks)


def send_pushes(celery: Celery, items: list[tuple[int, int]]) -> int:
    """Publish ``flexmit.push(push_pk, attempt)`` per item; a dead broker is logged only."""
    sent = 0
    try:
        with celery.producer_or_acquire() as producer:
            for pk, attempts in items:
                celery.send_task(PUSH_TASK, args=[pk, attempts], queue=QUEUE, producer=producer)
                sent += 1
    except Exception as exc:  # kombu raises many types; the sweep re-sends after the grace
        log.warning("push.broker_unavailable", sent=sent, error=type(exc).__name__)
    return sent


def sweep_pushes(session_factory: sessionmaker[Session], celery: Celery, settings: Settings,
                 now: datetime | None = None) -> int:
    """Stamp due pushes, commit, then send one task each; returns messages sent."""
    now = now or utcnow()
    reason = unconfigured_reason(settings)
    with session_factory() as session:
        if reason is not None:
            parked = park_due(session, now, reason)
            session.commit()
            if parked:
                log.warning("push.parked", count=parked, reason=reason)
            return 0
        won = mark_dispatched(session, due_pushes(session, now), now,
                              redispatch_grace(session, settings))
        session.commit()
    return send_pushes(celery, won) if won else 0


def claim_push(session: Session, push_pk: int, owner: str, now: datetime, lease_s: int,
               attempt: int | None = None) -> bool:
    """Compare-and-set claim of an undelivered, scheduled push whose elders are delivered."""
    query = (
        update(BillingPush)
        .where(BillingPush.id == push_pk, BillingPush.delivered_at.is_(None))
        .where(BillingPush.next_attempt_at.is_not(None), _unclaimed(now), _no_older_pending())
        .values(claimed_until=now + timedelta(seconds=max(lease_s, MIN_LEASE_S)),
                claim_owner=owner)
    )
    if attempt is not None:  # a message from before a failed try is stale: do nothing
        query = query.where(BillingPush.attempts == attempt)
    return bool(session.execute(query).rowcount)  # type: ignore[attr-defined]


def encode_body(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed) for ``payload``."""
    return json.dumps(payload, separators=(",", ":")).encode()


def post_push(http: httpx.Client, url: str, secret: str,
              payload: dict[str, Any]) -> tuple[int | None, str | None]:
    """POST one signed push; returns ``(http status, short error)`` (error None on 2xx)."""
    body = encode_body(payload)
    stamp = int(time.time())  # the receiver's freshness check uses its own wall clock
    headers = {"Content-Type": "application/json", HEADER_TIMESTAMP: str(stamp),
               HEADER_SIGNATURE: sign_push(body, secret, stamp),
               HEADER_EVENT_ID: str(payload.get("eventId", ""))}
    try:
        response = http.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        # The class name only: messages can quote the URL, which may carry a credential.
        return None, f"network: {type(exc).__name__}"
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"


def _finish(session: Session, push: BillingPush, owner: str, now: datetime,
            status: int | None, error: str | None, ladder: list[int]) -> None:
    values: dict[str, Any] = {"attempts": push.attempts + 1, "last_status": status,
                              "claimed_until": None, "claim_owner": None}
    if error is None:
        values.update(delivered_at=now, next_attempt_at=None, last_error=None)
    else:
        values.update(next_attempt_at=now + retry_delay(ladder, push.attempts + 1),
                      last_error=error[:255])
    session.execute(update(BillingPush)
                    .where(BillingPush.id == push.id, BillingPush.claim_owner == owner)
                    .values(**values))


def _park(session: Session, push_pk: int, reason: str) -> None:
    session.execute(update(BillingPush)
                    .where(BillingPush.id == push_pk, BillingPush.delivered_at.is_(None))
                    .values(next_attempt_at=None, last_error=reason))


def deliver_push(rt: Runtime, push_pk: int, *, owner: str, attempt: int | None = None,
                 now: datetime | None = None, http: httpx.Client | None = None) -> PushOutcome:
    """Claim push ``push_pk``, POST it to billing, record the answer (idempotent)."""
    now = now or utcnow()
    settings = rt.settings
    reason = unconfigured_reason(settings)
    with rt.sessions() as session:
        if reason is not None:
            _park(session, push_pk, reason)
            session.commit()
            return PushOutcome("parked")
        if not claim_push(session, push_pk, owner, now, settings.claim_lease_s, attempt):
            session.rollback()
            return PushOutcome("not_claimed")
        session.commit()
        push = session.get(BillingPush, push_pk)
        assert push is not None
    url, secret = settings.billing_callback_url, settings.billing_callback_secret
    assert url is not None and secret is not None
    status, error = _post(http, url, secret.get_secret_value(), push.payload)
    with rt.sessions() as session:
        _finish(session, push, owner, now, status, error, push_ladder(settings))
        follow_up = _follow_up(session, push, now, settings) if error is None else []
        session.commit()
    _log_and_count(push, status, error)
    return PushOutcome("delivered" if error is None else "failed", tuple(follow_up))


def _post(http: httpx.Client | None, url: str, secret: str,
          payload: dict[str, Any]) -> tuple[int | None, str | None]:
    if http is not None:
        return post_push(http, url, secret, payload)
    with httpx.Client(timeout=TIMEOUT_S, follow_redirects=False) as client:
        return post_push(client, url, secret, payload)


def _follow_up(session: Session, push: BillingPush, now: datetime,
               settings: Settings) -> list[tuple[int, int]]:
    # The next push of the same order was held back by this one: send it now, not next sweep.
    due = due_pushes(session, now, limit=1, order_pk=push.order_pk)
    return mark_dispatched(session, due, now, redispatch_grace(session, settings)) if due else []


def _log_and_count(push: BillingPush, status: int | None, error: str | None) -> None:
    fields = {"event_id": push.event_id, "order_id": push.payload.get("orderId"),
              "state": push.payload.get("state"), "status": status, "attempt": push.attempts + 1}
    if error is None:
        PUSHES_SENT.inc()
        log.info("push.delivered", **fields)
    else:
        PUSHES_FAILED.labels(reason="network" if status is None else "http").inc()
        log.warning("push.failed", error=error, **fields)


def deliver_due(rt: Runtime, *, owner: str, now: datetime | None = None,
                http: httpx.Client | None = None) -> list[PushOutcome]:
    """Deliver every due push in this process, in order (operators, tests); no broker."""
    now = now or utcnow()
    with rt.sessions() as session:
        queue = deque(due_pushes(session, now))
    outcomes: list[PushOutcome] = []
    while queue:
        pk, attempts = queue.popleft()
        outcome = deliver_push(rt, pk, owner=owner, attempt=attempts, now=now, http=http)
        outcomes.append(outcome)
        queue.extend(outcome.follow_up)  # the order's next push, unblocked by this delivery
    return outcomes
