"""A full run's logs, from every process (API, worker, beat): no card data, no secret, and the
context operators search by (order id, task id, FlexFactor traceId) on the lines that need it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.factories import make_valid_decline
from tests.observability_helpers import free_port
from tests.pipeline import ROOT, Stack, running_stack, wait_until
from worker.db.models import WebhookEvent
from worker.pan import redact_text
from worker.sandbox.config import DEFAULT_WEBHOOK_KEY_B64, FaultRule, SandboxConfig

pytestmark = pytest.mark.pipeline
TOKEN = "test-intake-token-0123456789"
PAN = "4111111111111111"
UUIDISH = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
                     r"|\b[0-9a-f]{16,}\b")
JWT = re.compile(r"eyJ[\w-]{8,}\.[\w-]{8,}\.[\w-]{8,}")
ORDER_KEYS = ("order_id", "order_pk", "orderId")


@contextmanager
def api_process(stack: Stack, port: int) -> Iterator[str]:
    """``flexmit api`` as its own process, logging to ``api.log`` beside the workers' logs."""
    env = {**os.environ, **stack.settings.to_env(), "PYTHONUNBUFFERED": "1"}
    with (stack.logs / "api.log").open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worker.cli", "api", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _answers(url), timeout=30, what="the API to answer")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def full_run(stack: Stack, api: str) -> list[str]:
    """Declines in (one with a card number), evaluated by a real worker, webhooks back."""
    stack.sandbox_config(webhook_url=f"{api}/v1/flexfactor/webhooks")
    stack.start_worker("w1", concurrency=2)
    stack.start_beat()
    declines = [make_valid_decline(orderId="log-approve", amount=1099),
                make_valid_decline(orderId="log-pending", amount=1010),
                make_valid_decline(orderId="log-503", amount=1010),
                make_valid_decline(orderId="log-pan", **{"card.token": PAN})]
    resp = httpx.post(f"{api}/v1/declines", json={"declines": declines}, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert [r["accepted"] for r in resp.json()["results"]] == [True, True, True, False]
    stack.wait_settled(3, timeout=60)  # the card-number one is a reject, not an order

    def webhooks_processed() -> bool:
        with stack.runtime.sessions() as session:
            done = session.scalar(select(func.count()).select_from(WebhookEvent)
                                  .where(WebhookEvent.processed_at.is_not(None)))
        return (done or 0) >= 3  # approve, and the two PENDING orders resolving
    wait_until(webhooks_processed, timeout=60, what="webhooks processed by the worker")
    return [d["card"]["token"] for d in declines[:3]]


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_a_full_run_logs_no_secret_and_carries_its_context(database_url: str,
                                                           shared_urls: tuple[str, str],
                                                           tmp_path: Path) -> None:
    sandbox = SandboxConfig(resolve_after_s=1.0, fault_rules=[
        FaultRule(route="evaluate", order_id_contains="log-503", fault="503", times=1)])
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXFACTOR_WEBHOOK_KEY=DEFAULT_WEBHOOK_KEY_B64) as stack, \
            api_process(stack, free_port()) as api:
        vault_tokens = full_run(stack, api)
        stack.stop_all()  # flush and close every log
    logs = {p.stem: p.read_text(errors="replace") for p in tmp_path.glob("*.log")}
    assert {"api", "w1", "beat"} <= set(logs)

    secrets = [PAN, "4111 1111 1111 1111", "sandbox-secret", TOKEN, DEFAULT_WEBHOOK_KEY_B64,
               *vault_tokens]
    for name, text in logs.items():
        leaked = [s for s in secrets if s in text]
        assert leaked == [], f"{name}.log leaks {leaked}"
        assert not JWT.search(text), f"{name}.log holds an access token"
        for line in text.splitlines():
            scrubbed = UUIDISH.sub("-", line)  # ids are hex, not card numbers
            assert redact_text(scrubbed) == scrubbed, f"{name}.log: card number in {line!r}"

    worker = json_lines(logs["w1"])
    about_orders = [e for e in worker if any(k in e for k in ORDER_KEYS)]
    assert len(about_orders) >= 4
    missing = [e for e in about_orders if not (e.get("order_id") and e.get("task_id"))]
    assert missing == []
    calls = [e for e in worker if e["event"] == "flexfactor.http"]
    failed = [e for e in calls if (e.get("status_code") or 0) >= 400]
    assert failed, "the injected 503 should show up as a failed call"
    assert all(e["trace_id"] for e in failed)  # the sandbox sends traceId on every error
    # ...and the later lines about that order carry it too (the 503 was retried, then recorded).
    traced = {(e["task_id"], e["order_id"]): e["trace_id"] for e in failed}
    later = [e for e in worker if (e.get("task_id"), e.get("order_id")) in traced
             and e["event"] == "evaluate.recorded"]
    assert later and all(e.get("trace_id") == traced[e["task_id"], e["order_id"]] for e in later)
    assert all(e.get("order_id") and e.get("task_id") for e in calls
               if e["route"] != "/oauth2/token")
