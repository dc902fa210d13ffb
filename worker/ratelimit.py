"""One FlexFactor rate limit shared by every process: GCRA without burst.

Each request reserves the next free slot ``max(now, TAT, blocked_until)``; the theoretical
arrival time TAT then moves one emission interval ``T = 1 / rate`` past it, so requests leave
evenly spaced. A 429 sets ``blocked_until`` and every process waits for it.

Redis mode keeps TAT and ``blocked_until`` in two keys updated by Lua with Redis ``TIME`` as
the clock (every container agrees on it); losing the keys (FLUSHALL, restart) only resets
the limiter. File mode keeps them in one file under an ``fcntl`` lock, with ``time.time()``.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from worker.protocols import RateLimiter, RateLimitWaitTooLong
from worker.sharedstate import make_redis, state_dir

if TYPE_CHECKING:
    import redis

    from worker.settings import Settings

__all__ = [
    "FileGcraLimiter",
    "RateLimitWaitTooLong",
    "RateLimiter",
    "RedisGcraLimiter",
    "make_limiter",
]

_US = 1_000_000
# Keys outlive the instant they describe by this much; after it they mean "no constraint".
_EXPIRY_SLACK_MS = 1000
# A process that wakes this much after its slot (descheduled, a GC pause) does not use it:
# requests would leave closer than the spacing, and a burst of them can exceed the limit in a
# one-second window. It reserves a fresh slot instead (the stale one is simply left empty). With
# FLEXMIT_RATE_HEADROOM 0.97 a window has ~30 ms of slack; this keeps lateness well inside it.
LATE_TOLERANCE_S = 0.008
MAX_LATE_RETRIES = 3  # a machine that is always late still sends, just less evenly

# Every script takes the clock as its last ARGV: '' means "use Redis TIME" (the default, so
# all hosts share one clock); a number is the caller's clock in microseconds.
_NOW_LUA = """
local now = tonumber(ARGV[#ARGV])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
"""

# KEYS: tat, blocked_until. ARGV: interval_us, max_wait_us, slack_ms, now.
# Returns {admitted (1|0), wait_us}. Instants are integer microseconds: Lua numbers are doubles,
# exact far beyond today's 2^51 us, and '%.0f' keeps them out of exponent notation.
_RESERVE_LUA = (
    _NOW_LUA
    + """
local tat = tonumber(redis.call('GET', KEYS[1])) or 0
local blocked = tonumber(redis.call('GET', KEYS[2])) or 0
local slot = math.max(now, tat, blocked)
local wait = slot - now
if wait > tonumber(ARGV[2]) then return {0, wait} end
local new_tat = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', new_tat),
           'PX', math.ceil((new_tat - now) / 1000) + tonumber(ARGV[3]))
return {1, wait}
"""
)

# KEYS: blocked_until. ARGV: retry_after_us, slack_ms, now. Returns the block left in us.
_PENALIZE_LUA = (
    _NOW_LUA
    + """
local blocked = tonumber(redis.call('GET', KEYS[1])) or 0
local wanted = now + tonumber(ARGV[1])
if wanted > blocked then
  blocked = wanted
  redis.call('SET', KEYS[1], string.format('%.0f', blocked),
             'PX', math.ceil((blocked - now) / 1000) + tonumber(ARGV[2]))
end
return math.max(0, blocked - now)
"""
)

# KEYS: blocked_until. ARGV: now. Returns the block left in us (0 if none).
_BLOCKED_LUA = (
    _NOW_LUA
    + """
local blocked = tonumber(redis.call('GET', KEYS[1])) or 0
return math.max(0, blocked - now)
"""
)


def _acquire_loop(
    reserve: Callable[[float], tuple[bool, float]],
    blocked_for: Callable[[], float],
    sleep: Callable[[float], None],
    max_wait_s: float,
) -> float:
    """Reserve a slot, sleep until it; re-reserve if a 429 penalty arrived while we slept, or
    if we woke too late to use the slot (see ``LATE_TOLERANCE_S``)."""
    waited, late_retries = 0.0, 0
    while True:
        admitted, wait = reserve(max_wait_s - waited)
        if not admitted:
            raise RateLimitWaitTooLong(waited + wait)
        if wait > 0:
            lateness = _sleep_measured(sleep, wait)
            waited += wait
            if lateness > LATE_TOLERANCE_S and late_retries < MAX_LATE_RETRIES:
                late_retries += 1
                continue  # sending now would crowd the next process's slot: take a fresh one
        # Our slot was fixed before any penalty that came in during the sleep; honour it.
        # An immediate slot (no sleep) needs no re-check: it was granted against current state.
        if wait <= 0 or blocked_for() <= 0:
            return waited


def _sleep_measured(sleep: Callable[[float], None], wait: float) -> float:
    """Sleep ``wait`` seconds; return how much later than asked we woke up."""
    started = time.monotonic()
    sleep(wait)
    return time.monotonic() - started - wait


class RedisGcraLimiter:
    """RateLimiter shared through Redis: one Lua script per reservation, Redis TIME as clock."""

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        rate_per_s: float,
        key: str = "flexmit:rl:flexfactor",
        clock_from_redis: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.interval_s = 1.0 / rate_per_s
        self._tat_key = f"{key}:tat"
        self._blocked_key = f"{key}:blocked_until"
        self._clock_from_redis = clock_from_redis
        self._sleep = sleep
        self._reserve = redis_client.register_script(_RESERVE_LUA)
        self._penalize = redis_client.register_script(_PENALIZE_LUA)
        self._blocked = redis_client.register_script(_BLOCKED_LUA)

    def _now_arg(self) -> int | str:
        # '' lets the script read Redis TIME; otherwise this host's clock (tests, odd servers).
        return "" if self._clock_from_redis else int(time.time() * _US)

    def _reserve_slot(self, max_wait_s: float) -> tuple[bool, float]:
        argv = [
            round(self.interval_s * _US),
            max(0, int(max_wait_s * _US)),
            _EXPIRY_SLACK_MS,
            self._now_arg(),
        ]
        admitted, wait_us = self._reserve(keys=[self._tat_key, self._blocked_key], args=argv)
        return bool(admitted), int(wait_us) / _US

    def _blocked_for(self) -> float:
        return int(self._blocked(keys=[self._blocked_key], args=[self._now_arg()])) / _US

    def acquire(self, max_wait_s: float = 30.0) -> float:
        """Block until this process may send one request; return the seconds waited."""
        return _acquire_loop(self._reserve_slot, self._blocked_for, self._sleep, max_wait_s)

    def penalize(self, retry_after_s: float) -> None:
        """Make every process wait ``retry_after_s`` from now (never shortens a longer block)."""
        if retry_after_s <= 0:
            return
        argv = [int(retry_after_s * _US), _EXPIRY_SLACK_MS, self._now_arg()]
        self._penalize(keys=[self._blocked_key], args=argv)


class FileGcraLimiter:
    """RateLimiter shared by the processes of one host through a small flock-guarded file."""

    def __init__(
        self,
        directory: Path,
        *,
        rate_per_s: float,
        name: str = "flexfactor",
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.interval_s = 1.0 / rate_per_s
        Path(directory).mkdir(parents=True, exist_ok=True)
        self._path = Path(directory) / f"ratelimit-{name}.state"
        self._sleep = sleep
        self._clock = clock

    def _update(self, change: Callable[[float, float, float], tuple[float, float]]) -> None:
        """Run ``change(now, tat, blocked) -> (tat, blocked)`` under an exclusive flock."""
        # Opened per call, so threads of one process also exclude each other (flock is per
        # open file description).
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            tat, blocked = _parse_state(os.pread(fd, 128, 0))
            new = change(self._clock(), tat, blocked)
            if new != (tat, blocked):
                data = f"{new[0]!r} {new[1]!r}\n".encode()
                os.pwrite(fd, data.ljust(64), 0)
        finally:
            os.close(fd)  # closing releases the flock

    def _reserve_slot(self, max_wait_s: float) -> tuple[bool, float]:
        result: list[tuple[bool, float]] = []

        def change(now: float, tat: float, blocked: float) -> tuple[float, float]:
            slot = max(now, tat, blocked)
            admitted = slot - now <= max_wait_s
            result.append((admitted, slot - now))
            return (slot + self.interval_s, blocked) if admitted else (tat, blocked)

        self._update(change)
        return result[0]

    def _blocked_for(self) -> float:
        left: list[float] = []

        def read(now: float, tat: float, blocked: float) -> tuple[float, float]:
            left.append(max(0.0, blocked - now))
            return tat, blocked

        self._update(read)
        return left[0]

    def acquire(self, max_wait_s: float = 30.0) -> float:
        """Block until this process may send one request; return the seconds waited."""
        return _acquire_loop(self._reserve_slot, self._blocked_for, self._sleep, max_wait_s)

    def penalize(self, retry_after_s: float) -> None:
        """Make every process on the host wait ``retry_after_s`` from now."""
        if retry_after_s <= 0:
            return
        self._update(lambda now, tat, blocked: (tat, max(blocked, now + retry_after_s)))


def _parse_state(raw: bytes) -> tuple[float, float]:
    """(TAT, blocked_until) from the state file; anything unreadable means a fresh limiter."""
    try:
        tat, blocked = raw.split()[:2]
        return float(tat), float(blocked)
    except ValueError:
        return 0.0, 0.0


def make_limiter(settings: Settings) -> RateLimiter:
    """The shared limiter: FLEXFACTOR_RATE_LIMIT x FLEXMIT_RATE_HEADROOM requests per second."""
    rate = settings.flexfactor_rate_limit * settings.rate_headroom
    client = make_redis(settings)
    if client is not None:
        return RedisGcraLimiter(client, rate_per_s=rate)
    directory = state_dir(settings)
    if directory is None:  # unreachable: make_redis returns None only for file:// URLs
        raise ValueError("FLEXMIT_REDIS_URL selects neither Redis nor a file:// directory")
    return FileGcraLimiter(directory, rate_per_s=rate)
