"""State every worker process shares: Redis in production, lock-guarded files in embedded mode.

``FLEXMIT_REDIS_URL=redis://...`` (or ``rediss://``) selects Redis; ``file:///some/dir`` selects
small files under that directory, shared by the processes of one host through ``fcntl`` locks.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import redis
import structlog
from redis.exceptions import LockError

from worker.protocols import CachedToken, TokenCache

if TYPE_CHECKING:
    from worker.settings import Settings

log = structlog.get_logger(__name__)

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
FILE_SCHEME = "file://"
FETCH_LOCK_TIMEOUT_S = 15.0

# Delete the token only if it is still the one a 401 proved bad: a peer may already have
# stored a fresh one, which must survive.
_INVALIDATE_LUA = """
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local ok, value = pcall(cjson.decode, raw)
if (not ok) or type(value) ~= 'table' or value['access_token'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def make_redis(settings: Settings) -> redis.Redis | None:
    """A Redis client for ``settings.redis_url``; None in the embedded (file://) mode."""
    url = settings.redis_url
    if url.startswith(FILE_SCHEME):
        return None
    if not url.startswith(REDIS_SCHEMES):
        raise ValueError(
            "FLEXMIT_REDIS_URL must start with redis://, rediss://, unix:// or file://"
        )
    return redis.Redis.from_url(
        url, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
    )


def state_dir(settings: Settings) -> Path | None:
    """The shared-state directory of a file:// URL (created if missing); None for Redis."""
    url = settings.redis_url
    if not url.startswith(FILE_SCHEME):
        return None
    # file:///abs/dir -> /abs/dir ; file://./rel -> ./rel
    path = Path(unquote(url[len(FILE_SCHEME) :]) or ".")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _now_ms() -> int:
    return int(time.time() * 1000)


def _encode(token: CachedToken) -> str:
    return json.dumps({"access_token": token.access_token, "expires_ms": token.expires_ms})


def _decode(raw: str | bytes | None) -> CachedToken | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
        return CachedToken(
            access_token=str(value["access_token"]), expires_ms=int(value["expires_ms"])
        )
    except (ValueError, KeyError, TypeError):
        return None  # unreadable entry: treated as "no token", the next fetch overwrites it


class RedisTokenCache:
    """TokenCache in one Redis key that expires with the token; fetch lock is a Redis lock."""

    def __init__(self, redis_client: redis.Redis, key: str = "flexmit:ff:token") -> None:
        self._redis = redis_client
        self._key = key
        self._lock_key = f"{key}:lock"
        self._invalidate = redis_client.register_script(_INVALIDATE_LUA)

    def get(self) -> CachedToken | None:
        """The cached token, or None (missing, expired or unreadable)."""
        token = _decode(self._redis.get(self._key))
        return token if token is not None and token.expires_ms > _now_ms() else None

    def set(self, token: CachedToken) -> None:
        """Store ``token``; Redis drops it at ``expires_ms`` (PXAT)."""
        if token.expires_ms <= _now_ms():
            self._redis.delete(self._key)
            return
        self._redis.set(self._key, _encode(token), pxat=token.expires_ms)

    def invalidate(self, access_token: str) -> None:
        """Atomically drop the cached token if it is still ``access_token``."""
        self._invalidate(keys=[self._key], args=[access_token])

    @contextmanager
    def fetch_lock(self) -> Iterator[None]:
        """Serialise token fetches across processes (lease 15 s, wait at most 15 s)."""
        lock = self._redis.lock(
            self._lock_key, timeout=FETCH_LOCK_TIMEOUT_S, blocking_timeout=FETCH_LOCK_TIMEOUT_S
        )
        acquired = lock.acquire()
        if not acquired:
            # A stuck holder must not stop every worker: fetch anyway (one extra token at worst).
            log.warning("token_fetch_lock_timeout", lock=self._lock_key)
        try:
            yield
        finally:
            if acquired:
                _release_quietly(lock)


def _release_quietly(lock: Any) -> None:
    try:
        lock.release()
    except LockError:
        # The 15 s lease ran out while we fetched; a peer may hold it now, so leave it alone.
        log.warning("token_fetch_lock_lost")


class FileTokenCache:
    """TokenCache in ``<directory>/token.json``, shared by the processes of one host."""

    def __init__(self, directory: Path, name: str = "token") -> None:
        self._dir = Path(directory)
        self._dir.mkdir(parents=True, exist_ok=True)
        self._path = self._dir / f"{name}.json"
        self._state_lock = self._dir / f"{name}.state.lock"
        self._fetch_lock = self._dir / f"{name}.fetch.lock"

    def get(self) -> CachedToken | None:
        """The cached token, or None (missing, expired or unreadable)."""
        try:
            token = _decode(self._path.read_text())
        except FileNotFoundError:
            return None
        return token if token is not None and token.expires_ms > _now_ms() else None

    def set(self, token: CachedToken) -> None:
        """Store ``token`` (atomic replace, so readers never see half a file)."""
        with _flocked(self._state_lock):
            _atomic_write(self._path, _encode(token))

    def invalidate(self, access_token: str) -> None:
        """Drop the cached token if it is still ``access_token``."""
        with _flocked(self._state_lock):
            try:
                current = _decode(self._path.read_text())
            except FileNotFoundError:
                return
            if current is None or current.access_token == access_token:
                self._path.unlink(missing_ok=True)

    @contextmanager
    def fetch_lock(self) -> Iterator[None]:
        """Serialise token fetches across the host's processes (wait at most 15 s)."""
        with _flocked(self._fetch_lock, timeout_s=FETCH_LOCK_TIMEOUT_S):
            yield


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _flocked(path: Path, timeout_s: float | None = None) -> Iterator[bool]:
    """Hold an exclusive flock on ``path``; yields False if ``timeout_s`` ran out first."""
    with open(path, "a") as handle:
        acquired = _flock(handle.fileno(), timeout_s)
        if not acquired:
            log.warning("file_lock_timeout", path=str(path))
        try:
            yield acquired
        finally:
            if acquired:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _flock(fd: int, timeout_s: float | None) -> bool:
    if timeout_s is None:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return True
    # flock has no timeout: poll. The kernel frees the lock when a holder dies, so only a
    # hung holder makes us wait this long.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


class RedisNonceCache:
    """Webhook nonces seen in the last ``ttl_s`` seconds, shared by every receiver process."""

    def __init__(
        self, redis_client: redis.Redis, ttl_s: int = 600, prefix: str = "flexmit:webhook:nonce:"
    ) -> None:
        self._redis = redis_client
        self._ttl = ttl_s
        self._prefix = prefix

    def seen_before(self, nonce: str) -> bool:
        """Record ``nonce``; True if it was already recorded within the TTL (a replay)."""
        return not self._redis.set(self._prefix + nonce, b"1", nx=True, ex=self._ttl)


def make_token_cache(settings: Settings) -> TokenCache:
    """The shared token cache for ``settings``: Redis, or files in embedded mode."""
    client = make_redis(settings)
    if client is not None:
        return RedisTokenCache(client)
    directory = state_dir(settings)
    if directory is None:  # unreachable: make_redis returns None only for file:// URLs
        raise ValueError("FLEXMIT_REDIS_URL selects neither Redis nor a file:// directory")
    return FileTokenCache(directory)
