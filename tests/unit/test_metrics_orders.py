"""Database gauges on GET /metrics: orders by state and the age of the oldest in-flight ones."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import update

from tests.webhooks_helpers import make_order, make_runtime
from worker.api import create_app
from worker.db.models import Order
from worker.orders import State, utcnow
from worker.runtime import Runtime


def scrape(rt: Runtime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with TestClient(create_app(rt.settings, rt)) as client:
        resp = client.get("/metrics")  # no bearer: scrapers call it
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def test_orders_by_state_and_oldest_ages(database_url: str, tmp_path: Path) -> None:
    rt = make_runtime(database_url, (f"file://{tmp_path}", f"filesystem://{tmp_path}/b"))
    pending = make_order(rt, State.PENDING)
    make_order(rt, State.PENDING)
    unknown = make_order(rt, State.UNKNOWN)
    make_order(rt, State.DECLINED)
    with rt.sessions() as session:  # as if they entered their state a while ago
        for order, age in ((pending, 7200), (unknown, 600)):
            session.execute(update(Order).where(Order.id == order.id)
                            .values(updated_at=utcnow() - timedelta(seconds=age)))
        session.commit()
    samples = scrape(rt)
    assert samples[("flexmit_orders", (("state", "PENDING"),))] == 2
    assert samples[("flexmit_orders", (("state", "UNKNOWN"),))] == 1
    assert samples[("flexmit_orders", (("state", "DECLINED"),))] == 1
    assert samples[("flexmit_orders", (("state", "CHARGEBACK"),))] == 0  # every state, zeros too
    pending_age = samples[("flexmit_order_oldest_age_seconds", (("state", "PENDING"),))]
    unknown_age = samples[("flexmit_order_oldest_age_seconds", (("state", "UNKNOWN"),))]
    assert 7200 <= pending_age < 7300
    assert 600 <= unknown_age < 700
    assert samples[("flexmit_order_oldest_age_seconds", (("state", "QUEUED"),))] == 0
    assert samples[("flexmit_metrics_db_up", ())] == 1


def test_a_database_outage_does_not_break_the_scrape(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir" / "flexmit.db"
    rt = make_runtime(f"sqlite:///{missing}", (f"file://{tmp_path}", f"filesystem://{tmp_path}/b"))
    samples = scrape(rt)
    assert samples[("flexmit_metrics_db_up", ())] == 0
    assert ("flexmit_webhooks_received_total", ()) in samples  # process counters still there
