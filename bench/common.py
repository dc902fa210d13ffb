"""Shared pieces of the benchmarks: services, the sandbox, worker processes, the results table.

Every benchmark runs against real parts: PostgreSQL (a fresh database per run, dropped after),
Redis (one database, flushed at start), the sandbox as its own process (off the bench process's
GIL) and Celery workers as subprocesses, exactly as production starts them.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import httpx

from bench.results import ROOT, Row, machine, ratio, report, table
from worker.sandbox.testing import wait_for
from worker.settings import Settings

__all__ = ["ROOT", "Row", "machine", "ratio", "report", "table"]

T = TypeVar("T")
REDIS_URL = os.environ.get("FLEXMIT_BENCH_REDIS_URL", "redis://127.0.0.1:6379/3")
PG_ADMIN_URL = os.environ.get("FLEXMIT_BENCH_DATABASE_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")
SANDBOX_KEY, SANDBOX_SECRET = "sandbox-key", "sandbox-secret"


def wait_until(check: Callable[[], T], *, timeout: float, what: str, every: float = 0.1) -> T:
    """Poll ``check`` until truthy; raise TimeoutError after ``timeout`` seconds."""
    return wait_for(check, timeout=timeout, every=every, what=what)


def midday_tz(now: datetime | None = None) -> str:
    """A fixed-offset zone where it is now near midday, so "declined today" stays true for the
    whole run whatever the UTC hour (intake refuses declines from another merchant day)."""
    now = now or datetime.now(UTC)
    best = min(range(-12, 13), key=lambda off: abs((now.hour + off) % 24 - 12))
    # Etc/GMT signs are inverted: Etc/GMT-3 is UTC+3.
    return "UTC" if best == 0 else f"Etc/GMT{'-' if best > 0 else '+'}{abs(best)}"


def flush_redis(url: str = REDIS_URL) -> None:
    """Empty the benchmark's Redis database (broker queues, limiter state, caches)."""
    import redis

    redis.Redis.from_url(url).flushdb()


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def pg_database(migrate: bool = True) -> Iterator[str]:
    """A fresh PostgreSQL database (migrated to head), dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from worker.db.migrate import upgrade
    from worker.db.session import normalize_url

    admin = create_engine(normalize_url(PG_ADMIN_URL), isolation_level="AUTOCOMMIT")
    name = f"flexmit_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(normalize_url(PG_ADMIN_URL)).set(database=name)
    rendered = url.render_as_string(hide_password=False)
    try:
        if migrate:
            upgrade(rendered)
        yield rendered
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_env(database_url: str, sandbox_base: str, **overrides: Any) -> dict[str, str]:
    """Environment (CONTRACT.md names) for flexmit processes in a benchmark."""
    from worker.sandbox.config import DEFAULT_MID

    env = {
        "FLEXMIT_DATABASE_URL": database_url, "FLEXMIT_REDIS_URL": REDIS_URL,
        "FLEXMIT_BROKER_URL": REDIS_URL, "FLEXFACTOR_BASE_URL": sandbox_base,
        "FLEXFACTOR_APP_KEY": SANDBOX_KEY, "FLEXFACTOR_APP_SECRET": SANDBOX_SECRET,
        "FLEXFACTOR_MID": DEFAULT_MID, "FLEXMIT_MERCHANT_TZ": midday_tz(),
        "FLEXMIT_LOG_FORMAT": "json",
        # Sweeps stay out of the way: no beat runs, and nothing looks lost within a run.
        "FLEXMIT_REDISPATCH_AFTER_S": "3600", "FLEXMIT_CLAIM_LEASE_S": "600",
    }
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def settings_from(env: dict[str, str]) -> Settings:
    """Settings for this process built from a benchmark environment."""
    return Settings(**env)  # type: ignore[arg-type]


@dataclass
class Procs:
    """Child processes of one benchmark, each its own process group, logging to files."""

    logs: Path
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *argv: str) -> subprocess.Popen[bytes]:
        """Run ``python argv...`` from the repo root with this benchmark's environment."""
        env = {**os.environ, **self.env, "PYTHONUNBUFFERED": "1"}
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.procs[name] = proc
        return proc

    def celery_workers(self, names: list[str], *, app: str = "worker", concurrency: int = 2,
                       queue: str = "flexmit", extra: tuple[str, ...] = ()) -> None:
        """Prefork workers of ``app`` consuming ``queue``, started together (so none gets a
        head start on a queued backlog); returns once every one says "ready"."""
        for name in names:
            self.start(name, "-m", "celery", "-A", app, "worker", "-P", "prefork",
                       "-c", str(concurrency), "-n", f"{name}@%h", "-Q", queue,
                       "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "INFO",
                       *extra)
        for name in names:
            wait_until(lambda n=name: self._ready(n), timeout=90, what=f"worker {name} ready")  # type: ignore[misc]

    def _ready(self, name: str) -> bool:
        if self.procs[name].poll() is not None:
            raise RuntimeError(f"{name} exited: {self.log_tail(name)}")
        return " ready." in self.log_text(name)

    def log_text(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def log_tail(self, name: str, lines: int = 20) -> str:
        return "\n".join(self.log_text(name).splitlines()[-lines:])

    def stop(self, name: str) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers."""
        proc = self.procs.pop(name)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)


@contextmanager
def processes(env: dict[str, str]) -> Iterator[Procs]:
    """A ``Procs`` whose children are all stopped on exit (logs in a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="flexmit-bench-") as tmp:
        procs = Procs(Path(tmp), env)
        try:
            yield procs
        finally:
            procs.stop_all()


def start_sandbox(procs: Procs, *, rate_limit: float, resolve_after: float = 3600.0) -> str:
    """``flexmit sandbox`` as a subprocess; returns its base URL (``.../v1``) once it answers."""
    port = free_port()
    procs.start("sandbox", "-m", "worker.cli", "sandbox", "--port", str(port),
                "--rate-limit", str(rate_limit), "--resolve-after", str(resolve_after))
    root = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if procs.procs["sandbox"].poll() is not None:
            raise RuntimeError(f"sandbox exited: {procs.log_tail('sandbox')}")
        try:
            return httpx.get(f"{root}/_sandbox/ledger", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout=30, what="the sandbox")
    return f"{root}/v1"


def ledger(sandbox_base: str) -> dict[str, Any]:
    """The sandbox ledger (calls by route and status, 429s, busiest second)."""
    resp = httpx.get(f"{sandbox_base.removesuffix('/v1')}/_sandbox/ledger", timeout=10)
    resp.raise_for_status()
    return dict(resp.json())


def evaluate_ok(led: dict[str, Any]) -> int:
    """``POST /v1/evaluate`` requests the sandbox answered 200."""
    return int(led["calls"].get("POST /v1/evaluate", {}).get("200", 0))


@dataclass(frozen=True)
class Span:
    """Accepted evaluates over time, as seen by polling the ledger."""

    accepted: int
    first_at: float
    last_at: float
    ledger: dict[str, Any]

    @property
    def rate(self) -> float:
        """Accepted evaluates per second between the first and the last one seen."""
        return ratio(self.accepted, self.last_at - self.first_at)


def watch_evaluates(sandbox_base: str, expected: int, *, timeout: float,
                    done: Callable[[], bool] | None = None, every: float = 0.05) -> Span:
    """Poll the ledger until ``expected`` evaluates were accepted, or (after the first one)
    ``done()`` holds and nothing changed for a second (the baseline may lose some to 429s)."""
    deadline = time.monotonic() + timeout
    first_at = last_at = 0.0
    seen = 0
    while True:
        led = ledger(sandbox_base)
        now = time.monotonic()
        count = evaluate_ok(led)
        if count and not first_at:
            first_at = now - every / 2  # the first one landed sometime during the last poll
        if count != seen:
            seen, last_at = count, now
        quiet = bool(last_at) and now - last_at > 1.0 and done is not None and done()
        if count >= expected or quiet or now > deadline:
            return Span(count, first_at, last_at or now, ledger(sandbox_base))
        time.sleep(every)


def redis_queue_idle(queue: str, url: str = REDIS_URL) -> bool:
    """True when ``queue`` holds no message and no message is being worked on (unacked)."""
    import redis

    client = redis.Redis.from_url(url)
    return not client.llen(queue) and not client.hlen("unacked")


def fmt(value: float, digits: int = 2) -> str:
    """A number for the table: thousands separators, ``digits`` decimals."""
    return f"{value:,.{digits}f}"


def started_now() -> tuple[datetime, str]:
    """The run's start time and the machine line (taken before the load of the run)."""
    return datetime.now(UTC), machine()


def tz_of(env: dict[str, str]) -> ZoneInfo:
    return ZoneInfo(env["FLEXMIT_MERCHANT_TZ"])
