"""Collect the FlexFactor client's per-request records for the task that made them.

The client reports every HTTP attempt to ``record``; a task wraps its call in ``collecting()`` and
stores what it got as ``attempts`` rows (idempotencyKey, route, outcome, latency, traceId).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_sink: ContextVar[list[Any] | None] = ContextVar("flexmit_attempt_sink", default=None)


def record(attempt: Any) -> None:
    """The client's ``on_attempt`` hook: keep the record if a task is collecting."""
    sink = _sink.get()
    if sink is not None:
        sink.append(attempt)


@contextmanager
def collecting() -> Iterator[list[Any]]:
    """Collect every attempt made inside the block."""
    sink: list[Any] = []
    token = _sink.set(sink)
    try:
        yield sink
    finally:
        _sink.reset(token)
