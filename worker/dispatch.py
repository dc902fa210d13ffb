"""Send evaluation messages after commit, and re-send what a lost message left behind.

The database is the truth; a message only says "look at order N". Sending happens after the
transaction that made the order due has committed. Dispatch is windowed: at most
``dispatch_window`` new orders wait in the broker at once (a minute of work at the rate limit);
the rest stay undispatched rows and the sweep tops the window up each pass, oldest first. The
sweep also finds due orders whose message looks lost (dispatched long ago, never claimed) and
sends again; duplicates are harmless because a task claims its order with a compare-and-set
before doing anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import structlog
from celery import Celery
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.celeryconfig import QUEUE
from worker.db.models import Order, state_is
from worker.orders import State, utcnow
from worker.settings import Settings
from worker.taskrepr import ids_argsrepr

log = structlog.get_logger(__name__)

EVALUATE_TASK = "flexmit.evaluate"
REMOTE_ACTION_TASK = "flexmit.remote_action"
SWEEP_BATCH = 1000
WINDOW_MIN = 100  # messages in flight at least, whatever the rate limit
WINDOW_SECONDS = 60  # the window holds this much work at the rate limit


def send_evaluate(celery: Celery, order_pks: Iterable[int], *, batch: int) -> int:
    """Publish evaluate messages naming up to ``batch`` orders each (``evaluate_batch``);
    returns how many orders were sent.

    A broker failure is logged, not raised: the orders are committed and due, so the sweep will
    send them later. Nothing is lost by a broker outage.
    """
    pks = [int(pk) for pk in order_pks]
    groups = [pks[i:i + batch] for i in range(0, len(pks), max(batch, 1))]
    sent = send_tasks(celery, EVALUATE_TASK, groups)
    return sum(len(group) for group in groups[:sent])


def dispatch_window(settings: Settings) -> int:
    """How many new orders may wait in the broker at once: a minute of work at the rate limit.

    Messages beyond that would only sit in the broker for hours; their rows stay undispatched
    (``dispatched_at`` NULL) and the sweep sends them as the window drains, oldest first.
    ``settings.dispatch_window`` (when the setting exists and is set) replaces the formula.
    """
    if settings.dispatch_window:
        return settings.dispatch_window
    return max(WINDOW_MIN, int(settings.flexfactor_rate_limit * WINDOW_SECONDS))


def in_flight(session: Session, now: datetime | None = None) -> int:
    """QUEUED orders dispatched but not (or no longer) claimed: their messages are waiting."""
    now = now or utcnow()
    return session.scalar(
        select(func.count()).select_from(Order)
        .where(state_is(State.QUEUED), Order.dispatched_at.is_not(None))
        .where(or_(Order.claimed_until.is_(None), Order.claimed_until < now))
    ) or 0


def window_room(session: Session, settings: Settings, now: datetime) -> int:
    """How many more new orders may be dispatched now (never negative)."""
    return max(0, dispatch_window(settings) - in_flight(session, now))


def redispatch_grace(session: Session, settings: Settings) -> timedelta:
    """How old an unclaimed dispatch must be before we call its message lost.

    A message legitimately waits while the messages ahead of it drain at the rate limit, so
    the grace grows with that backlog (the dispatched, unclaimed orders: at most about one
    window): twice the expected drain time, at least the setting. Undispatched rows are not
    in the broker and do not count.
    """
    backlog = in_flight(session)
    drain_s = 2 * backlog / max(settings.flexfactor_rate_limit * settings.rate_headroom, 0.1)
    return timedelta(seconds=max(settings.redispatch_after_s, drain_s))


def _unclaimed(now: datetime) -> Any:
    return or_(Order.claimed_until.is_(None), Order.claimed_until < now)


def _resend_query(session: Session, settings: Settings, now: datetime, limit: int) -> Any:
    stale = now - redispatch_grace(session, settings)
    states = [State.QUEUED, State.UNKNOWN]
    if settings.flexfactor_mode == "sync":
        states.append(State.PENDING)  # sync MIT: flexmit re-sends on its own ladder
    return (
        select(Order.id, Order.dispatched_at)
        .where(state_is(*states), Order.next_check_at <= now, _unclaimed(now))
        .where(or_(Order.state != State.QUEUED, Order.dispatched_at < stale))
        .order_by(Order.next_check_at, Order.id)
        .limit(limit)
    )


def _window_query(now: datetime, room: int) -> Any:
    return (
        select(Order.id, Order.dispatched_at)
        .where(state_is(State.QUEUED), Order.dispatched_at.is_(None))
        .where(Order.next_check_at <= now, _unclaimed(now))
        .order_by(Order.next_check_at, Order.id)
        .limit(room)
    )


def mark_dispatched(session: Session, order_pks: list[int], now: datetime) -> list[int]:
    """Stamp ``dispatched_at``; returns the ids this caller won (two sweeps never both send).

    Reads each row's current stamp, then compare-and-sets it (``stamp_dispatched``).
    """
    seen: list[tuple[int, datetime | None]] = []
    for start in range(0, len(order_pks), SWEEP_BATCH):
        chunk = order_pks[start:start + SWEEP_BATCH]
        found: dict[int, datetime | None] = {
            pk: at for pk, at in session.execute(select(Order.id, Order.dispatched_at)
                                                 .where(Order.id.in_(chunk)))}
        seen.extend((pk, found[pk]) for pk in chunk if pk in found)
    return stamp_dispatched(session, seen, now)


def stamp_dispatched(session: Session, seen: list[tuple[int, datetime | None]],
                     now: datetime) -> list[int]:
    """Compare-and-set ``dispatched_at`` from the stamps in ``seen`` (as the caller read them)
    to ``now``; returns the ids won, in input order. A row someone stamped since is lost.

    Set-based: rows are grouped by the stamp they had (a handful of groups: rows dispatched
    together share one), one ``UPDATE ... WHERE id IN (...) AND dispatched_at IS NOT
    DISTINCT FROM old`` per group and thousand rows.
    """
    groups: dict[datetime | None, list[int]] = {}
    for pk, old in seen:
        groups.setdefault(old, []).append(pk)
    won: set[int] = set()
    for old, pks in groups.items():
        for start in range(0, len(pks), SWEEP_BATCH):
            won.update(_stamp_group(session, pks[start:start + SWEEP_BATCH], old, now))
    return [pk for pk, _ in seen if pk in won]


def _stamp_group(session: Session, pks: list[int], old: datetime | None,
                 now: datetime) -> list[int]:
    cond = Order.dispatched_at.is_(None) if old is None else Order.dispatched_at == old
    result = session.execute(
        update(Order).where(Order.id.in_(pks), cond)
        .values(dispatched_at=now, dispatch_count=Order.dispatch_count + 1)
        .returning(Order.id)
        .execution_options(synchronize_session=False)
    )
    return list(result.scalars())


def due_for_action(session: Session, now: datetime, limit: int = SWEEP_BATCH) -> list[int]:
    """Ids of orders owing FlexFactor a call (a cancel), due now and not claimed."""
    query = (
        select(Order.id)
        .where(Order.pending_action.is_not(None), Order.next_check_at <= now)
        .where(or_(Order.claimed_until.is_(None), Order.claimed_until < now))
        .order_by(Order.next_check_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def send_tasks(celery: Celery, task: str, order_pks: Iterable[int | list[int]]) -> int:
    """Publish ``task(order_pk)`` for each id (or list of ids); returns messages sent. A dead
    broker is logged, the sweep retries."""
    sent = 0
    try:
        with celery.producer_or_acquire() as producer:
            for pk in order_pks:
                # Flower and the logs show "order_pk=123", never a repr of the arguments.
                celery.send_task(task, args=[pk], queue=QUEUE, producer=producer,
                                 argsrepr=ids_argsrepr(task, pk), kwargsrepr="{}")
                sent += 1
    except Exception as exc:  # kombu raises many types for a dead broker
        log.warning("dispatch.broker_unavailable", task=task, sent=sent,
                    error=type(exc).__name__)
    return sent


def sweep_due(session_factory: sessionmaker[Session], celery: Celery, settings: Settings,
              now: datetime | None = None) -> int:
    """Re-send lost and re-check messages, top the window up with undispatched orders (oldest
    first), stamp them, commit, then send; returns messages sent."""
    now = now or utcnow()
    with session_factory() as session:
        # The CAS compares with the stamps the due queries saw: a row another sweep stamped
        # in between is not sent twice.
        resend = list(session.execute(_resend_query(session, settings, now, SWEEP_BATCH)))
        resent = stamp_dispatched(session, [(pk, old) for pk, old in resend], now)
        room = window_room(session, settings, now)  # counts the re-sent ones just stamped
        due = list(session.execute(_window_query(now, room))) if room else []
        fresh = stamp_dispatched(session, [(pk, old) for pk, old in due], now)
        actions = due_for_action(session, now)
        session.commit()
    won = resent + fresh
    sent = send_evaluate(celery, won, batch=settings.evaluate_batch) if won else 0
    sent += send_tasks(celery, REMOTE_ACTION_TASK, actions) if actions else 0
    if won or actions:
        log.info("sweep.dispatched", evaluate=len(won), resent=len(resent), fresh=len(fresh),
                 actions=len(actions), sent=sent)
    return sent
