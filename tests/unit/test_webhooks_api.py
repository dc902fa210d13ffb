"""``POST /v1/flexfactor/webhooks`` over HTTP: signed deliveries move orders, forged ones don't."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.webhooks_helpers import (
    event_body,
    events,
    make_order,
    make_runtime,
    reload,
    signed,
    stale_date,
)
from worker.api import create_app
from worker.db.models import Order
from worker.orders import State, as_utc, utcnow
from worker.runtime import Runtime
from worker.webhooks import process_webhook_event, sweep_unprocessed

URL = "/v1/flexfactor/webhooks"
AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}
OTHER_KEY = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktb3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXkhIQ=="


@pytest.fixture
def rt(database_url: str, shared_urls: tuple[str, str]) -> Iterator[Runtime]:
    runtime = make_runtime(database_url, shared_urls)
    yield runtime
    runtime.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt)) as c:
        yield c


def process_stored(rt: Runtime) -> list[str]:
    """Run the task body for every verified event still unprocessed (what the worker does)."""
    return [process_webhook_event(rt, e.id) for e in events(rt)
            if e.verified and e.processed_at is None]


def metric(client: TestClient, name: str) -> float:
    text = client.get("/metrics").text
    found = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_signed_completion_approves_the_order(rt: Runtime, client: TestClient) -> None:
    order = make_order(rt, State.PENDING)
    body = event_body("order.completed", order)
    resp = client.post(URL, content=body, headers=signed(body))  # no bearer, text/plain
    assert (resp.status_code, resp.json()) == (200, {"received": True})
    assert process_stored(rt) == ["applied"]
    view = client.get(f"/v1/orders/{order.order_id}", headers=AUTH).json()
    assert view["state"] == "APPROVED"
    assert view["history"][-1]["cause"] == "webhook"


def test_host_header_port_is_not_part_of_the_signature(rt: Runtime, client: TestClient) -> None:
    order = make_order(rt, State.PENDING)
    body = event_body("order.expired", order)
    headers = {**signed(body, host="hooks.example.com"), "host": "hooks.example.com:8443"}
    assert client.post(URL, content=body, headers=headers).status_code == 200
    assert process_stored(rt) == ["applied"]
    assert reload(rt, order.id).state == State.EXPIRED


def _changed_byte(body: bytes, order: Order) -> tuple[bytes, dict[str, str]]:
    headers = signed(body)
    return body.replace(b"order.expired", b"order.complet"), headers


def _forgeries() -> dict[str, Callable[[bytes, Order], tuple[bytes, dict[str, str]]]]:
    return {
        "bad_content_hash": _changed_byte,
        "bad_signature": lambda b, o: (b, signed(b, key=OTHER_KEY)),
        "stale": lambda b, o: (b, signed(b, date=stale_date())),
        "missing_header": lambda b, o: (b, {"content-type": "text/plain"}),
    }


@pytest.mark.parametrize("reason", sorted(_forgeries()))
def test_forged_delivery_is_refused_recorded_and_changes_nothing(
        rt: Runtime, client: TestClient, reason: str) -> None:
    order = make_order(rt, State.PENDING)
    body, headers = _forgeries()[reason](event_body("order.expired", order), order)
    before = metric(client, f'flexmit_webhooks_rejected_total{{reason="{reason}"}}')
    resp = client.post(URL, content=body, headers=headers)
    assert (resp.status_code, resp.json()) == (401, {"error": reason})
    stored = events(rt)
    assert [(e.verified, e.reject_reason, e.outcome) for e in stored] == \
        [(False, reason, "rejected")]
    assert stored[0].body == body.decode()
    assert sweep_unprocessed(rt, utcnow() + timedelta(hours=1)) == 0  # nothing to process
    assert reload(rt, order.id).state == State.PENDING
    assert metric(client, f'flexmit_webhooks_rejected_total{{reason="{reason}"}}') == before + 1


def test_wrong_host_is_refused(rt: Runtime, client: TestClient) -> None:
    order = make_order(rt, State.PENDING)
    body = event_body("order.completed", order)
    resp = client.post(URL, content=body, headers=signed(body, host="evil.example.com"))
    assert (resp.status_code, resp.json()) == (401, {"error": "bad_signature"})
    assert reload(rt, order.id).state == State.PENDING


def test_replayed_delivery_is_refused(rt: Runtime, client: TestClient) -> None:
    order = make_order(rt, State.PENDING)
    body = event_body("order.completed", order)
    headers = signed(body)
    assert client.post(URL, content=body, headers=headers).status_code == 200
    resp = client.post(URL, content=body, headers=headers)
    assert (resp.status_code, resp.json()) == (401, {"error": "replayed_nonce"})
    assert [e.outcome for e in events(rt)] == [None, "rejected"]


def test_forged_body_only_brings_the_status_poll_forward(rt: Runtime,
                                                         client: TestClient) -> None:
    order = make_order(rt, State.PENDING)
    body = event_body("order.completed", order)
    resp = client.post(URL, content=body, headers=signed(body, key=OTHER_KEY))
    assert resp.status_code == 401
    after = reload(rt, order.id)
    assert after.state == State.PENDING
    assert after.next_check_at is not None and as_utc(after.next_check_at) <= utcnow()


def test_duplicate_deliveries_are_processed_once(rt: Runtime, client: TestClient) -> None:
    order = make_order(rt, State.PENDING)
    for resent in (False, True, True):
        body = event_body("order.cancelled", order, resent=resent)
        resp = client.post(URL, content=body, headers=signed(body))
        assert (resp.status_code, resp.json()) == (200, {"received": True})
    assert process_stored(rt) == ["applied"]
    assert [e.outcome for e in events(rt)] == ["applied", "duplicate", "duplicate"]
    assert reload(rt, order.id).state == State.CANCELLED


def test_late_completion_after_cancel_is_a_history_note(rt: Runtime,
                                                        client: TestClient) -> None:
    order = make_order(rt, State.CANCELLED)
    body = event_body("order.completed", order)
    assert client.post(URL, content=body, headers=signed(body)).status_code == 200
    assert process_stored(rt) == ["ignored"]
    view = client.get(f"/v1/orders/{order.order_id}", headers=AUTH).json()
    assert view["state"] == "CANCELLED"
    assert view["history"][-1]["cause"] == "webhook.ignored"
    assert view["history"][-1]["detail"]["event"] == "order.completed"


def test_unknown_order_is_acknowledged_and_counted(rt: Runtime, client: TestClient) -> None:
    before = metric(client, "flexmit_webhooks_unknown_order_total")
    body = event_body("order.completed", ff_id="00000000-0000-4000-8000-000000000001",
                      external="nobody")
    resp = client.post(URL, content=body, headers=signed(body))
    assert (resp.status_code, resp.json()) == (200, {"received": True})
    assert metric(client, "flexmit_webhooks_unknown_order_total") == before + 1
    assert process_stored(rt) == ["unknown_order"]


@pytest.mark.parametrize("body", [b"", b"\x00\x01\x02", b"{", b"null", "é".encode("latin-1"),
                                  b"[" * 16_000])
def test_any_body_gets_an_answer_never_a_500(client: TestClient, body: bytes) -> None:
    assert client.post(URL, content=body).status_code == 401  # unsigned
    assert client.post(URL, content=body, headers=signed(body)).status_code == 200  # signed
