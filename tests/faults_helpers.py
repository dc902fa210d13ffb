"""Helpers of the fault suite (tests/faults/): the API as a real process, a billing-like client
that retries a batch with the same orderIds until it is acknowledged."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.factories import make_valid_decline
from tests.pipeline import ROOT, Stack, wait_until

AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiProcess:
    """``flexmit api`` as its own process (group), so a test can SIGKILL and restart it."""

    stack: Stack
    port: int
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the API and wait until /healthz answers (the database is reachable)."""
        env = {**os.environ, **self.stack.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        self.starts += 1
        log = (self.stack.logs / f"api-{self.starts}.log").open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "api", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self._healthy, timeout=30, what="the API to answer /healthz")

    def _healthy(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, "the API process exited"
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        """SIGKILL the API: requests in flight get no answer."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)


@dataclass
class BillingClient:
    """Posts ``batches`` batches of ``size`` declines; a batch that gets no 202 (connection
    refused or cut, timeout, 5xx) is sent again with the same orderIds until acknowledged."""

    url: str
    batches: int
    size: int
    deadline_s: float = 120.0
    acknowledged: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: int = 0
    done_batches: int = 0
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="billing-client", daemon=True)
        self.thread.start()

    def join(self) -> None:
        """Wait for the client to finish; re-raise what failed in its thread."""
        assert self.thread is not None
        self.thread.join(timeout=self.deadline_s + 10)
        assert not self.thread.is_alive(), "the billing client did not finish"
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            stop_at = time.monotonic() + self.deadline_s
            with httpx.Client(timeout=10) as client:
                for number in range(self.batches):
                    self._send(client, self._batch(number), stop_at)
                    self.done_batches += 1
        except BaseException as exc:  # surfaced by join() in the test's thread
            self.error = exc

    def _batch(self, number: int) -> list[dict[str, Any]]:
        return [make_valid_decline(orderId=f"api-{number:03d}-{i:02d}", amount=1000 + i)
                for i in range(self.size)]

    def _send(self, client: httpx.Client, declines: list[dict[str, Any]], stop_at: float) -> None:
        while True:
            assert time.monotonic() < stop_at, "a batch was never acknowledged"
            try:
                resp = client.post(f"{self.url}/v1/declines", json={"declines": declines},
                                   headers=AUTH)
                if resp.status_code == 202:
                    for result in resp.json()["results"]:
                        self.acknowledged[result["orderId"]] = result
                    return
                assert resp.status_code >= 500, resp.text  # a 4xx would be our bug
            except httpx.TransportError:
                pass  # the API died under us: the same batch goes again
            self.failures += 1
            time.sleep(0.2)  # billing's own retry backoff, not a synchronisation


def api_process(stack: Stack) -> ApiProcess:
    """An ``ApiProcess`` on a free port (not started)."""
    return ApiProcess(stack, free_port())
