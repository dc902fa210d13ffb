"""Per-process resources (engine, FlexFactor client, limiter, Redis), built on first use.

Tasks and the API take what they need from ``get_runtime()``; Celery's prefork children call
``reset_runtime()`` after fork so no connection is shared across processes.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from worker.settings import Settings, get_settings

if TYPE_CHECKING:
    import redis
    from celery import Celery
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from worker.flexfactor.client import FlexFactorClient
    from worker.protocols import RateLimiter


@dataclass
class Runtime:
    """Lazily built resources for one process."""

    settings: Settings
    _closers: list[Any] = field(default_factory=list)

    @cached_property
    def engine(self) -> Engine:
        from worker.db.session import make_engine

        engine = make_engine(self.settings)
        self._closers.append(engine.dispose)
        return engine

    @cached_property
    def sessions(self) -> sessionmaker[Session]:
        from worker.db.session import make_session_factory

        return make_session_factory(self.engine)

    @cached_property
    def redis(self) -> redis.Redis | None:
        from worker.sharedstate import make_redis

        client = make_redis(self.settings)
        if client is not None:
            self._closers.append(client.close)
        return client

    @cached_property
    def celery(self) -> Celery:
        from worker.celeryconfig import make_celery

        return make_celery(self.settings)

    @cached_property
    def limiter(self) -> RateLimiter:
        from worker.metering import MeteredLimiter
        from worker.ratelimit import make_limiter

        return MeteredLimiter(make_limiter(self.settings))  # counts time spent waiting

    @cached_property
    def flexfactor(self) -> FlexFactorClient:
        from worker import metering
        from worker.flexfactor.client import FlexFactorClient
        from worker.sharedstate import make_token_cache

        client = FlexFactorClient.from_settings(
            self.settings, token_cache=make_token_cache(self.settings), limiter=self.limiter,
            on_attempt=metering.record_attempt,  # audit rows + metrics + traceId
        )
        self._closers.append(client.close)
        return client

    def close(self) -> None:
        """Release every connection this runtime opened."""
        for closer in reversed(self._closers):
            with contextlib.suppress(Exception):  # closing is best effort at shutdown
                closer()
        self._closers.clear()


_lock = threading.Lock()
_runtime: Runtime | None = None


def get_runtime() -> Runtime:
    """This process's runtime (built from ``get_settings()`` on first use)."""
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime(get_settings())
        return _runtime


def set_runtime(runtime: Runtime | None, *, close: bool = True) -> None:
    """Install a runtime (tests, the API factory); closes the previous one unless told not to."""
    global _runtime
    with _lock:
        if close and _runtime is not None and _runtime is not runtime:
            _runtime.close()
        _runtime = runtime


def reset_runtime(*, close: bool = True) -> None:
    """Drop this process's resources; after fork pass ``close=False`` (the parent owns them)."""
    set_runtime(None, close=close)
