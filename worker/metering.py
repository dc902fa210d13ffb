"""Metrics at the two seams the FlexFactor client exposes: each HTTP attempt and each wait
for the shared rate limit. ``worker.runtime`` wires both in; nothing here changes behaviour."""

from __future__ import annotations

from typing import TYPE_CHECKING

from worker import attempts, metrics
from worker.logging import bind_context
from worker.protocols import RateLimitWaitTooLong

if TYPE_CHECKING:
    from worker.flexfactor.client import AttemptRecord
    from worker.protocols import RateLimiter


def observe_attempt(record: AttemptRecord) -> None:
    """Count one FlexFactor attempt (route, outcome, latency, 429, error class)."""
    route = record.route
    metrics.FLEXFACTOR_CALLS.labels(route, record.outcome).inc()
    metrics.FLEXFACTOR_LATENCY.labels(route).observe(record.latency_ms / 1000.0)
    if record.status_code == 429:
        metrics.FLEXFACTOR_429.labels(route).inc()
    if record.error_type is not None:
        metrics.FLEXFACTOR_ERRORS.labels(route, record.error_type).inc()


def record_attempt(record: AttemptRecord) -> None:
    """The client's ``on_attempt`` hook: audit rows (``worker.attempts``), metrics, and the
    FlexFactor ``traceId`` bound to every later log line of this task or request."""
    attempts.record(record)
    observe_attempt(record)
    if record.trace_id:
        bind_context(trace_id=record.trace_id)


class MeteredLimiter:
    """A RateLimiter that reports how long each request waited for its slot."""

    def __init__(self, inner: RateLimiter) -> None:
        self.inner = inner

    def acquire(self, max_wait_s: float = 30.0) -> float:
        """The inner ``acquire``; the wait (or the refusal) is counted."""
        try:
            waited = self.inner.acquire(max_wait_s)
        except RateLimitWaitTooLong:
            metrics.RATE_LIMIT_GAVE_UP.inc()
            raise
        metrics.RATE_LIMIT_WAIT.observe(waited)
        return waited

    def penalize(self, retry_after_s: float) -> None:
        """The inner ``penalize`` (FlexFactor said 429: every process waits)."""
        self.inner.penalize(retry_after_s)

