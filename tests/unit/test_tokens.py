"""TokenProvider and InMemoryTokenCache: reuse, refresh margin, renew on 401, single flight."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from worker.flexfactor.tokens import InMemoryTokenCache, TokenProvider
from worker.protocols import CachedToken

NOW = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class Fetcher:
    """Issues token-1, token-2, ... each valid for 600 s from the clock's now."""

    def __init__(self, clock: Clock, delay_s: float = 0.0) -> None:
        self.clock, self.delay_s, self.count = clock, delay_s, 0
        self._lock = threading.Lock()

    def __call__(self) -> CachedToken:
        time.sleep(self.delay_s)  # widen the race window in the concurrency test
        with self._lock:
            self.count += 1
            return CachedToken(f"token-{self.count}", int((self.clock() + 600) * 1000))


def provider(delay_s: float = 0.0) -> tuple[TokenProvider, Fetcher, Clock, InMemoryTokenCache]:
    clock = Clock()
    fetch = Fetcher(clock, delay_s)
    cache = InMemoryTokenCache()
    return TokenProvider(fetch, cache, refresh_margin_s=60, clock=clock), fetch, clock, cache


def test_token_is_reused_until_the_refresh_margin() -> None:
    tokens, fetch, clock, _ = provider()
    assert tokens.get() == "token-1"
    clock.now = NOW + 539  # 61 s left
    assert tokens.get() == "token-1" and fetch.count == 1
    clock.now = NOW + 541  # 59 s left: refresh before FlexFactor would say 401
    assert tokens.get() == "token-2" and fetch.count == 2


def test_concurrent_callers_cause_exactly_one_fetch() -> None:
    tokens, fetch, _, _ = provider(delay_s=0.05)
    start = threading.Barrier(32)

    def call() -> str:
        start.wait()
        return tokens.get()

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = list(pool.map(lambda _: call(), range(32)))

    assert fetch.count == 1
    assert set(results) == {"token-1"}


def test_two_providers_sharing_a_cache_fetch_once() -> None:
    clock = Clock()
    fetch = Fetcher(clock)
    cache = InMemoryTokenCache()
    first = TokenProvider(fetch, cache, clock=clock)
    second = TokenProvider(fetch, cache, clock=clock)  # e.g. another worker process
    assert first.get() == second.get() == "token-1" and fetch.count == 1


def test_renew_replaces_the_bad_token() -> None:
    tokens, fetch, _, _ = provider()
    bad = tokens.get()
    assert tokens.renew(bad) == "token-2" and fetch.count == 2
    assert tokens.get() == "token-2"


def test_renew_with_a_stale_bad_token_keeps_the_newer_one() -> None:
    tokens, fetch, _, _ = provider()
    old = tokens.get()
    tokens.renew(old)  # another thread already renewed: cache holds token-2
    assert tokens.renew(old) == "token-2" and fetch.count == 2


def test_cache_invalidate_only_drops_the_named_token() -> None:
    cache = InMemoryTokenCache()
    cache.set(CachedToken("a", 1))
    cache.invalidate("b")
    assert cache.get() == CachedToken("a", 1)
    cache.invalidate("a")
    assert cache.get() is None


def test_fetch_lock_excludes_a_second_holder() -> None:
    cache = InMemoryTokenCache()
    entered = threading.Event()
    with cache.fetch_lock():
        worker = threading.Thread(target=lambda: (cache.fetch_lock().__enter__(), entered.set()))
        worker.daemon = True
        worker.start()
        assert not entered.wait(0.05)
    assert entered.wait(1.0)


class CountingCache(InMemoryTokenCache):
    """The shared cache, counting reads (Redis round trips in production)."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def get(self) -> CachedToken | None:
        self.reads += 1
        return super().get()


def test_a_process_reads_the_shared_token_at_most_once_per_reuse_period() -> None:
    from worker.flexfactor.tokens import LOCAL_REUSE_S

    clock = Clock()
    cache = CountingCache()
    tokens = TokenProvider(Fetcher(clock), cache, refresh_margin_s=60, clock=clock)
    assert {tokens.get() for _ in range(100)} == {"token-1"}
    reads = cache.reads
    assert reads <= 3  # the fetch (twice, under the lock) and nothing per call
    # Another process renewed the shared token: seen once the reuse period is over.
    cache.set(CachedToken("token-from-elsewhere", int((clock.now + 600) * 1000)))
    assert tokens.get() == "token-1"
    clock.now += LOCAL_REUSE_S + 0.1
    assert tokens.get() == "token-from-elsewhere" and cache.reads == reads + 1


def test_renew_after_a_401_never_hands_back_the_rejected_token() -> None:
    tokens, fetch, _, _ = provider()
    assert tokens.get() == "token-1"
    assert tokens.renew("token-1") == "token-2" and fetch.count == 2
    assert tokens.get() == "token-2"
