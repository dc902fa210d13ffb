"""May billing retry this charge itself? An O(1) answer for billing systems that ask every retry.

The database is the truth (``suppressions`` + the order's state); a Redis key per order, with the
window's end as its TTL, answers without touching the database. Keys are refreshed after every
commit that changed an order's suppression, and rebuilt from the database on a miss.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import redis
from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.db.models import Order, RejectedDecline, Suppression
from worker.orders import FINAL, RETRY_ALLOWED, State, as_utc, utcnow

KEY = "flexmit:sup:{}"
LIFTED_TTL_S = 7 * 24 * 3600
BULK_MIN = 50  # from this many changed orders on, refresh with set-based queries
BULK_CHUNK = 1000


@dataclass(frozen=True)
class Answer:
    """What billing is told (CONTRACT.md ``GET /v1/suppressions/{orderId}``)."""

    orderId: str
    retryAllowed: bool
    until: str | None
    reason: str


def decide(order: Order | None, sup: Suppression | None, now: datetime, order_id: str) -> Answer:
    """The suppression answer for one order at ``now``."""
    if order is None:
        return Answer(order_id, True, None, "unknown_order")
    return _decide(order.state, sup.until if sup is not None else order.expiry_at, now, order_id)


def _decide(state_name: str, until_at: datetime, now: datetime, order_id: str) -> Answer:
    """``decide`` from the two values it needs (the bulk refresh reads only these columns)."""
    state = State(state_name)
    if state in RETRY_ALLOWED:
        return Answer(order_id, True, None, state.lower())
    if state in FINAL:  # approved, refunded, chargeback: it was paid, never charge again
        return Answer(order_id, False, None, "paid_by_flexfactor")
    until = as_utc(until_at)
    if now >= until:
        return Answer(order_id, True, None, "expired")
    return Answer(order_id, False, until.isoformat().replace("+00:00", "Z"),
                  "rescue_in_progress")


def lookup(session: Session, cache: redis.Redis | None, order_id: str,
           now: datetime | None = None) -> Answer:
    """The answer for ``order_id``: from Redis when cached, else the database (then cached)."""
    now = now or utcnow()
    if cache is not None:
        raw = _cache_get(cache, order_id)
        if raw is not None:
            return Answer(**json.loads(raw))
    answer = _from_db(session, order_id, now)
    if cache is not None:
        _cache_put(cache, answer, now)
    return answer


def refresh(session: Session, cache: redis.Redis | None, order_ids: set[str]) -> None:
    """Re-cache the answers of orders whose suppression changed (call after commit)."""
    if cache is None:
        return
    if len(order_ids) >= BULK_MIN:
        refresh_many(session, cache, order_ids)
        return
    now = utcnow()
    for order_id in order_ids:
        _cache_put(cache, _from_db(session, order_id, now), now)


def refresh_many(session: Session, cache: redis.Redis, order_ids: Iterable[str]) -> None:
    """``refresh`` for a big batch: one query per thousand orders, one Redis pipeline each.

    Gives the same answers as ``_from_db`` one by one (orders missing here, e.g. rejected
    ones, go that way).
    """
    now = utcnow()
    ids = list(order_ids)
    for start in range(0, len(ids), BULK_CHUNK):
        chunk = ids[start:start + BULK_CHUNK]
        rows = session.execute(
            select(Order.order_id, Order.state, Order.expiry_at, Suppression.until)
            .outerjoin(Suppression, Suppression.order_pk == Order.id)
            .where(Order.order_id.in_(chunk))
        )
        answers = {oid: _decide(state, until if until is not None else expiry, now, oid)
                   for oid, state, expiry, until in rows}
        answers.update({oid: _from_db(session, oid, now) for oid in chunk if oid not in answers})
        with contextlib.suppress(redis.RedisError):
            pipe = cache.pipeline(transaction=False)
            for answer in answers.values():
                _cache_put(pipe, answer, now)
            pipe.execute()


def _from_db(session: Session, order_id: str, now: datetime) -> Answer:
    order = session.scalar(select(Order).where(Order.order_id == order_id))
    if order is None:
        rejected = session.scalar(
            select(RejectedDecline.id).where(RejectedDecline.order_id == order_id).limit(1)
        )
        if rejected is not None:
            return Answer(order_id, True, None, "rejected")
    sup = session.get(Suppression, order.id) if order is not None else None
    return decide(order, sup, now, order_id)


def _cache_get(cache: redis.Redis, order_id: str) -> bytes | None:
    try:
        return cache.get(KEY.format(order_id))  # type: ignore[return-value]
    except redis.RedisError:
        return None  # the database still answers


def _cache_put(cache: redis.Redis, answer: Answer, now: datetime) -> None:
    if answer.reason == "unknown_order":
        return  # an order may be created a moment later; never cache its absence
    if answer.until is not None:
        ttl = int((datetime.fromisoformat(answer.until) - now).total_seconds()) or 1
    else:
        ttl = LIFTED_TTL_S
    with contextlib.suppress(redis.RedisError):
        # vars(): the same JSON as dataclasses.asdict (flat fields), without its deep copy
        cache.set(KEY.format(answer.orderId), json.dumps(vars(answer)), ex=max(ttl, 1))


def commit_and_refresh(session: Session, cache: redis.Redis | None) -> None:
    """Commit, then refresh the cached answers the transaction changed."""
    changed: set[str] = session.info.pop("suppression_changed", set())
    orders: dict[str, Order] = session.info.pop("suppression_orders", {})
    session.commit()
    if cache is None:
        return
    now = utcnow()
    if orders:  # the order objects in hand answer without a query (until = expiry_at)
        pipe = cache.pipeline(transaction=False)
        for order_id, order in orders.items():
            _cache_put(pipe, decide(order, None, now, order_id), now)
        with contextlib.suppress(redis.RedisError):
            pipe.execute()
    if changed - orders.keys():
        refresh(session, cache, changed - orders.keys())
