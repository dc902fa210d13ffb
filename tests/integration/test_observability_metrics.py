"""GET /metrics after real activity: every series the operators asked for, with true values.

Intake over the API, /evaluate against the sandbox over HTTP (one 503, some 429s), signed and
forged webhooks, a push to a billing endpoint that is down: then one scrape.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from tests.factories import make_valid_decline
from tests.pipeline import running_stack
from tests.webhooks_helpers import KEY, event_body, signed
from worker.api import create_app
from worker.db.models import BillingPush, Order
from worker.evaluate import evaluate_order
from worker.notify import deliver_push
from worker.orders import State
from worker.sandbox.config import FaultRule, SandboxConfig

AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}
PAN = "4111 1111 1111 1111"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

# Point 3 of the observability brief, series by series.
REQUIRED = (
    "flexmit_declines_accepted_total", "flexmit_declines_rejected_total",
    "flexmit_flexfactor_calls_total", "flexmit_flexfactor_request_duration_seconds_bucket",
    "flexmit_ratelimit_wait_seconds_sum", "flexmit_flexfactor_429_total", "flexmit_orders",
    "flexmit_order_oldest_age_seconds", "flexmit_webhooks_received_total",
    "flexmit_webhooks_verified_total", "flexmit_webhooks_rejected_total",
    "flexmit_billing_pushes_failed_total",
)


def scrape(client: TestClient) -> Samples:
    resp = client.get("/metrics")
    assert resp.status_code == 200
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def total(samples: Samples, name: str, **labels: str) -> float:
    """Sum of ``name`` over samples whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def delta(after: Samples, before: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def drive(client: TestClient, stack: object) -> None:
    """Intake, evaluation, webhooks and a failed push: the activity the scrape reports."""
    rt = stack.runtime  # type: ignore[attr-defined]
    declines = [make_valid_decline(orderId="obs-approve", amount=1099),
                make_valid_decline(orderId="obs-decline", amount=1090),
                make_valid_decline(orderId="obs-503", amount=1010),
                make_valid_decline(orderId="obs-pending", amount=1010),
                make_valid_decline(orderId="obs-pan", **{"card.token": PAN})]
    results = client.post("/v1/declines", json={"declines": declines}, headers=AUTH).json()
    assert [r["accepted"] for r in results["results"]] == [True, True, True, True, False]
    with rt.sessions() as session:
        orders = {o.order_id: o for o in session.scalars(select(Order))}
    for order in orders.values():
        evaluate_order(rt, order.id, owner="obs-test")
    approved = orders["obs-approve"]
    with rt.sessions() as session:
        approved = session.get(Order, approved.id)
        body = event_body("order.approved", approved)
        push_pk = session.scalars(select(BillingPush.id)).first()
    assert client.post("/v1/flexfactor/webhooks", content=body,
                       headers=signed(body)).status_code == 200
    forged = signed(body, key="AAAA" + KEY[4:])
    assert client.post("/v1/flexfactor/webhooks", content=body, headers=forged).status_code == 401
    assert push_pk is not None
    deliver_push(rt, push_pk, owner="obs-test")  # billing is down: a failed try


def test_metrics_expose_every_series_after_activity(database_url: str,
                                                     shared_urls: tuple[str, str],
                                                     tmp_path: Path) -> None:
    # The sandbox admits 1 request a second and we allow 50: some 429s are certain.
    sandbox = SandboxConfig(rate_limit=1, fault_rules=[
        FaultRule(route="evaluate", order_id_contains="obs-503", fault="503", times=1)])
    with running_stack(database_url, shared_urls, tmp_path, sandbox,
                       FLEXFACTOR_RATE_LIMIT=50, FLEXFACTOR_WEBHOOK_KEY=KEY,
                       FLEXMIT_BILLING_CALLBACK_URL="http://127.0.0.1:9/billing",
                       FLEXMIT_BILLING_CALLBACK_SECRET="obs-callback-secret-0123") as stack, \
            TestClient(create_app(stack.settings, stack.runtime)) as client:
        before = scrape(client)
        drive(client, stack)
        after = scrape(client)
        by_state = stack.by_state()

    missing = [name for name in REQUIRED if not any(n == name for n, _ in after)]
    assert missing == []
    assert delta(after, before, "flexmit_declines_accepted_total", source="http") == 4
    assert delta(after, before, "flexmit_declines_rejected_total", field="card") == 1
    assert delta(after, before, "flexmit_flexfactor_calls_total", route="/evaluate",
                 outcome="ok") >= 3
    assert delta(after, before, "flexmit_flexfactor_calls_total", route="/evaluate",
                 outcome="retry") >= 1  # the 503 and the 429s
    assert delta(after, before, "flexmit_flexfactor_request_duration_seconds_count",
                 route="/evaluate") >= 4
    assert delta(after, before, "flexmit_flexfactor_429_total") >= 1
    assert delta(after, before, "flexmit_ratelimit_wait_seconds_count") >= 4
    assert delta(after, before, "flexmit_webhooks_received_total") == 2
    assert delta(after, before, "flexmit_webhooks_verified_total") == 1
    assert delta(after, before, "flexmit_webhooks_rejected_total") == 1
    assert delta(after, before, "flexmit_billing_pushes_failed_total", reason="network") == 1
    for state in State:
        assert total(after, "flexmit_orders", state=state.value) == by_state.get(state.value, 0)
    assert by_state.get(State.PENDING.value, 0) >= 1
    assert ("flexmit_order_oldest_age_seconds", (("state", "PENDING"),)) in after
    assert ("flexmit_order_oldest_age_seconds", (("state", "UNKNOWN"),)) in after
