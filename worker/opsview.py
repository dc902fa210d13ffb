"""Operator numbers, straight from the database: ``flexmit status`` / ``report`` and /dashboard.

The day's funnel follows the declines *received* that merchant day as a cohort: what became of
them, whenever they resolved. ``sent`` counts orders with at least one ``/evaluate`` request
made; ``approved`` counts orders FlexFactor charged (later refunds and chargebacks included:
the charge was rescued); the rescue rate is approved / sent.
"""

from __future__ import annotations

import time as _time
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import exists, func, select
from sqlalchemy.orm import Session

from worker.celeryconfig import QUEUE, transport_options
from worker.db.models import Attempt, BillingPush, Order, RejectedDecline, WebhookEvent
from worker.money import format_cents
from worker.orders import State, as_utc, utcnow
from worker.sharedstate import REDIS_SCHEMES, state_dir

if TYPE_CHECKING:
    import redis

    from worker.runtime import Runtime
    from worker.settings import Settings

RESCUED = (State.APPROVED, State.PARTIALLY_REFUNDED, State.REFUNDED, State.CHARGEBACK)
EVALUATE_ROUTE = "/evaluate"
FAILURE_STATES = (State.FAILED, State.UNKNOWN)
LIMITER_KEY = "flexmit:rl:flexfactor"  # RedisGcraLimiter's default key prefix


def counts_by_state(session: Session, since: datetime | None = None,
                    until: datetime | None = None) -> dict[str, int]:
    """``{state: count}`` of orders (created in [since, until) when given)."""
    query = select(Order.state, func.count()).group_by(Order.state)
    if since is not None and until is not None:
        query = query.where(Order.created_at >= since, Order.created_at < until)
    return {state: n for state, n in session.execute(query)}


def oldest(session: Session, state: State) -> datetime | None:
    """When the oldest order still in ``state`` last changed."""
    found = oldest_order(session, state)
    return found[1] if found is not None else None


def oldest_order(session: Session, state: State) -> tuple[str, datetime] | None:
    """``(orderId, since)`` of the order that has been in ``state`` the longest."""
    row = session.execute(
        select(Order.order_id, Order.updated_at).where(Order.state == state)
        .order_by(Order.updated_at, Order.id).limit(1)
    ).first()
    return (row[0], as_utc(row[1])) if row is not None else None


def day_bounds(day: date, tz: Any) -> tuple[datetime, datetime]:
    """The merchant day ``day`` as a UTC half-open interval (23 or 25 hours across DST)."""
    start = datetime.combine(day, time.min, tzinfo=tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz).astimezone(UTC)
    return start, end


def rescued_by_currency(session: Session, since: datetime, until: datetime) -> dict[str, int]:
    """``{currency: cents}`` charged by FlexFactor for orders received in [since, until)."""
    query = (
        select(Order.currency, func.coalesce(func.sum(Order.amount_cents), 0))
        .where(Order.created_at >= since, Order.created_at < until, Order.state.in_(RESCUED))
        .group_by(Order.currency)
    )
    return {currency: int(cents) for currency, cents in session.execute(query)}


def _count(session: Session, query: Any) -> int:
    return int(session.scalar(query) or 0)


def funnel(session: Session, day: date, tz: Any) -> dict[str, Any]:
    """The day's funnel: received, rejected, sent, approved, expired, amount rescued, rate."""
    since, until = day_bounds(day, tz)
    states = counts_by_state(session, since, until)
    rejected = _count(session, select(func.count()).select_from(RejectedDecline).where(
        RejectedDecline.received_at >= since, RejectedDecline.received_at < until))
    sent = _count(session, select(func.count()).select_from(Order).where(
        Order.created_at >= since, Order.created_at < until,
        exists().where(Attempt.order_pk == Order.id, Attempt.route == EVALUATE_ROUTE)))
    rescued = rescued_by_currency(session, since, until)
    accepted = sum(states.values())
    approved = sum(states.get(s, 0) for s in RESCUED)
    return {"day": day.isoformat(), "received": accepted + rejected, "rejected": rejected,
            "accepted": accepted, "sent": sent, "approved": approved,
            "declined": states.get(State.DECLINED, 0), "expired": states.get(State.EXPIRED, 0),
            "cancelled": states.get(State.CANCELLED, 0), "failed": states.get(State.FAILED, 0),
            "pending": states.get(State.PENDING, 0),
            "in_flight": sum(states.get(s, 0) for s in (State.QUEUED, State.UNKNOWN)),
            "rescued_cents": sum(rescued.values()), "rescued": rescued,
            "rescue_rate": round(approved / sent, 4) if sent else 0.0, "by_state": states}


FUNNEL_ROWS = ("received", "rejected", "accepted", "sent", "approved", "declined", "expired",
               "cancelled", "failed", "pending", "in_flight")


def money_text(by_currency: dict[str, int]) -> str:
    """``{"USD": 1999}`` as ``19.99 USD`` (several currencies joined; none is ``0.00 USD``)."""
    if not by_currency:
        return format_cents(0, "USD")
    return " + ".join(format_cents(c, cur) for cur, c in sorted(by_currency.items()))


def error_summary(last_error: dict[str, Any] | None) -> str:
    """One line from an order's ``last_error``: type, traceId, the fields FlexFactor named."""
    if not last_error:
        return ""
    parts = [str(last_error.get("error") or "error")]
    fields = last_error.get("fieldErrors")
    if isinstance(fields, dict) and fields:
        parts.append("fields: " + ", ".join(sorted(map(str, fields))))
    if last_error.get("traceId"):
        parts.append(f"traceId {last_error['traceId']}")
    return "; ".join(parts)


