"""A global sliding 1-second window: at most ``limit`` requests accepted in any 1 s span."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Accepts a request when fewer than ``limit`` were accepted in the last second.

    Not thread-safe by itself: callers hold the sandbox lock.
    """

    def __init__(self) -> None:
        self._accepted: deque[float] = deque()

    def try_accept(self, now: float, limit: float) -> bool:
        """Record and accept one request at ``now`` (monotonic seconds), or refuse it."""
        while self._accepted and self._accepted[0] <= now - 1.0:
            self._accepted.popleft()
        if limit > 0 and len(self._accepted) >= limit:
            return False
        self._accepted.append(now)
        return True

    def clear(self) -> None:
        """Forget every accepted request."""
        self._accepted.clear()
