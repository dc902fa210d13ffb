"""Shared token cache and nonce store: real Redis (unique keys, cleaned up) and files."""

from __future__ import annotations

import fcntl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
import redis

from worker.protocols import CachedToken, TokenCache
from worker.settings import Settings
from worker.sharedstate import (
    FileTokenCache,
    RedisNonceCache,
    RedisTokenCache,
    make_redis,
    make_token_cache,
    state_dir,
)


def _in(seconds: float) -> int:
    return int((time.time() + seconds) * 1000)


@pytest.fixture
def client(unit_redis: redis.Redis) -> redis.Redis:
    return unit_redis


@pytest.fixture
def key(client: redis.Redis) -> Iterator[str]:
    name = f"flexmit:test:token:{uuid.uuid4().hex}"
    yield name
    client.delete(name, f"{name}:lock")


@pytest.fixture(params=["redis", "file"])
def cache(request: pytest.FixtureRequest, tmp_path: Path) -> TokenCache:
    if request.param == "redis":
        client = request.getfixturevalue("client")
        return RedisTokenCache(client, key=request.getfixturevalue("key"))
    return FileTokenCache(tmp_path)


# --- TokenCache semantics, both backends ---------------------------------------------------


def test_get_set_round_trip(cache: TokenCache) -> None:
    assert cache.get() is None
    token = CachedToken(access_token="tok-1", expires_ms=_in(60))
    cache.set(token)
    assert cache.get() == token
    newer = CachedToken(access_token="tok-2", expires_ms=_in(120))
    cache.set(newer)
    assert cache.get() == newer


def test_expired_token_is_not_returned(cache: TokenCache) -> None:
    cache.set(CachedToken(access_token="old", expires_ms=_in(-1)))
    assert cache.get() is None


def test_invalidate_only_if_equal(cache: TokenCache) -> None:
    token = CachedToken(access_token="fresh", expires_ms=_in(60))
    cache.set(token)
    cache.invalidate("stale-one-a-peer-already-replaced")
    assert cache.get() == token
    cache.invalidate("fresh")
    assert cache.get() is None
    cache.invalidate("fresh")  # nothing cached: a no-op


def test_fetch_lock_is_reentrant_per_use(cache: TokenCache) -> None:
    for _ in range(3):
        with cache.fetch_lock():
            cache.set(CachedToken(access_token="x", expires_ms=_in(60)))
    assert cache.get() is not None


# --- Redis specifics -----------------------------------------------------------------------


def test_redis_token_expires_with_pxat(client: redis.Redis, key: str) -> None:
    RedisTokenCache(client, key=key).set(CachedToken(access_token="t", expires_ms=_in(30)))
    assert 28_000 < client.pttl(key) <= 30_000


def test_redis_unreadable_entry(client: redis.Redis, key: str) -> None:
    cache = RedisTokenCache(client, key=key)
    client.set(key, b"not json")
    assert cache.get() is None
    cache.invalidate("anything")  # an unreadable entry is dropped, so the next fetch heals it
    assert client.exists(key) == 0


def test_redis_fetch_lock_excludes_other_holders(client: redis.Redis, key: str) -> None:
    cache = RedisTokenCache(client, key=key)
    rival = client.lock(f"{key}:lock", timeout=5)
    with cache.fetch_lock():
        assert rival.acquire(blocking=False) is False
    assert rival.acquire(blocking=False) is True
    rival.release()


def test_redis_fetch_lock_survives_a_lost_lease(client: redis.Redis, key: str) -> None:
    cache = RedisTokenCache(client, key=key)
    with cache.fetch_lock():
        client.delete(f"{key}:lock")  # the lease ran out while we fetched
    # leaving the block did not raise; the lock is free
    assert client.exists(f"{key}:lock") == 0


# --- file specifics ------------------------------------------------------------------------


def test_file_cache_is_shared_between_instances(tmp_path: Path) -> None:
    token = CachedToken(access_token="shared", expires_ms=_in(60))
    FileTokenCache(tmp_path).set(token)
    assert FileTokenCache(tmp_path).get() == token
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".token")]  # no temp left


def test_file_fetch_lock_excludes_other_processes(tmp_path: Path) -> None:
    cache = FileTokenCache(tmp_path)
    # A separate open file description is what another process would hold.
    with (
        cache.fetch_lock(),
        open(tmp_path / "token.fetch.lock", "a") as other,
        pytest.raises(BlockingIOError),
    ):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(tmp_path / "token.fetch.lock", "a") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_file_unreadable_entry(tmp_path: Path) -> None:
    (tmp_path / "token.json").write_text("{broken")
    cache = FileTokenCache(tmp_path)
    assert cache.get() is None
    cache.invalidate("anything")
    assert not (tmp_path / "token.json").exists()


# --- nonces --------------------------------------------------------------------------------


def test_redis_nonce_cache_real(client: redis.Redis) -> None:
    prefix = f"flexmit:test:nonce:{uuid.uuid4().hex}:"
    nonces = RedisNonceCache(client, ttl_s=60, prefix=prefix)
    try:
        assert nonces.seen_before("abc") is False
        assert nonces.seen_before("abc") is True
        assert nonces.seen_before("abd") is False
        assert 0 < client.ttl(prefix + "abc") <= 60
    finally:
        client.delete(prefix + "abc", prefix + "abd")


def test_redis_nonce_cache_fakeredis() -> None:
    nonces = RedisNonceCache(fakeredis.FakeRedis(), ttl_s=600)
    assert [nonces.seen_before(n) for n in ("a", "b", "a")] == [False, False, True]


# --- factories -----------------------------------------------------------------------------


def test_make_redis_and_state_dir(unit_redis_url: str, tmp_path: Path) -> None:
    settings = Settings(redis_url=unit_redis_url)
    client = make_redis(settings)
    assert isinstance(client, redis.Redis)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == 5 and kwargs["socket_connect_timeout"] == 5
    assert kwargs["health_check_interval"] == 30
    assert state_dir(settings) is None
    client.close()

    target = tmp_path / "state" / "nested"
    embedded = Settings(redis_url=f"file://{target}")
    assert make_redis(embedded) is None
    assert state_dir(embedded) == target and target.is_dir()

    with pytest.raises(ValueError):
        make_redis(Settings(redis_url="http://nope"))


def test_make_token_cache(tmp_path: Path) -> None:
    assert isinstance(make_token_cache(Settings(redis_url="redis://127.0.0.1:6379/0")),
                      RedisTokenCache)  # built lazily: no connection is made here
    assert isinstance(make_token_cache(Settings(redis_url=f"file://{tmp_path}")), FileTokenCache)
