"""Helpers for the observability tests: free ports, the worker exporter, the liveness probe,
a Redis server of our own (so a test can cut the broker without touching anyone else's)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.pipeline import ROOT, wait_until

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape_url(url: str) -> Samples:
    """Every sample a Prometheus endpoint serves (empty if it does not answer)."""
    try:
        resp = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return {}
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def health(node: str, hb_dir: Path, max_age: float) -> int:
    """Exit status of the real probe command ``flexmit health worker`` (0 live, 1 not)."""
    cmd = [sys.executable, "-m", "worker.cli", "health", "worker", "--node", node,
           "--max-age", str(max_age), "--dir", str(hb_dir)]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, timeout=30).returncode


def liveness_env(monkeypatch: pytest.MonkeyPatch, hb_dir: Path, interval: float = 0.5) -> None:
    """Worker processes started after this send themselves a heartbeat every ``interval``."""
    monkeypatch.setenv("FLEXMIT_HEARTBEAT_DIR", str(hb_dir))
    monkeypatch.setenv("FLEXMIT_HEARTBEAT_INTERVAL_S", str(interval))


def wait_health(node: str, hb_dir: Path, max_age: float, want: int, timeout: float) -> None:
    """Poll the probe until it exits with ``want``."""
    wait_until(lambda: health(node, hb_dir, max_age) == want, timeout=timeout, every=0.5,
               what=f"`flexmit health worker --node {node}` to exit {want}")


@dataclass
class RedisServer:
    """A throw-away redis-server on a free port (no persistence)."""

    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary is not None
        self.proc = subprocess.Popen([binary, "--port", str(self.port), "--save", "",
                                      "--appendonly", "no", "--bind", "127.0.0.1"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, timeout=15, what="redis-server to answer", every=0.1)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server: every client connection drops at once."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """A private Redis for one test; skipped where redis-server is not installed."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (the embedded variant covers liveness)")
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()
