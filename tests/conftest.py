"""Shared fixtures.

By default the suite runs on embedded parts (SQLite files, kombu's filesystem broker, file-based
shared state), so `python3 dev.py test` works on a machine with only Python. CI points it at the
real services with:

    FLEXMIT_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test
    FLEXMIT_TEST_REDIS_URL=redis://127.0.0.1:6379/14

A PostgreSQL URL gets a fresh database per test (created from it, dropped after); a Redis URL's
database is flushed before each pipeline test (so give it a database of its own).
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from worker.db.migrate import upgrade
from worker.db.session import normalize_url

if TYPE_CHECKING:
    from worker.runtime import Runtime

TEST_DB = os.environ.get("FLEXMIT_TEST_DATABASE_URL", "")
TEST_REDIS = os.environ.get("FLEXMIT_TEST_REDIS_URL", "")
TEST_TOKEN = "test-intake-token-0123456789"
# Unit tests of the Redis-backed pieces use unique keys (never a flush) in this database.
UNIT_REDIS_URL = TEST_REDIS or "redis://127.0.0.1:6379/15"


def _create_pg_database(admin_url: str) -> tuple[str, str]:
    name = f"flexmit_t_{uuid.uuid4().hex[:12]}"
    engine = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    url = make_url(normalize_url(admin_url)).set(database=name)
    return url.render_as_string(hide_password=False), name


def _drop_pg_database(admin_url: str, name: str) -> None:
    engine = create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


@pytest.fixture
def database_url(tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database for one test (PostgreSQL in CI, SQLite elsewhere)."""
    if TEST_DB.startswith("postgres"):
        url, name = _create_pg_database(TEST_DB)
        upgrade(url)
        yield url
        _drop_pg_database(TEST_DB, name)
    else:
        url = f"sqlite:///{tmp_path / 'flexmit.db'}"
        upgrade(url)
        yield url


@contextmanager
def embedded_runtime(database_url: str, tmp_path: Path, **settings: Any) -> Iterator[Runtime]:
    """A runtime on ``database_url`` with the embedded shared state and file broker under
    ``tmp_path`` (messages sent are files to read back); ``settings`` by their env names."""
    from worker.runtime import Runtime
    from worker.settings import Settings

    (tmp_path / "state").mkdir()
    rt = Runtime(Settings(_env_file=None, FLEXMIT_DATABASE_URL=database_url,  # type: ignore[call-arg]
                          FLEXMIT_REDIS_URL=f"file://{tmp_path / 'state'}",
                          FLEXMIT_BROKER_URL=f"filesystem://{tmp_path / 'broker'}", **settings))
    try:
        yield rt
    finally:
        rt.close()


@pytest.fixture
def shared_urls(tmp_path: Path) -> tuple[str, str]:
    """``(redis_url, broker_url)``: real Redis when configured, else embedded files."""
    if TEST_REDIS.startswith("redis"):
        import redis

        redis.Redis.from_url(TEST_REDIS).flushdb()
        return TEST_REDIS, TEST_REDIS
    state = tmp_path / "state"
    broker = tmp_path / "broker"
    state.mkdir()
    broker.mkdir()
    return f"file://{state}", f"filesystem://{broker}"


_FAKE_SERVERS: dict[str, Any] = {}  # fakeredis TCP server URL -> its in-process server


def _redis_answers(url: str) -> bool:
    import redis

    probe = redis.Redis.from_url(url, socket_connect_timeout=1)
    try:
        return bool(probe.ping())
    except redis.ConnectionError:
        return False
    finally:
        probe.close()


@pytest.fixture(scope="session")
def unit_redis_url() -> Iterator[str]:
    """A Redis URL for unit tests of the Redis-backed pieces (they use unique keys): the real
    server when one answers (CI), else fakeredis's TCP server with its Lua engine, so a machine
    with only Python runs the same tests, across processes too."""
    if _redis_answers(UNIT_REDIS_URL):
        yield UNIT_REDIS_URL
        return
    from fakeredis import TcpFakeServer

    server = TcpFakeServer(("127.0.0.1", 0))
    thread = threading.Thread(target=server.serve_forever, daemon=True, name="fakeredis")
    thread.start()
    url = f"redis://127.0.0.1:{server.server_address[1]}/0"
    _FAKE_SERVERS[url] = server.fake_server
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def unit_redis(unit_redis_url: str) -> Iterator[Any]:
    """A connection to ``unit_redis_url``; with no real server, an in-process fakeredis client
    (threads share it safely; its TCP server is for the tests that need other processes)."""
    import redis

    if unit_redis_url == UNIT_REDIS_URL:
        conn = redis.Redis.from_url(unit_redis_url)
    else:
        import fakeredis

        conn = fakeredis.FakeRedis(server=_FAKE_SERVERS[unit_redis_url])
    yield conn
    conn.close()
