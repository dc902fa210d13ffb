"""A real stack for pipeline tests: the sandbox over HTTP, real Celery worker processes over a
real broker, a real database. Synchronisation is by polling observable state with a deadline."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import func, select

from worker.db.models import Order
from worker.orders import State
from worker.runtime import Runtime
from worker.sandbox.config import SandboxConfig
from worker.sandbox.server import sandbox_process
from worker.sandbox.testing import wait_for
from worker.settings import Settings

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[1]


def wait_until(check: Callable[[], T], *, timeout: float, what: str, every: float = 0.25) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    try:
        return wait_for(check, timeout=timeout, every=every, what=what)
    except TimeoutError as exc:
        raise AssertionError(str(exc)) from None


@dataclass
class Stack:
    """What a pipeline test drives and inspects."""

    settings: Settings
    runtime: Runtime
    sandbox_base: str
    logs: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def sandbox_root(self) -> str:
        return self.sandbox_base.removesuffix("/v1")

    def ledger(self) -> dict[str, Any]:
        """The sandbox's ledger (calls, distinct orders, 429s, busiest second...)."""
        resp = httpx.get(f"{self.sandbox_root}/_sandbox/ledger", timeout=10)
        resp.raise_for_status()
        return dict(resp.json())

    def sandbox_orders(self) -> list[dict[str, Any]]:
        """Every order the sandbox holds (merchant orderId, key, status, planned outcome)."""
        resp = httpx.get(f"{self.sandbox_root}/_sandbox/orders", timeout=10)
        resp.raise_for_status()
        body = resp.json()
        return list(body["orders"] if isinstance(body, dict) else body)

    def sandbox_config(self, **changes: Any) -> None:
        """Patch the running sandbox's configuration."""
        httpx.post(f"{self.sandbox_root}/_sandbox/config", json=changes,
                   timeout=10).raise_for_status()

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``celery -A worker <args>`` as its own process group, logging to a file."""
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        log = (self.logs / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "worker", *args],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs[name] = proc
        return proc

    def start_worker(self, name: str, concurrency: int = 2) -> subprocess.Popen[bytes]:
        """A prefork worker with ``concurrency`` child processes."""
        return self.start(name, "worker", "-P", "prefork", "-c", str(concurrency),
                          "-n", f"{name}@%h", "-Q", "flexmit", "--without-gossip",
                          "--without-mingle", "-l", "INFO")

    def start_beat(self, name: str = "beat") -> subprocess.Popen[bytes]:
        """The one beat process (schedule file in the test's log folder)."""
        return self.start(name, "beat", "-s", str(self.logs / f"{name}-schedule"), "-l", "INFO")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole process group of ``name`` (parent and prefork children)."""
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        proc.wait(timeout=30)

    def stop_all(self) -> None:
        """SIGTERM each leader (warm shutdown, as ``docker stop`` does), then SIGKILL its
        process group. Signalling the whole group at once can hang a prefork worker's warm
        shutdown (billiard's ``_help_stuff_finish``)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=20)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # pool children left behind, if any
            proc.wait(timeout=10)

    def log_text(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def count(self, *states: State) -> int:
        """Orders in any of ``states``."""
        with self.runtime.sessions() as session:
            return session.scalar(select(func.count()).select_from(Order)
                                  .where(Order.state.in_(states))) or 0

    def by_state(self) -> dict[str, int]:
        with self.runtime.sessions() as session:
            rows = session.execute(select(Order.state, func.count()).group_by(Order.state))
            return {state: n for state, n in rows}

    def wait_settled(self, total: int, *, timeout: float,
                     unsettled: tuple[State, ...] = (State.QUEUED, State.UNKNOWN)) -> None:
        """Wait until ``total`` orders exist and none is in ``unsettled``."""
        def settled() -> bool:
            states = self.by_state()
            return sum(states.values()) == total and not any(states.get(s) for s in unsettled)
        wait_until(settled, timeout=timeout, what=f"{total} orders to settle ({self.by_state()})")


def stack_settings(database_url: str, redis_url: str, broker_url: str, sandbox_base: str,
                   **overrides: Any) -> Settings:
    """Settings for a pipeline test; ``overrides`` use the environment names."""
    values: dict[str, Any] = {
        "FLEXMIT_DATABASE_URL": database_url,
        "FLEXMIT_REDIS_URL": redis_url,
        "FLEXMIT_BROKER_URL": broker_url,
        "FLEXFACTOR_BASE_URL": sandbox_base,
        "FLEXFACTOR_APP_KEY": "sandbox-key",
        "FLEXFACTOR_APP_SECRET": "sandbox-secret",
        "FLEXFACTOR_MID": SandboxConfig().mid,
        "FLEXMIT_INTAKE_TOKEN": "test-intake-token-0123456789",
        "FLEXMIT_SWEEP_INTERVAL_S": 2,
        "FLEXMIT_REDISPATCH_AFTER_S": 5,
        "FLEXMIT_CLAIM_LEASE_S": 30,
        "FLEXMIT_LOG_FORMAT": "json",
    }
    values.update(overrides)
    return Settings(**values)


@contextmanager
def running_stack(database_url: str, shared: tuple[str, str], logs: Path,
                  sandbox: SandboxConfig | None = None, **overrides: Any) -> Iterator[Stack]:
    """A sandbox (in this process, over HTTP) plus whatever processes the test starts."""
    with ExitStack() as stack:
        # Its own process, as FlexFactor is: its clock and rate window see arrivals unskewed.
        base = stack.enter_context(sandbox_process(sandbox or SandboxConfig(),
                                                   log_path=str(logs / "sandbox.log")))
        settings = stack_settings(database_url, shared[0], shared[1], base, **overrides)
        runtime = Runtime(settings)
        stack.callback(runtime.close)
        s = Stack(settings=settings, runtime=runtime, sandbox_base=base, logs=logs)
        stack.callback(s.stop_all)
        yield s
