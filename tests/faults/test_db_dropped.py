"""The database taken away under running workers, mid-batch.

PostgreSQL (CI): every other backend of the test database is terminated
(``pg_terminate_backend``) three times; workers lose their connections mid-task, the pool's
pre-ping replaces them, and a task cut between its claim and its result leaves a claim that
expires (``FLEXMIT_CLAIM_LEASE_S`` = 10 here) for the sweep to hand on.
SQLite (embedded): a file cannot drop a connection, so the test holds the write lock
(``BEGIN EXCLUSIVE``) for a few seconds, three times: every worker's write waits behind it.
Either way: nothing lost, nothing sent twice.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from tests.audit import audit
from tests.integration.test_pipeline_faults import EVALUATED, submit
from tests.pipeline import Stack, running_stack, wait_until
from worker.db.session import normalize_url
from worker.sandbox.config import SandboxConfig

pytestmark = pytest.mark.pipeline
TOTAL = 200
LOCK_HELD_S = 3.0
TERMINATE = ("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
             "WHERE datname = current_database() AND pid <> pg_backend_pid()")


def drop_connections(url: str) -> int:
    """Terminate every other PostgreSQL session of this database; returns how many."""
    engine = create_engine(normalize_url(url), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(TERMINATE)).scalar() or 0)
    finally:
        engine.dispose()


def hold_sqlite_write_lock(url: str, seconds: float) -> None:
    """Hold SQLite's write lock for ``seconds``: every writer must wait (busy_timeout)."""
    conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        time.sleep(seconds)  # the fault itself: the lock is held this long, not a sync wait
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def take_database_away(stack: Stack) -> None:
    url = stack.settings.database_url
    if url.startswith("sqlite"):
        hold_sqlite_write_lock(url, LOCK_HELD_S)
    else:
        assert drop_connections(url) > 0, "no worker connection was there to drop"


def evaluated(stack: Stack, at_least: int) -> Callable[[], bool]:
    """A check: at least ``at_least`` orders have FlexFactor's answer recorded."""
    return lambda: stack.count(*EVALUATED) >= at_least


def test_database_dropped_under_running_workers(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    sandbox = SandboxConfig(rate_limit=40, resolve_after_s=3600)
    with running_stack(database_url, shared_urls, tmp_path, sandbox, FLEXFACTOR_RATE_LIMIT=30,
                       FLEXMIT_CLAIM_LEASE_S=10) as stack:
        stack.start_worker("w1", concurrency=2)
        stack.start_beat()
        accepted = submit(stack, TOTAL, "dbdrop")
        for done in (30, 70, 110):  # three outages, each while the batch is still running
            wait_until(evaluated(stack, done), timeout=60, what=f"{done} evaluations")
            take_database_away(stack)
        assert stack.count(*EVALUATED) < TOTAL, "the batch finished before the last outage"
        stack.wait_settled(TOTAL, timeout=150)
        audit(stack, accepted)
