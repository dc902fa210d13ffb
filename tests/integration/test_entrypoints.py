"""Every service docker-compose.yml names runs outside Docker: its exact command and environment
(hostnames and ports translated to local ones), healthy by the compose health check, stopped by
SIGTERM as `docker stop` would. Plus the compose file's own promises (one beat, scalable workers,
required secrets) and Flower showing order ids, never payloads or card data."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect

from tests.entrypoints_helpers import (
    BIN,
    COMPOSE_FILE,
    OPERATOR_ENV,
    OUR_IMAGE_SERVICES,
    Local,
    Proc,
    healthcheck_command,
    load_compose,
    service_command,
    service_env,
    start,
    wait_for,
)
from tests.factories import make_valid_decline
from worker.celeryconfig import make_celery
from worker.dispatch import EVALUATE_TASK, send_evaluate
from worker.settings import Settings

pytestmark = pytest.mark.timeout(180)
STARTUP_S = 60


@pytest.fixture
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture
def local(database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> Local:
    return Local(database_url=database_url, redis_url=shared_urls[0], broker_url=shared_urls[1],
                 scratch=tmp_path)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[list[Proc]]:
    """Processes a test started; whatever is still up at the end is stopped."""
    procs: list[Proc] = []
    yield procs
    for proc in procs:
        if proc.popen.poll() is None:
            proc.stop()


def run_service(name: str, compose: dict[str, Any], local: Local, cwd: Path,
                running: list[Proc]) -> Proc:
    """Start the compose service ``name`` as a local process."""
    service = compose["services"][name]
    proc = start(name, service_command(service["command"], local), service_env(service, local),
                 cwd)
    running.append(proc)
    return proc


def passes_healthcheck(name: str, compose: dict[str, Any], local: Local) -> bool:
    """Run the service's compose health check here; True when it exits 0."""
    argv = healthcheck_command(compose["services"][name], local)
    assert argv is not None, f"{name} has no CMD health check"
    env = service_env(compose["services"][name], local)
    result = subprocess.run(argv, env={**os.environ, **env}, capture_output=True, timeout=60,
                            check=False)
    return result.returncode == 0


def stops_cleanly(proc: Proc) -> None:
    code = proc.stop()
    assert code in (0, -15), f"{proc.name} exited {code} on SIGTERM:\n{proc.text()[-2000:]}"


# ------------------------------------------------------------------ the compose file itself


