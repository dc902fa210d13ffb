"""When the HTTP client retries in-process (seconds), and how long it waits. Pure functions.

Longer waits (minutes, days) belong to Celery and the beat sweeps, not here.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from worker.flexfactor.errors import (
    FlexFactorConnectionError,
    FlexFactorError,
    FlexFactorRateLimited,
    FlexFactorServerError,
    FlexFactorTimeout,
)

MAX_RETRY_AFTER_S = 60.0  # never honour a server hint longer than this in-process
BASE_BACKOFF_S = 0.25  # first step of the exponential backoff
MAX_BACKOFF_S = 5.0  # cap of the exponential backoff (before jitter)
GATEWAY_STATUSES = frozenset({502, 503, 504})  # the gateway did not get an answer: try again


def should_retry(
    error: FlexFactorError, *, attempt: int, max_attempts: int, replay_safe: bool
) -> bool:
    """May attempt number ``attempt`` (1-based) that failed with ``error`` be tried again?

    429, 502/503/504 and "could not connect" are always retryable; a timeout or another 5xx
    only on a replay-safe route (the first request may have been processed). 4xx and business
    failures never are; a 401 is handled by the token renewal, not here.
    """
    if attempt >= max_attempts:
        return False
    if isinstance(error, FlexFactorRateLimited | FlexFactorConnectionError):
        return True
    if isinstance(error, FlexFactorServerError):
        return error.status_code in GATEWAY_STATUSES or replay_safe
    if isinstance(error, FlexFactorTimeout):
        return replay_safe
    return False


def backoff(
    attempt: int, retry_after_s: float | None, *, rand: Callable[[], float] = random.random
) -> float:
    """Seconds to wait before the next attempt: the server's hint (capped), else full jitter."""
    if retry_after_s is not None:
        return min(max(retry_after_s, 0.0), MAX_RETRY_AFTER_S)
    ceiling = min(BASE_BACKOFF_S * 2**attempt, MAX_BACKOFF_S)
    return ceiling * rand()
