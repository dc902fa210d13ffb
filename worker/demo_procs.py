"""The demo's child processes: start each in its own process group, wait for readiness, and
always stop every one of them (SIGTERM to the group, then SIGKILL) so nothing keeps running."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import httpx

STOP_GRACE_S = 15.0  # warm shutdown: a worker finishes the task in hand
KILL_GRACE_S = 5.0


class DemoError(Exception):
    """The demo cannot go on (a process died, a service never became ready)."""


def free_port() -> int:
    """A TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Processes:
    """The demo's processes by name; their output goes to ``logs/<name>.log``."""

    logs: Path
    env: dict[str, str]
    cwd: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        """Start ``python <args>`` as the leader of a new process group."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen([sys.executable, *args], cwd=self.cwd, env=self.env,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        self.procs[name] = proc
        self._record_pids()
        return proc

    def _record_pids(self) -> None:
        # Written down so anyone (the test, an operator) can check that nothing is left.
        pids = {name: proc.pid for name, proc in self.procs.items()}
        temp = self.logs / ".pids.json.tmp"
        temp.write_text(json.dumps(pids, indent=1))
        os.replace(temp, self.logs / "pids.json")  # readers never see half a file

    def dead(self) -> str | None:
        """The name of a process that has exited, if any."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                return name
        return None

    def check_alive(self) -> None:
        """Raise ``DemoError`` (with the end of its log) if any process has exited."""
        name = self.dead()
        if name is not None:
            code = self.procs[name].returncode
            raise DemoError(f"process {name!r} exited with code {code}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, lines: int = 15) -> str:
        """The last ``lines`` lines of a process's log."""
        path = self.logs / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def stop_all(self) -> list[str]:
        """Stop every process and its group; returns the names that needed SIGKILL.

        SIGTERM goes to each leader only: a Celery worker's warm shutdown stops its own pool,
        whereas a pool child killed behind the parent's back can leave it deadlocked on the
        pool's queue lock (billiard ``_help_stuff_finish``). What is left of a group after its
        leader exited (orphaned children) gets SIGTERM, then SIGKILL.
        """
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        killed: list[str] = []
        deadline = time.monotonic() + STOP_GRACE_S
        for name, proc in self.procs.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            _signal_group(proc.pid, signal.SIGTERM)
            if not _wait_group(proc, time.monotonic() + KILL_GRACE_S):
                killed.append(name)
                _signal_group(proc.pid, signal.SIGKILL)
                _wait_group(proc, time.monotonic() + KILL_GRACE_S)
        return killed


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_alive(pgid: int) -> bool:
    """True while any process of the group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_group(proc: subprocess.Popen[bytes], deadline: float) -> bool:
    """Reap the leader and wait for the rest of its group (prefork children) until deadline."""
    while time.monotonic() < deadline:
        proc.poll()  # reap the leader, or it stays a zombie member of its own group
        if proc.returncode is not None and not group_alive(proc.pid):
            return True
        time.sleep(0.05)  # polling process state; there is no portable group-exit wait
    return False


def wait_http(url: str, procs: Processes, name: str, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200; fail early if process ``name`` exits."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as client:
        while True:
            procs.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                if client.get(url).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise DemoError(f"{name} did not answer {url} within {timeout:.0f} s:\n"
                                f"{procs.log_tail(name)}")
            time.sleep(0.1)  # polling readiness, not a fixed wait


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so the ``finally`` that stops the children always runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(_sig: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Ignore Ctrl-C and SIGTERM while the children are being stopped (a second Ctrl-C must
    not leave them running)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
