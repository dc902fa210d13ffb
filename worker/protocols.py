"""The small interfaces that let the FlexFactor client share state across processes.

Implementations: ``worker.sharedstate`` (Redis, or files in the embedded mode) and in-memory
ones for a single process (tests, scripts).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class CachedToken:
    """An OAuth access token and its expiry instant in epoch milliseconds (FlexFactor's unit)."""

    access_token: str
    expires_ms: int


class TokenCache(Protocol):
    """Where every worker process finds the current FlexFactor access token."""

    def get(self) -> CachedToken | None:
        """The cached token, or None."""
        ...

    def set(self, token: CachedToken) -> None:
        """Store a fresh token (it may drop itself at ``expires_ms``)."""
        ...

    def invalidate(self, access_token: str) -> None:
        """Drop the cached token, but only if it is still ``access_token`` (a 401 proved it bad)."""
        ...

    def fetch_lock(self) -> AbstractContextManager[None]:
        """Held while one process fetches a new token, so N processes do not fetch N tokens."""
        ...


class RateLimitWaitTooLong(Exception):
    """The limiter would have to wait longer than the caller allows."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"rate limiter wait of {wait_s:.2f}s exceeds the allowed maximum")
        self.wait_s = wait_s


class RateLimiter(Protocol):
    """One limit for every process that calls FlexFactor."""

    def acquire(self, max_wait_s: float = 30.0) -> float:
        """Block until one request may be sent; return the seconds waited.

        Raises ``RateLimitWaitTooLong`` (without taking a slot) if the wait would exceed
        ``max_wait_s``.
        """
        ...

    def penalize(self, retry_after_s: float) -> None:
        """FlexFactor answered 429: no process sends anything for ``retry_after_s`` seconds."""
        ...
