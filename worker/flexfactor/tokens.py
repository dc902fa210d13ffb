"""The FlexFactor access token: reused until shortly before it expires, fetched once at a time.

A ``TokenCache`` (in memory here; Redis or files in ``worker.sharedstate``) lets every process
share one token, and its ``fetch_lock`` makes N concurrent callers cause one fetch, not N.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from worker.protocols import CachedToken, TokenCache

DEFAULT_REFRESH_MARGIN_S = 60.0
LOCAL_REUSE_S = 5.0  # how long a process reuses the shared token before reading it again


class InMemoryTokenCache:
    """A TokenCache for one process (tests, scripts); thread-safe."""

    def __init__(self) -> None:
        self._token: CachedToken | None = None
        self._state = threading.Lock()
        self._fetch = threading.Lock()

    def get(self) -> CachedToken | None:
        """The cached token, or None."""
        with self._state:
            return self._token

    def set(self, token: CachedToken) -> None:
        """Store a fresh token."""
        with self._state:
            self._token = token

    def invalidate(self, access_token: str) -> None:
        """Drop the token, but only if it is still ``access_token``."""
        with self._state:
            if self._token is not None and self._token.access_token == access_token:
                self._token = None

    def fetch_lock(self) -> AbstractContextManager[None]:
        """Held while one thread fetches a new token."""
        return self._hold_fetch_lock()

    @contextmanager
    def _hold_fetch_lock(self) -> Iterator[None]:
        with self._fetch:
            yield


class TokenProvider:
    """Hands out a valid access token; fetches a new one only when needed, once at a time."""

    def __init__(
        self,
        fetch: Callable[[], CachedToken],
        cache: TokenCache,
        *,
        refresh_margin_s: float = DEFAULT_REFRESH_MARGIN_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._fetch = fetch
        self._cache = cache
        self._margin_s = refresh_margin_s
        self._clock = clock
        # The last token read from the shared cache, reused for LOCAL_REUSE_S: a busy worker
        # makes hundreds of calls a second and need not ask Redis for the token before each.
        self._local: CachedToken | None = None
        self._local_until = 0.0

    def get(self) -> str:
        """A token valid for at least ``refresh_margin_s`` more seconds (fetching if needed)."""
        token = self._fresh()
        if token is not None:
            return token
        with self._cache.fetch_lock():
            token = self._fresh()  # another thread or process may have fetched meanwhile
            if token is not None:
                return token
            fetched = self._fetch()
            self._cache.set(fetched)
            return fetched.access_token

    def renew(self, bad_token: str) -> str:
        """After a 401 with ``bad_token``: drop it (if still cached) and return a good token."""
        self._local = None
        self._cache.invalidate(bad_token)
        return self.get()

    def _fresh(self) -> str | None:
        now = self._clock()
        if self._local is not None and now < self._local_until and self._usable(self._local, now):
            return self._local.access_token
        cached = self._cache.get()
        if cached is None or not self._usable(cached, now):
            self._local = None
            return None
        self._local, self._local_until = cached, now + LOCAL_REUSE_S
        return cached.access_token

    def _usable(self, token: CachedToken, now: float) -> bool:
        return token.expires_ms / 1000.0 - now >= self._margin_s
