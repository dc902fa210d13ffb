"""should_retry() and backoff(): which failures the client tries again, and how long it waits."""

from __future__ import annotations

import pytest

from worker.flexfactor.errors import (
    FlexFactorAuthError,
    FlexFactorBusinessError,
    FlexFactorConflict,
    FlexFactorConnectionError,
    FlexFactorError,
    FlexFactorNotFound,
    FlexFactorRateLimited,
    FlexFactorServerError,
    FlexFactorTimeout,
    FlexFactorValidationError,
)
from worker.flexfactor.retry import MAX_BACKOFF_S, MAX_RETRY_AFTER_S, backoff, should_retry

ALWAYS = [
    FlexFactorRateLimited("x", retry_after_s=1.0, status_code=429),
    FlexFactorServerError("x", status_code=502),
    FlexFactorServerError("x", status_code=503),
    FlexFactorServerError("x", status_code=504),
    FlexFactorConnectionError("x"),
]
ONLY_REPLAY_SAFE = [FlexFactorTimeout("x"), FlexFactorServerError("x", status_code=500)]
NEVER = [
    FlexFactorValidationError("x", field_errors={}, status_code=400),
    FlexFactorAuthError("x", status_code=401),
    FlexFactorAuthError("x", status_code=403),
    FlexFactorNotFound("x", status_code=404),
    FlexFactorConflict("x", status_code=409),
    FlexFactorBusinessError("x", response_code="2001", status_code=200),
    FlexFactorError("x", status_code=405),
]


def _id(error: FlexFactorError) -> str:
    return f"{type(error).__name__}-{error.status_code}"


@pytest.mark.parametrize("error", ALWAYS, ids=_id)
@pytest.mark.parametrize("replay_safe", [True, False])
def test_always_retryable_within_the_attempt_budget(
    error: FlexFactorError, replay_safe: bool
) -> None:
    assert should_retry(error, attempt=1, max_attempts=3, replay_safe=replay_safe)
    assert should_retry(error, attempt=2, max_attempts=3, replay_safe=replay_safe)
    assert not should_retry(error, attempt=3, max_attempts=3, replay_safe=replay_safe)


@pytest.mark.parametrize("error", ONLY_REPLAY_SAFE, ids=_id)
def test_ambiguous_failures_retry_only_on_replay_safe_routes(error: FlexFactorError) -> None:
    assert should_retry(error, attempt=1, max_attempts=3, replay_safe=True)
    assert not should_retry(error, attempt=1, max_attempts=3, replay_safe=False)


@pytest.mark.parametrize("error", NEVER, ids=_id)
def test_final_failures_never_retry(error: FlexFactorError) -> None:
    assert not should_retry(error, attempt=1, max_attempts=5, replay_safe=True)


def test_backoff_follows_the_server_hint_capped() -> None:
    assert backoff(1, 7.0) == 7.0
    assert backoff(1, 600.0) == MAX_RETRY_AFTER_S == 60.0
    assert backoff(1, -1.0) == 0.0


def test_backoff_without_hint_is_full_jitter_exponential_and_capped() -> None:
    assert [backoff(n, None, rand=lambda: 1.0) for n in range(6)] == [
        0.25, 0.5, 1.0, 2.0, 4.0, MAX_BACKOFF_S
    ]  # fmt: skip
    assert backoff(10, None, rand=lambda: 1.0) == 5.0
    assert backoff(3, None, rand=lambda: 0.0) == 0.0
    assert all(0.0 <= backoff(2, None) <= 1.0 for _ in range(200))
