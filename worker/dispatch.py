"""Send evaluation messages after commit, and re-send what a lost message left behind.

The database is the truth; a message only says "look at order N". Sending happens after the
transaction that made the order due has committed. The sweep finds due orders whose message looks
lost (dispatched long ago, never claimed) and sends again; duplicates are harmless because a task
claims its order with a compare-and-set before doing anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

import structlog
from celery import Celery
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from worker.celeryconfig import QUEUE
from worker.db.models import Order
from worker.orders import State, utcnow
from worker.settings import Settings

log = structlog.get_logger(__name__)

EVALUATE_TASK = "flexmit.evaluate"
REMOTE_ACTION_TASK = "flexmit.remote_action"
SWEEP_BATCH = 1000


def send_evaluate(celery: Celery, order_pks: Iterable[int]) -> int:
    """Publish one evaluate message per order; returns how many were sent.

    A broker failure is logged, not raised: the orders are committed and due, so the sweep will
    send them later. Nothing is lost by a broker outage.
    """
    return send_tasks(celery, EVALUATE_TASK, order_pks)


def redispatch_grace(session: Session, settings: Settings) -> timedelta:
    """How old an unclaimed dispatch must be before we call its message lost.

    A message legitimately waits while the backlog ahead of it drains at the rate limit, so
    the grace grows with the backlog: twice the expected drain time, at least the setting.
    """
    backlog = session.scalar(
        select(func.count()).select_from(Order).where(Order.state == State.QUEUED)
    ) or 0
    drain_s = 2 * backlog / max(settings.flexfactor_rate_limit * settings.rate_headroom, 0.1)
    return timedelta(seconds=max(settings.redispatch_after_s, drain_s))


def due_for_evaluate(session: Session, settings: Settings, now: datetime,
                     limit: int = SWEEP_BATCH) -> list[int]:
    """Ids of orders whose evaluate message should be (re-)sent now, oldest first."""
    stale = now - redispatch_grace(session, settings)
    states = [State.QUEUED, State.UNKNOWN]
    if settings.flexfactor_mode == "sync":
        states.append(State.PENDING)  # sync MIT: flexmit re-sends on its own ladder
    query = (
        select(Order.id)
        .where(Order.state.in_(states), Order.next_check_at <= now)
        .where(or_(Order.claimed_until.is_(None), Order.claimed_until < now))
        .where(or_(Order.dispatched_at.is_(None), Order.dispatched_at < stale,
                   Order.state != State.QUEUED))
        .order_by(Order.next_check_at)
        .limit(limit)
    )
    return list(session.scalars(query))


def mark_dispatched(session: Session, order_pks: list[int], now: datetime) -> list[int]:
    """Stamp ``dispatched_at``; returns the ids this caller won (two sweeps never both send).

    Non-QUEUED orders move ``next_check_at`` out of the way until the task reschedules them.
    """
    won: list[int] = []
    for pk in order_pks:
        old = session.scalar(select(Order.dispatched_at).where(Order.id == pk))
        cond = Order.dispatched_at.is_(None) if old is None else Order.dispatched_at == old
        result = session.execute(
            update(Order).where(Order.id == pk, cond).values(
                dispatched_at=now, dispatch_count=Order.dispatch_count + 1,
            )
        )
        if result.rowcount:  # type: ignore[attr-defined]
            won.append(pk)
    return won


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


def send_tasks(celery: Celery, task: str, order_pks: Iterable[int]) -> int:
    """Publish ``task(order_pk)`` for each id; a dead broker is logged, the sweep retries."""
    sent = 0
    try:
        with celery.producer_or_acquire() as producer:
            for pk in order_pks:
                celery.send_task(task, args=[pk], queue=QUEUE, producer=producer)
                sent += 1
    except Exception as exc:  # kombu raises many types for a dead broker
        log.warning("dispatch.broker_unavailable", task=task, sent=sent,
                    error=type(exc).__name__)
    return sent


def sweep_due(session_factory: sessionmaker[Session], celery: Celery, settings: Settings,
              now: datetime | None = None) -> int:
    """Find due orders, stamp them, commit, then send; returns messages sent."""
    now = now or utcnow()
    with session_factory() as session:
        won = mark_dispatched(session, due_for_evaluate(session, settings, now), now)
        actions = due_for_action(session, now)
        session.commit()
    sent = send_evaluate(celery, won) if won else 0
    sent += send_tasks(celery, REMOTE_ACTION_TASK, actions) if actions else 0
    if won or actions:
        log.info("sweep.dispatched", evaluate=len(won), actions=len(actions), sent=sent)
    return sent
