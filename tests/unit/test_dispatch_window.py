"""Windowed dispatch: intake sends at most a window of evaluate messages, the sweep tops the
window up oldest first as orders are claimed, lost messages are re-sent, and two sweeps never
both send the same row."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from tests.conftest import embedded_runtime
from tests.factories import make_valid_decline
from worker.db.models import Order
from worker.dispatch import (
    dispatch_window,
    in_flight,
    redispatch_grace,
    stamp_dispatched,
    sweep_due,
)
from worker.intake_store import accept_declines
from worker.orders import State, utcnow
from worker.runtime import Runtime
from worker.settings import Settings


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    """Rate limit 1/s: the window is its minimum, 100 messages."""
    with embedded_runtime(database_url, tmp_path, FLEXFACTOR_RATE_LIMIT=1,
                          FLEXMIT_REDISPATCH_AFTER_S=60) as rt:
        yield rt


def sent_pks(rt: Runtime) -> list[int]:
    """Order ids named by the evaluate messages on the embedded broker, sorted."""
    folder = Path(rt.settings.broker_url.removeprefix("filesystem://")) / "queue"
    msgs = [json.loads(p.read_text()) for p in sorted(folder.glob("*.msg"))]
    return sorted(pk for m in msgs if m["headers"]["task"] == "flexmit.evaluate"
                  for pk in json.loads(base64.b64decode(m["body"]))[0][0])


def claim(rt: Runtime, pks: list[int]) -> None:
    """What a worker does with a message: the order leaves the window (here: it got an answer)."""
    with rt.sessions() as s:
        s.execute(update(Order).where(Order.id.in_(pks)).values(state=State.PENDING,
                                                                next_check_at=None))
        s.commit()


def order_pks(rt: Runtime) -> list[int]:
    with rt.sessions() as s:
        return list(s.scalars(select(Order.id).order_by(Order.id)))


def submit(rt: Runtime, n: int, prefix: str = "w") -> list[int]:
    declines = [make_valid_decline(orderId=f"{prefix}-{i:04d}") for i in range(n)]
    outcome = accept_declines(rt, declines, source="cli")
    return [r.order_pk for r in outcome.results if r.order_pk is not None]


def test_the_window_is_a_minute_of_work_at_the_rate_limit_and_at_least_100() -> None:
    def window(**values: Any) -> int:
        return dispatch_window(Settings(FLEXFACTOR_RATE_LIMIT=values["flexfactor_rate_limit"],
                                        FLEXMIT_DISPATCH_WINDOW=values.get("dispatch_window")))

    assert window(flexfactor_rate_limit=1) == 100
    assert window(flexfactor_rate_limit=10) == 600
    assert window(flexfactor_rate_limit=10, dispatch_window=None) == 600
    assert window(flexfactor_rate_limit=10, dispatch_window=25) == 25


def test_a_batch_bigger_than_the_window_sends_only_the_window_at_intake(runtime: Runtime) -> None:
    pks = submit(runtime, 250)
    assert sent_pks(runtime) == pks[:100]  # the oldest 100, each once
    with runtime.sessions() as s:
        assert in_flight(s) == 100
        waiting = s.scalar(select(func.count()).select_from(Order)
                           .where(Order.dispatched_at.is_(None), Order.dispatch_count == 0))
        assert waiting == 150
    # a single decline now waits too: the window is full
    [late] = submit(runtime, 1, prefix="late")
    assert late not in sent_pks(runtime)


def test_sweeps_top_the_window_up_oldest_first_as_orders_are_claimed(runtime: Runtime) -> None:
    rt = runtime
    pks = submit(rt, 250)
    assert sweep_due(rt.sessions, rt.celery, rt.settings) == 0  # window full: nothing more
    claim(rt, pks[:60])
    assert sweep_due(rt.sessions, rt.celery, rt.settings) == 60
    assert sent_pks(rt) == pks[:160]
    claim(rt, pks[60:160])
    assert sweep_due(rt.sessions, rt.celery, rt.settings) == 90  # the rest, all of it
    assert sent_pks(rt) == pks  # every order exactly once, in order
    assert sweep_due(rt.sessions, rt.celery, rt.settings) == 0
    with rt.sessions() as s:
        assert set(s.scalars(select(Order.dispatch_count))) == {1}


def test_a_lost_message_is_sent_again_after_the_grace(runtime: Runtime) -> None:
    rt = runtime
    pks = submit(rt, 150)
    with rt.sessions() as s:
        grace = redispatch_grace(s, rt.settings)
    assert grace >= timedelta(seconds=60)  # 100 in flight at 0.97/s: ~200 s of drain
    later = utcnow() + grace + timedelta(seconds=1)
    assert sweep_due(rt.sessions, rt.celery, rt.settings, now=later) == 100
    assert sent_pks(rt) == sorted(pks[:100] * 2)  # the same 100 again; the rest wait
    with rt.sessions() as s:
        assert in_flight(s) == 100


def test_undispatched_orders_do_not_stretch_the_grace(runtime: Runtime) -> None:
    rt = runtime
    submit(rt, 250)
    claim(rt, order_pks(rt)[:100])
    with rt.sessions() as s:
        assert in_flight(s) == 0
        assert redispatch_grace(s, rt.settings) == timedelta(seconds=60)


def test_two_sweeps_that_saw_the_same_rows_never_both_stamp_them(runtime: Runtime) -> None:
    rt = runtime
    pks = submit(rt, 150)
    waiting = pks[100:]
    with rt.sessions() as s:
        seen: list[tuple[int, datetime | None]] = [(pk, None) for pk in waiting]
        first = stamp_dispatched(s, seen, utcnow())
        second = stamp_dispatched(s, seen, utcnow() + timedelta(seconds=1))
        s.commit()
    assert (first, second) == (waiting, [])
