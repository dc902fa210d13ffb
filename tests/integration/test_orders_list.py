"""``GET /v1/orders``: filters, cursor paging that never skips or repeats, the bearer."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.notify_helpers import TOKEN, add_orders, move, notify_settings
from worker.api import create_app
from worker.orders import State
from worker.runtime import Runtime

AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = datetime.now(UTC).replace(hour=1, minute=0, second=0, microsecond=0)


@pytest.fixture
def rt(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    runtime = Runtime(notify_settings(database_url, tmp_path))
    yield runtime
    runtime.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt.settings, rt)) as test_client:
        yield test_client


def get(client: TestClient, **params: Any) -> dict[str, Any]:
    resp = client.get("/v1/orders", params=params, headers=AUTH)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def all_pages(client: TestClient, **params: Any) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = []
    page = get(client, **params)
    while True:
        orders += page["orders"]
        if page["nextCursor"] is None:
            return orders
        page = get(client, **{**params, "cursor": page["nextCursor"]})


def seed(rt: Runtime) -> dict[str, list[str]]:
    """10 queued, 5 approved at T0+1h, 5 declined at T0+2h."""
    ids = add_orders(rt, 20, now=T0)
    for i, oid in enumerate(ids[10:15]):
        move(rt, oid, State.APPROVED, now=T0 + timedelta(hours=1, seconds=i))
    for i, oid in enumerate(ids[15:]):
        move(rt, oid, State.DECLINED, now=T0 + timedelta(hours=2, seconds=i))
    return {"QUEUED": ids[:10], "APPROVED": ids[10:15], "DECLINED": ids[15:]}


def test_bearer_is_required(client: TestClient) -> None:
    assert client.get("/v1/orders").status_code == 401
    assert client.get("/v1/orders", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_filters_by_state_repeated_or_comma_separated(rt: Runtime, client: TestClient) -> None:
    ids = seed(rt)
    approved = get(client, state="APPROVED")["orders"]
    assert [o["orderId"] for o in approved] == ids["APPROVED"]
    assert all(o["state"] == "APPROVED" and o["retryAllowed"] is False for o in approved)
    both = {o["orderId"] for o in get(client, state=["APPROVED", "DECLINED"])["orders"]}
    assert both == set(ids["APPROVED"]) | set(ids["DECLINED"])
    comma = {o["orderId"] for o in get(client, state="APPROVED,DECLINED")["orders"]}
    assert comma == both
    assert len(get(client)["orders"]) == 20


def test_unknown_state_is_a_clear_422(client: TestClient) -> None:
    resp = client.get("/v1/orders", params={"state": "APPROVED,PAID"}, headers=AUTH)
    assert resp.status_code == 422
    assert "PAID" in resp.json()["detail"] and "DECLINED" in resp.json()["detail"]


def test_updated_since_is_inclusive_and_needs_a_zone(rt: Runtime, client: TestClient) -> None:
    ids = seed(rt)
    since = (T0 + timedelta(hours=2)).isoformat().replace("+00:00", "Z")
    assert [o["orderId"] for o in get(client, updatedSince=since)["orders"]] == ids["DECLINED"]
    offset = (T0 + timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5))).isoformat()
    assert offset.endswith("-05:00")  # the same instant written with another offset
    assert len(get(client, updatedSince=offset)["orders"]) == 10
    for bad in ("2026-11-25T08:15:00", "yesterday"):
        resp = client.get("/v1/orders", params={"updatedSince": bad}, headers=AUTH)
        assert resp.status_code == 422 and "updatedSince" in resp.json()["detail"]


def test_cursor_pages_return_every_order_once_in_update_order(rt: Runtime,
                                                             client: TestClient) -> None:
    ids = seed(rt)  # ten orders share one updatedAt: the id breaks the tie
    orders = all_pages(client, limit=3)
    assert [o["orderId"] for o in orders] == ids["QUEUED"] + ids["APPROVED"] + ids["DECLINED"]
    stamps = [o["updatedAt"] for o in orders]
    assert stamps == sorted(stamps)
    exact = get(client, limit=20)
    assert len(exact["orders"]) == 20 and exact["nextCursor"] is None


def test_an_order_changed_while_paging_is_seen_again_not_skipped(rt: Runtime,
                                                                client: TestClient) -> None:
    ids = seed(rt)
    first = get(client, limit=5)
    seen = [o["orderId"] for o in first["orders"]]
    move(rt, seen[0], State.CANCELLED, now=T0 + timedelta(hours=3))  # changes mid-paging
    rest = all_pages(client, limit=5, cursor=first["nextCursor"])
    after = [o["orderId"] for o in rest]
    assert set(seen) | set(after) == {oid for group in ids.values() for oid in group}
    assert after[-1] == seen[0] and rest[-1]["state"] == "CANCELLED"


def test_bad_limit_or_cursor_is_422(client: TestClient) -> None:
    for params in ({"limit": 1001}, {"limit": 0}, {"cursor": "not-a-cursor"}):
        assert client.get("/v1/orders", params=params, headers=AUTH).status_code == 422
