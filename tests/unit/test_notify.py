"""Delivering the billing outbox: headers and body, the ladder, order, idempotency, no URL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from tests.notify_helpers import (
    CALLBACK_URL,
    SECRET,
    Billing,
    FakeCelery,
    add_orders,
    move,
    notify_settings,
    pushes,
)
from worker.notify import (
    DEFAULT_LADDER_S,
    NO_URL,
    claim_push,
    deliver_due,
    deliver_push,
    push_ladder,
    retry_delay,
    sweep_pushes,
)
from worker.notify_signing import verify_push
from worker.orders import State
from worker.runtime import Runtime

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
CONTRACT_FIELDS = {"orderId", "state", "previousState", "at", "orderSessionKey", "amount",
                   "currency", "retryAllowed"}


@pytest.fixture
def rt(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime(notify_settings(database_url, tmp_path))
    yield runtime
    runtime.close()


def approved(rt: Runtime, count: int = 1) -> list[str]:
    ids = add_orders(rt, count, now=T0)
    for oid in ids:
        move(rt, oid, State.APPROVED, now=T0)
    return ids


def test_ladder_default_and_override() -> None:
    ladder = push_ladder(SimpleNamespace())  # type: ignore[arg-type]
    assert ladder == [60, 300, 1800, 7200, 43200, 86400] == list(DEFAULT_LADDER_S)
    delays = [retry_delay(ladder, n).total_seconds() for n in range(1, 9)]
    assert delays == [60, 300, 1800, 7200, 43200, 86400, 86400, 86400]  # the last step repeats
    assert push_ladder(SimpleNamespace(push_ladder_s=[1, 2])) == [1, 2]  # type: ignore[arg-type]


def test_push_is_signed_and_carries_the_contract_fields(rt: Runtime) -> None:
    (oid,) = approved(rt)
    billing = Billing()
    outcomes = deliver_due(rt, owner="t", now=T0, http=billing.client())
    assert [o.result for o in outcomes] == ["delivered"]
    (request,) = billing.requests
    body = request.content
    payload = json.loads(body)
    assert str(request.url) == CALLBACK_URL
    assert request.headers["content-type"] == "application/json"
    assert payload.keys() >= CONTRACT_FIELDS
    assert payload["orderId"] == oid and payload["state"] == "APPROVED"
    assert payload["previousState"] == "QUEUED" and payload["retryAllowed"] is False
    assert request.headers["flexmit-event-id"] == payload["eventId"]
    assert verify_push(body, request.headers["flexmit-timestamp"],
                       request.headers["flexmit-signature"], SECRET)
    (row,) = pushes(rt)
    assert row.delivered_at is not None and row.last_status == 200 and row.attempts == 1


def test_failures_follow_the_ladder_until_billing_answers_2xx(rt: Runtime) -> None:
    approved(rt)
    codes = iter([500, 503, 404, 200])
    billing = Billing(answer=lambda _r: next(codes))
    http = billing.client()
    now = T0
    for step in (60, 300, 1800):
        assert [o.result for o in deliver_due(rt, owner="t", now=now, http=http)] == ["failed"]
        (row,) = pushes(rt)
        assert row.next_attempt_at is not None
        assert row.next_attempt_at.replace(tzinfo=UTC) == now + timedelta(seconds=step)
        # Not due a second before the ladder says: nothing is sent.
        assert deliver_due(rt, owner="t", now=now + timedelta(seconds=step - 1), http=http) == []
        now += timedelta(seconds=step)
    assert [o.result for o in deliver_due(rt, owner="t", now=now, http=http)] == ["delivered"]
    (row,) = pushes(rt)
    assert row.attempts == 4 and row.delivered_at is not None and row.last_error is None
    assert len(set(billing.event_ids())) == 1 and len(billing.requests) == 4


def test_errors_are_short_and_never_quote_the_url(rt: Runtime) -> None:
    approved(rt)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot reach {request.url}", request=request)

    deliver_due(rt, owner="t", now=T0, http=httpx.Client(transport=httpx.MockTransport(refuse)))
    (row,) = pushes(rt)
    assert row.last_error == "network: ConnectError" and row.last_status is None
    assert row.delivered_at is None and row.attempts == 1


def test_no_callback_url_parks_pushes_and_sends_nothing(database_url: str,
                                                         tmp_path: Path) -> None:
    settings = notify_settings(database_url, tmp_path, FLEXMIT_BILLING_CALLBACK_URL=None)
    rt = Runtime(settings)
    approved(rt, 2)
    celery = FakeCelery()
    assert sweep_pushes(rt.sessions, celery, settings, now=T0) == 0  # type: ignore[arg-type]
    assert celery.sent == []
    billing = Billing()
    assert deliver_due(rt, owner="t", now=T0 + timedelta(days=3), http=billing.client()) == []
    assert billing.requests == []
    for row in pushes(rt):
        assert row.delivered_at is None and row.next_attempt_at is None
        assert row.last_error == NO_URL
    rt.close()


def test_two_sweeps_at_once_send_each_push_once(rt: Runtime) -> None:
    approved(rt, 3)
    first, second = FakeCelery(), FakeCelery()
    assert sweep_pushes(rt.sessions, first, rt.settings, now=T0) == 3  # type: ignore[arg-type]
    assert sweep_pushes(rt.sessions, second, rt.settings, now=T0) == 0  # type: ignore[arg-type]
    assert {name for name, _ in first.sent} == {"flexmit.push"}
    assert sorted(args[0] for _, args in first.sent) == [p.id for p in pushes(rt)]


def test_a_claimed_or_stale_message_delivers_nothing(rt: Runtime) -> None:
    approved(rt)
    (row,) = pushes(rt)
    billing = Billing(answer=lambda _r: 500)
    with rt.sessions() as session:
        assert claim_push(session, row.id, "other-worker", T0, 60)
        session.commit()
    assert deliver_push(rt, row.id, owner="me", now=T0, http=billing.client()).result == \
        "not_claimed"
    assert billing.requests == []
    later = T0 + timedelta(minutes=5)  # the other worker's lease ran out; it failed meanwhile
    assert deliver_push(rt, row.id, owner="me", attempt=0, now=later,
                        http=billing.client()).result == "failed"
    # A duplicate of the attempt-0 message arrives after that failure: it does nothing.
    assert deliver_push(rt, row.id, owner="dup", attempt=0, now=later,
                        http=billing.client()).result == "not_claimed"
    assert len(billing.requests) == 1


def test_concurrent_deliverers_post_each_event_once(rt: Runtime) -> None:
    approved(rt, 20)
    billing = Billing()
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def run(owner: str) -> None:
        other = Runtime(rt.settings)
        barrier.wait()
        results.extend(deliver_due(other, owner=owner, now=T0, http=billing.client()))
        other.close()

    threads = [threading.Thread(target=run, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    ids = billing.event_ids()
    assert len(ids) == 20 and len(set(ids)) == 20
    assert sum(o.result == "delivered" for o in results) == 20
    assert all(p.delivered_at is not None for p in pushes(rt))


def test_an_orders_pushes_go_out_in_order(rt: Runtime) -> None:
    (oid,) = add_orders(rt, 1, now=T0)
    move(rt, oid, State.APPROVED, now=T0)
    move(rt, oid, State.REFUNDED, now=T0 + timedelta(seconds=1))
    states: list[str] = []
    fail = {"on": True}

    def answer(request: httpx.Request) -> int:
        states.append(json.loads(request.content)["state"])
        return 500 if fail["on"] else 200

    http = Billing(answer=answer).client()
    deliver_due(rt, owner="t", now=T0 + timedelta(seconds=2), http=http)
    assert states == ["APPROVED"]  # REFUNDED waits behind the undelivered APPROVED
    fail["on"] = False
    deliver_due(rt, owner="t", now=T0 + timedelta(minutes=2), http=http)
    assert states == ["APPROVED", "APPROVED", "REFUNDED"]
    assert all(p.delivered_at is not None for p in pushes(rt))
