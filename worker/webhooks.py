"""FlexFactor webhooks (fact sheet §6): verify, store, dedupe at the edge; apply in a task.

Receiving (``receive_webhook``, called by ``POST /v1/flexfactor/webhooks``):

* The raw body is verified with ``worker.flexfactor.signing`` before anything trusts it. The host
  in the signed string is the host of OUR webhook URL (no scheme, no port); that is what the
  request's ``Host`` header carries, so the route passes the Host header with any port stripped.
  A reverse proxy in front of the API must forward the original Host.
* ``FLEXFACTOR_WEBHOOK_KEY`` may hold several base64 keys separated by commas (key rotation).
  Without a key every delivery is refused with reason ``no_key_configured``.
* Every delivery is stored in ``webhook_events``, verified or not. A refused one (401) changes
  no order; if its body names a PENDING order, that order's next status poll is brought forward
  (the Hyperswitch answer to a failed signature: trust nothing, ask FlexFactor).
* A verified event's identity is ``OrderId:Event:ConfirmationId`` (plus ``TimeStamp`` for events
  that can legitimately happen twice to one order, such as two partial refunds); events without
  an ``OrderId`` (payouts) are identified by a hash of their body. A re-delivery hits the unique
  index: it is kept with ``dedupe_key`` NULL and outcome ``duplicate`` and processed no further.
* A correctly signed body that is not a JSON event is FlexFactor's bug: it is kept with outcome
  ``malformed`` and acknowledged (200), since a re-delivery would carry the same bytes.
* The task ``flexmit.webhook`` is sent after commit; ``sweep_unprocessed`` re-sends it for events
  a lost message left behind. Nonce replay is checked in Redis when there is one, else in this
  process; a replay that slips through (embedded mode, several API processes) is still deduped.

Processing (``process_webhook_event``, ``sweep_unprocessed``) lives in
``worker.webhook_process`` and is re-exported here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import redis
import structlog
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker import metrics
from worker.db.models import WebhookEvent
from worker.dispatch import send_tasks
from worker.flexfactor.signing import H_NONCE, NonceCache, WebhookVerificationError, verify_webhook
from worker.orders import State, as_utc, utcnow
from worker.webhook_process import (
    EVENT_STATES,
    NOTE_EVENTS,
    WEBHOOK_TASK,
    find_order,
    process_webhook_event,
    sweep_unprocessed,
)

if TYPE_CHECKING:
    from worker.runtime import Runtime
    from worker.settings import Settings

log = structlog.get_logger(__name__)

__all__ = ["ReceiveResult", "process_webhook_event", "receive_webhook", "sweep_unprocessed"]

REFUSED_BODY_MAX = 16_384  # bytes of an unverified body worth keeping for an operator
RECEIVED = {"received": True}

REPEATABLE_EVENTS = frozenset({"order.refunded", "challenge.attempted"})


@dataclass(frozen=True)
class ReceiveResult:
    """What the route answers, and what was stored."""

    status_code: int
    answer: dict[str, Any]
    outcome: str
    event_pk: int | None = None


@dataclass(frozen=True)
class Envelope:
    """The PascalCase fields of a webhook body (§6.3), as far as they are present."""

    raw: dict[str, Any]
    event: str | None
    ff_order_id: str | None
    external_order_id: str | None
    confirmation_id: str | None
    timestamp: str | None
    is_resent: bool | None


def _text(raw: dict[str, Any], name: str, limit: int) -> str | None:
    value = raw.get(name)
    if isinstance(value, str | int) and not isinstance(value, bool) and str(value).strip():
        # A JSON "\ud800" escape decodes to a lone surrogate, which no database can store,
        # and PostgreSQL text cannot hold NUL: both are dropped from the indexed copies.
        text = str(value).encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
        return text.strip()[:limit] or None
    return None


def parse_envelope(body: bytes) -> Envelope | None:
    """The event fields of ``body``; None if it is not a JSON object."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        return None
    if not isinstance(raw, dict):
        return None
    resent = raw.get("IsResent")
    return Envelope(raw, _text(raw, "Event", 64), _text(raw, "OrderId", 64),
                    _text(raw, "ExternalOrderId", 255), _text(raw, "ConfirmationId", 64),
                    _text(raw, "TimeStamp", 64), resent if isinstance(resent, bool) else None)