def test_compose_declares_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "redis", *OUR_IMAGE_SERVICES}
    assert services["beat"]["deploy"]["replicas"] == 1
    worker = services["worker"]
    assert "container_name" not in worker and "ports" not in worker  # --scale worker=4 works
    for name in ("api", "worker", "beat"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == "service_healthy"
    for name in ("postgres", "redis", "api", "worker", "sandbox", "flower"):
        assert services[name]["healthcheck"]["test"], name
    text = COMPOSE_FILE.read_text()
    for secret in OPERATOR_ENV:
        assert f"${{{secret}:?" in text, f"{secret} must be required"


def _compose_cli() -> list[str] | None:
    plugin = Path.home() / ".docker/cli-plugins/docker-compose"
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"],
                                                 capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    return [str(plugin)] if plugin.exists() else None


def test_compose_config_validates_and_requires_secrets() -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.skip("no Compose v2 here (`python3 dev.py test` installs it; see its output)")
    env = {k: v for k, v in os.environ.items() if k not in OPERATOR_ENV}
    argv = [*cli, "-f", str(COMPOSE_FILE), "config", "--format", "json"]
    refused = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "FLEXMIT_INTAKE_TOKEN" in refused.stderr
    rendered = subprocess.run(argv, env={**env, **OPERATOR_ENV}, capture_output=True, text=True,
                              check=True)
    worker = json.loads(rendered.stdout)["services"]["worker"]
    assert worker["environment"]["FLEXFACTOR_BASE_URL"] == "http://sandbox:8099/v1"


# ------------------------------------------------------------------ each entry point, locally


def test_migrate_brings_a_fresh_database_up_to_date(
        compose: dict[str, Any], tmp_path: Path, shared_urls: tuple[str, str],
        running: list[Proc]) -> None:
    fresh = f"sqlite:///{tmp_path / 'fresh.db'}"
    local = Local(database_url=fresh, redis_url=shared_urls[0], broker_url=shared_urls[1])
    for _ in range(2):  # a one-shot that may run again on every `docker compose up`
        proc = run_service("migrate", compose, local, tmp_path, running)
        assert proc.popen.wait(timeout=STARTUP_S) == 0, proc.text()
    tables = inspect(create_engine(fresh)).get_table_names()
    assert {"orders", "alembic_version"} <= set(tables)


def test_sandbox_serves_and_is_healthy(compose: dict[str, Any], local: Local, tmp_path: Path,
                                       running: list[Proc]) -> None:
    proc = run_service("sandbox", compose, local, tmp_path, running)
    ledger = f"http://127.0.0.1:{local.port(8099)}/_sandbox/ledger"
    wait_for(lambda: httpx.get(ledger, timeout=2).status_code == 200, proc,
             timeout=STARTUP_S, what="the sandbox ledger")
    assert passes_healthcheck("sandbox", compose, local)
    stops_cleanly(proc)


def test_api_serves_and_is_healthy(compose: dict[str, Any], local: Local, tmp_path: Path,
                                   running: list[Proc]) -> None:
    proc = run_service("api", compose, local, tmp_path, running)
    base = f"http://127.0.0.1:{local.port(8000)}"
    wait_for(lambda: httpx.get(f"{base}/healthz", timeout=2).status_code == 200, proc,
             timeout=STARTUP_S, what="GET /healthz")
    assert passes_healthcheck("api", compose, local)
    assert httpx.get(f"{base}/v1/orders/x", timeout=5).status_code == 401  # token is enforced
    stops_cleanly(proc)


def test_worker_and_beat_start(compose: dict[str, Any], local: Local, tmp_path: Path,
                               running: list[Proc]) -> None:
    worker = run_service("worker", compose, local, tmp_path, running)
    beat = run_service("beat", compose, local, tmp_path, running)
    wait_for(lambda: " ready." in worker.text(), worker, timeout=STARTUP_S, what="worker ready")
    wait_for(lambda: "beat: Starting" in beat.text(), beat, timeout=STARTUP_S,
             what="beat: Starting")
    # Beat's periodic sweeps reach the worker: the two are wired to the same broker.
    wait_for(lambda: "flexmit.sweep_due" in worker.text(), worker, timeout=STARTUP_S,
             what="a sweep from beat to run on the worker")
    if _has_health_command():  # `flexmit health worker`: a message consumed lately
        wait_for(lambda: passes_healthcheck("worker", compose, local), worker,
                 timeout=STARTUP_S, what="the worker's health check to pass")
    stops_cleanly(beat)
    stops_cleanly(worker)


def _has_health_command() -> bool:
    probe = subprocess.run([str(BIN / "flexmit"), "health", "--help"], capture_output=True,
                           check=False)
    return probe.returncode == 0


# ------------------------------------------------------------------ Flower


def _flower_tasks(base: str) -> dict[str, Any]:
    user, password = OPERATOR_ENV["FLOWER_BASIC_AUTH"].split(":", 1)
    resp = httpx.get(f"{base}/api/tasks", auth=(user, password), timeout=5)
    resp.raise_for_status()
    return dict(resp.json())


def _task_shown(base: str, name: str, task_id: str, *, received: bool) -> dict[str, Any] | None:
    task = _flower_tasks(base).get(task_id)
    if not task or task.get("name") != name or (received and not task.get("received")):
        return None
    return dict(task)


def test_flower_needs_auth_and_shows_order_ids_not_payloads(
        compose: dict[str, Any], local: Local, tmp_path: Path, running: list[Proc]) -> None:
    flower = run_service("flower", compose, local, tmp_path, running)
    base = f"http://127.0.0.1:{local.port(5555)}"
    wait_for(lambda: passes_healthcheck("flower", compose, local), flower, timeout=STARTUP_S,
             what="Flower's health check")
    assert httpx.get(f"{base}/", timeout=5).status_code == 401
    user, password = OPERATOR_ENV["FLOWER_BASIC_AUTH"].split(":", 1)
    assert httpx.get(f"{base}/", auth=(user, password), timeout=5).status_code == 200
    worker = run_service("worker", compose, local, tmp_path, running)
    wait_for(lambda: " ready." in worker.text(), worker, timeout=STARTUP_S, what="worker ready")
    _shows_evaluate_as_order_ids(base, compose, local, flower)
    _hides_intake_payload(base, compose, local, flower)
    stops_cleanly(worker)
    stops_cleanly(flower)


def _settings(compose: dict[str, Any], local: Local) -> Settings:
    return Settings(**service_env(compose["services"]["worker"], local))


def _shows_evaluate_as_order_ids(base: str, compose: dict[str, Any], local: Local,
                                flower: Proc) -> None:
    app = make_celery(_settings(compose, local))
    last_sent = [0.0]
    try:
        # A message may go out before Flower's event consumer listens: resend every 2 s.
        def shown() -> dict[str, Any] | None:
            if time.monotonic() - last_sent[0] > 2:
                assert send_evaluate(app, [424242, 424243], batch=20) == 2  # one message
                last_sent[0] = time.monotonic()
            tasks = _flower_tasks(base).values()
            return next((t for t in tasks if t.get("name") == EVALUATE_TASK
                         and t.get("received")), None)
        task = wait_for(shown, flower, timeout=STARTUP_S, what="Flower to list flexmit.evaluate")
    finally:
        app.close()
    assert task["args"] == "order_pks=[424242, 424243]" and task["kwargs"] == "{}"


def _hides_intake_payload(base: str, compose: dict[str, Any], local: Local,
                          flower: Proc) -> None:
    # Billing publishes with its own Celery client and Celery's defaults: argsrepr = the whole
    # decline. Yesterday's decline is stored as rejected, so no FlexFactor call is needed.
    decline = make_valid_decline(datetime.now(UTC) - timedelta(days=2))
    billing = make_celery(_settings(compose, local))
    billing.conf.task_send_sent_event = False
    try:
        result = billing.send_task("flexmit.intake.declines", args=[decline], queue="flexmit")
        task = wait_for(lambda: _task_shown(base, "flexmit.intake.declines", result.id,
                                            received=True),
                        flower, timeout=STARTUP_S, what="Flower to list the intake task")
    finally:
        billing.close()
    assert task["args"] == f"declines=1 orderIds=[{decline['orderId']}]"
    shown = json.dumps(task)
    for secret in (decline["card"]["token"], decline["payer"]["email"], "Lovelace"):
        assert secret not in shown