def recent_failures(session: Session, limit: int = 20) -> list[dict[str, Any]]:
    """The latest FAILED and UNKNOWN orders, newest first, with a summary of their error."""
    rows = session.scalars(
        select(Order).where(Order.state.in_(FAILURE_STATES))
        .order_by(Order.updated_at.desc(), Order.id.desc()).limit(limit)
    )
    return [{"orderId": o.order_id, "state": o.state, "since": as_utc(o.updated_at),
             "amount": format_cents(o.amount_cents, o.currency), "checks": o.check_count,
             "error": error_summary(o.last_error)} for o in rows]


def outbox(session: Session) -> dict[str, int]:
    """Billing pushes not yet delivered (and parked ones), webhook events not yet processed."""
    undelivered = BillingPush.delivered_at.is_(None)
    return {
        "pushes_undelivered": _count(session, select(func.count()).select_from(BillingPush)
                                     .where(undelivered)),
        "pushes_parked": _count(session, select(func.count()).select_from(BillingPush)
                                .where(undelivered, BillingPush.next_attempt_at.is_(None))),
        "webhooks_unprocessed": _count(session, select(func.count()).select_from(WebhookEvent)
                                       .where(WebhookEvent.verified.is_(True),
                                              WebhookEvent.processed_at.is_(None))),
    }


def due_now(session: Session, now: datetime) -> int:
    """QUEUED / UNKNOWN orders whose next try is due (what the sweep is about to send)."""
    return _count(session, select(func.count()).select_from(Order).where(
        Order.state.in_([State.QUEUED, State.UNKNOWN]), Order.next_check_at <= now))


def snapshot(rt: Runtime, now: datetime | None = None) -> dict[str, Any]:
    """Everything the status views show, read in one session (JSON-ready but for datetimes)."""
    now = now or utcnow()
    today = now.astimezone(rt.settings.tz).date()
    with rt.sessions() as session:
        return {
            "now": now, "tz": rt.settings.merchant_tz, "by_state": counts_by_state(session),
            "funnel": funnel(session, today, rt.settings.tz),
            "oldest": {s.value: oldest_order(session, s)
                       for s in (State.QUEUED, State.UNKNOWN, State.PENDING)},
            "due_now": due_now(session, now), "outbox": outbox(session),
            "failures": recent_failures(session),
        }


def age_text(seconds: float) -> str:
    """A short human age: ``42 s``, ``7 min``, ``3 h 05 min``, ``2 d 4 h``."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 172800:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def queue_depth(settings: Settings) -> dict[str, Any]:
    """Messages waiting in the broker's ``flexmit`` queue (``ready``) and, on Redis, delivered
    but not yet acknowledged (``unacked``); ``error`` says why a number is missing."""
    url = settings.broker_url
    if url.startswith("filesystem://"):
        folder = Path(transport_options(url)["data_folder_in"])
        suffix = f".{QUEUE}.msg"  # kombu's name scheme; in-progress writes start with "."
        ready = sum(1 for p in folder.iterdir() if p.name.endswith(suffix)
                    and not p.name.startswith("."))
        return {"broker": "filesystem", "ready": ready, "unacked": None, "error": None}
    if url.startswith(REDIS_SCHEMES):
        return _redis_queue_depth(url)
    return {"broker": url.split(":", 1)[0], "ready": None, "unacked": None,
            "error": "queue depth is only read from Redis or filesystem brokers"}


def _redis_queue_depth(url: str) -> dict[str, Any]:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
    # kombu keeps one list per priority step: "flexmit", then "flexmit\x06\x16<step>".
    names = [QUEUE, *(f"{QUEUE}\x06\x16{step}" for step in range(1, 10))]
    try:
        with client.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.llen(name)
            pipe.hlen("unacked")
            *lengths, unacked = pipe.execute()
    except redis.RedisError as exc:
        return {"broker": "redis", "ready": None, "unacked": None,
                "error": f"broker unreachable ({type(exc).__name__})"}
    finally:
        client.close()
    return {"broker": "redis", "ready": int(sum(lengths)), "unacked": int(unacked),
            "error": None}


def limiter_state(settings: Settings, cache: redis.Redis | None) -> dict[str, Any]:
    """The shared FlexFactor limiter: ms until the next free request slot, seconds blocked
    by a 429 penalty, and the spacing it keeps (worker/ratelimit.py holds the same state)."""
    rate = settings.flexfactor_rate_limit * settings.rate_headroom
    out: dict[str, Any] = {"rate_per_s": round(rate, 3), "interval_ms": round(1000 / rate, 1),
                           "next_slot_ms": None, "blocked_s": None, "error": None}
    try:
        tat, blocked, now = _limiter_raw(settings, cache)
    except Exception as exc:  # a status view reports a dead store; it never crashes on it
        out["error"] = f"limiter state unreadable ({type(exc).__name__})"
        return out
    out["next_slot_ms"] = round(max(0.0, max(tat, blocked) - now) * 1000, 1)
    out["blocked_s"] = round(max(0.0, blocked - now), 2)
    return out


def _limiter_raw(settings: Settings, cache: redis.Redis | None) -> tuple[float, float, float]:
    """(TAT, blocked_until, now) in seconds, on the clock the limiter itself uses."""
    if cache is not None:
        sec, usec = cache.time()
        tat, blocked = cache.mget([f"{LIMITER_KEY}:tat", f"{LIMITER_KEY}:blocked_until"])
        return (float(tat or 0) / 1e6, float(blocked or 0) / 1e6, sec + usec / 1e6)
    directory = state_dir(settings)
    path = directory / "ratelimit-flexfactor.state" if directory is not None else None
    raw = path.read_text().split() if path is not None and path.exists() else []
    values = [float(v) for v in raw[:2]] if len(raw) >= 2 else [0.0, 0.0]
    return values[0], values[1], _time.time()