def dedupe_key(env: Envelope) -> str:
    """The event's identity: equal for every delivery of one event, whatever ``IsResent`` says."""
    if env.ff_order_id:
        key = f"{env.ff_order_id}:{env.event}:{env.confirmation_id}"
        if env.event in REPEATABLE_EVENTS:
            key += f":{env.timestamp}"
    else:
        body = {k: v for k, v in env.raw.items() if k != "IsResent"}
        key = "body:" + _sha256(json.dumps(body, sort_keys=True, default=str))
    return key if len(key) <= 255 else "sha256:" + _sha256(key)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="replace")).hexdigest()


def webhook_keys(settings: Settings) -> list[str]:
    """The configured subscriber keys (comma-separated for rotation); empty if none."""
    secret = settings.flexfactor_webhook_key
    raw = secret.get_secret_value() if secret is not None else ""
    return [k.strip() for k in raw.split(",") if k.strip()]


@lru_cache(maxsize=4)
def _local_nonces(ttl_s: int) -> NonceCache:
    return NonceCache(ttl_s=ttl_s)  # process-wide: one per TTL, shared by every request


def nonce_checker(rt: Runtime) -> Callable[[str], bool]:
    """``seen_before`` of the shared nonce store (Redis), else of this process's store."""
    from worker.sharedstate import RedisNonceCache

    # A date may be off by the tolerance either way, so a nonce must outlive twice that.
    ttl = 2 * rt.settings.webhook_tolerance_s + 60
    local = _local_nonces(ttl)
    if rt.redis is None:
        return local.seen_before
    shared = RedisNonceCache(rt.redis, ttl_s=ttl)

    def seen_before(nonce: str) -> bool:
        try:
            return shared.seen_before(nonce)
        except redis.RedisError:  # Redis down: keep receiving; the dedupe key still holds
            log.warning("webhook.nonce_store_unavailable")
            return local.seen_before(nonce)

    return seen_before


def verify_delivery(rt: Runtime, body: bytes, headers: Mapping[str, str], host: str) -> str | None:
    """None if the delivery is authentic and fresh, else the reason it is refused."""
    keys = webhook_keys(rt.settings)
    if not keys:
        return "no_key_configured"
    try:
        verify_webhook(body, headers, key_b64=keys, host=host,
                       tolerance_s=rt.settings.webhook_tolerance_s, nonce_seen=nonce_checker(rt))
    except WebhookVerificationError as exc:
        return exc.reason
    except ValueError:  # our own key is not base64: a configuration error, no key material
        return "key_invalid"
    return None


def receive_webhook(rt: Runtime, body: bytes, headers: Mapping[str, str],
                    host: str) -> ReceiveResult:
    """Verify, store and (after commit) enqueue one delivery; never raises for any body."""
    now = utcnow()
    metrics.WEBHOOKS_RECEIVED.inc()
    reason = verify_delivery(rt, body, headers, host)
    if reason is not None:
        return _refuse(rt, body, headers, reason, now)
    metrics.WEBHOOKS_VERIFIED.inc()
    env = parse_envelope(body)
    if env is None or env.event is None:
        metrics.WEBHOOKS_MALFORMED.inc()
        pk = _store(rt, _row(body, headers, env, now, verified=True, outcome="malformed"))
        log.warning("webhook.malformed", event_pk=pk)
        return ReceiveResult(200, RECEIVED, "malformed", pk)
    return _accept(rt, body, headers, env, now)


