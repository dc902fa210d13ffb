"""Real worker processes: their own metrics endpoint, and a liveness probe that fails when the
worker stops consuming (broker cut, consumer hung) although its processes are still alive."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import make_valid_decline
from tests.observability_helpers import (
    free_port,
    liveness_env,
    redis_server,
    scrape_url,
    wait_health,
)
from tests.pipeline import running_stack, wait_until
from worker.api import create_app
from worker.orders import State

pytestmark = pytest.mark.pipeline
AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}
MAX_AGE = 4.0  # the configured limit under test (seconds)


def test_worker_exporter_adds_up_every_pool_child(database_url: str, shared_urls: tuple[str, str],
                                                  tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    liveness_env(monkeypatch, tmp_path / "hb")
    monkeypatch.setenv("FLEXMIT_METRICS_PORT", str(port))
    monkeypatch.setenv("FLEXMIT_METRICS_ADDR", "127.0.0.1")
    monkeypatch.setenv("FLEXMIT_METRICS_DIR", str(tmp_path / "metrics"))
    url = f"http://127.0.0.1:{port}/metrics"
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        stack.start_worker("w1", concurrency=2)
        declines = [make_valid_decline(orderId=f"exp-{i}", amount=1010) for i in range(8)]
        with TestClient(create_app(stack.settings, stack.runtime)) as client:
            resp = client.post("/v1/declines", json={"declines": declines}, headers=AUTH)
        assert resp.status_code == 202
        stack.wait_settled(8, timeout=60)

        def evaluated() -> float:
            samples = scrape_url(url)
            return samples.get(("flexmit_flexfactor_calls_total",
                                (("outcome", "ok"), ("route", "/evaluate"))), 0.0)

        # Both children evaluated orders; the node's endpoint reports their sum.
        wait_until(lambda: evaluated() == 8, timeout=30, what=f"8 evaluate calls at {url}")
        samples = scrape_url(url)
        assert stack.count(State.PENDING) == 8
    assert samples[("flexmit_flexfactor_request_duration_seconds_count",
                    (("route", "/evaluate"),))] == 8
    assert samples[("flexmit_ratelimit_wait_seconds_count", ())] >= 8
    assert samples[("flexmit_worker_last_heartbeat_timestamp_seconds", ())] > 0


def test_liveness_fails_when_the_consumer_hangs_embedded(database_url: str,
                                                         shared_urls: tuple[str, str],
                                                         tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Embedded variant (a file broker cannot be cut): the worker's main process, which holds
    the broker consumer, is frozen while its pool children stay alive."""
    hb = tmp_path / "hb"
    liveness_env(monkeypatch, hb)
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        proc = stack.start_worker("w1", concurrency=1)
        wait_health("w1", hb, MAX_AGE, want=0, timeout=60)
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            wait_health("w1", hb, MAX_AGE, want=1, timeout=MAX_AGE + 10)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        wait_health("w1", hb, MAX_AGE, want=0, timeout=30)  # consuming again: live again


def test_liveness_fails_when_the_broker_connection_is_cut(database_url: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis broker of our own is killed under a running worker: the process lives on, the
    probe fails within the configured age; the broker returns and so does the worker."""
    hb = tmp_path / "hb"
    liveness_env(monkeypatch, hb)
    state = tmp_path / "state"
    state.mkdir()
    with redis_server() as broker, \
            running_stack(database_url, (f"file://{state}", broker.url), tmp_path) as stack:
        proc = stack.start_worker("w1", concurrency=1)
        wait_health("w1", hb, MAX_AGE, want=0, timeout=60)
        broker.stop()
        wait_health("w1", hb, MAX_AGE, want=1, timeout=MAX_AGE + 10)
        assert proc.poll() is None  # alive, yet not consuming: exactly what the probe is for
        broker.start()
        wait_health("w1", hb, MAX_AGE, want=0, timeout=60)