def _row(body: bytes, headers: Mapping[str, str], env: Envelope | None, now: datetime, *,
         verified: bool, outcome: str | None, reason: str | None = None) -> WebhookEvent:
    """A ``webhook_events`` row; settled at once unless ``outcome`` is None (to be processed)."""
    nonce = next((v for k, v in headers.items() if k.lower() == H_NONCE), None)
    return WebhookEvent(
        received_at=now, verified=verified, reject_reason=reason,
        nonce=nonce[:64] if nonce else None, event=env and env.event,
        ff_order_id=env and env.ff_order_id, external_order_id=env and env.external_order_id,
        confirmation_id=env and env.confirmation_id, is_resent=env and env.is_resent,
        # PostgreSQL text cannot hold NUL; the body is kept readable, not byte-exact.
        body=body.decode("utf-8", errors="replace").replace("\x00", "\ufffd"),
        processed_at=None if outcome is None else now, outcome=outcome,
    )


def _store(rt: Runtime, row: WebhookEvent) -> int:
    with rt.sessions() as session:
        session.add(row)
        session.commit()
        return row.id


def _refuse(rt: Runtime, body: bytes, headers: Mapping[str, str], reason: str,
            now: datetime) -> ReceiveResult:
    metrics.WEBHOOKS_REJECTED.labels(reason).inc()
    kept = body[:REFUSED_BODY_MAX]
    env = parse_envelope(kept) if len(body) <= REFUSED_BODY_MAX else None
    row = _row(kept, headers, env, now, verified=False, outcome="rejected", reason=reason)
    with rt.sessions() as session:
        session.add(row)
        if env is not None:
            _poll_sooner(session, env, now)
        session.commit()
    log.warning("webhook.rejected", reason=reason, event_pk=row.id)
    return ReceiveResult(401, {"error": reason}, "rejected", row.id)


def _poll_sooner(session: Session, env: Envelope, now: datetime) -> None:
    """An unverified body may still be a genuine event: ask FlexFactor about that order soon.

    Only the due time of a status poll changes, never a state, so a forger gains nothing.
    """
    order = find_order(session, env.ff_order_id, env.external_order_id)
    if order is not None and order.state == State.PENDING and (
            order.next_check_at is None or as_utc(order.next_check_at) > now):
        order.next_check_at = now


def _accept(rt: Runtime, body: bytes, headers: Mapping[str, str], env: Envelope,
            now: datetime) -> ReceiveResult:
    row = _row(body, headers, env, now, verified=True, outcome=None)
    row.dedupe_key, row.dispatched_at = dedupe_key(env), now
    with rt.sessions() as session:
        seen = session.scalar(select(WebhookEvent.id).where(
            WebhookEvent.dedupe_key == row.dedupe_key))
        if seen is None:
            order = find_order(session, env.ff_order_id, env.external_order_id)
            row.order_pk = order.id if order is not None else None
            session.add(row)
            try:
                session.commit()
            except IntegrityError:  # a concurrent delivery of the same event won the insert
                session.rollback()
                seen = -1
    if seen is not None:
        return _duplicate(rt, body, headers, env, now)
    _count_first_delivery(env, row.order_pk)
    send_tasks(rt.celery, WEBHOOK_TASK, [row.id])
    log.info("webhook.received", ff_event=env.event, event_pk=row.id, is_resent=env.is_resent)
    return ReceiveResult(200, RECEIVED, "accepted", row.id)


def _duplicate(rt: Runtime, body: bytes, headers: Mapping[str, str], env: Envelope,
               now: datetime) -> ReceiveResult:
    metrics.WEBHOOKS_DUPLICATE.inc()
    pk = _store(rt, _row(body, headers, env, now, verified=True, outcome="duplicate"))
    log.info("webhook.duplicate", ff_event=env.event, event_pk=pk, is_resent=env.is_resent)
    return ReceiveResult(200, RECEIVED, "duplicate", pk)


def _count_first_delivery(env: Envelope, order_pk: int | None) -> None:
    name = env.event or ""
    known = name in EVENT_STATES or name in NOTE_EVENTS
    metrics.WEBHOOK_EVENTS.labels(name if known else "other").inc()
    if order_pk is None and not name.startswith("payout."):
        metrics.WEBHOOKS_UNKNOWN_ORDER.inc()

