"""Intake through every door, one validation: every rule of the decline is refused with its
field named through ``POST /v1/declines`` and ``flexmit submit FILE``, and the refused item is
stored (card numbers never are). The queue door is checked against a real worker process."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.conftest import TEST_REDIS, TEST_TOKEN
from tests.factories import make_valid_decline
from tests.integration.intake_helpers import (
    AUTH,
    CASES,
    MERCHANT_TZ,
    NOW,
    VISA,
    Case,
    Door,
    assert_no_pan,
    celery_message,
    count,
    counts,
    everything_stored,
    iso,
    publish_intake,
    rejects,
    run_submit,
    write_batch,
)
from tests.pipeline import ROOT, running_stack, wait_until
from worker.api import create_app
from worker.batchfile import rejects_path
from worker.db.models import Order
from worker.runtime import Runtime
from worker.settings import Settings

STALE = iso(NOW.replace(hour=0, minute=30))  # today in UTC, yesterday evening in New York
CLI_CASES = [pytest.param(case, fmt, id=f"{case.name}-{fmt}")
             for case in CASES for fmt in ("csv", "jsonl") if fmt == "jsonl" or case.csv]


@pytest.fixture
def settings(database_url: str, shared_urls: tuple[str, str]) -> Settings:
    return Settings(_env_file=None, FLEXMIT_DATABASE_URL=database_url,  # type: ignore[call-arg]
                    FLEXMIT_REDIS_URL=shared_urls[0], FLEXMIT_BROKER_URL=shared_urls[1],
                    FLEXMIT_MERCHANT_TZ=MERCHANT_TZ, FLEXMIT_INTAKE_TOKEN=TEST_TOKEN,
                    FLEXMIT_EXPIRY_DAYS=30)


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    rt = Runtime(settings)
    yield rt
    rt.close()


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> datetime:
    """Intake judges every door at NOW (the HTTP and CLI doors run in this process)."""
    monkeypatch.setattr("worker.intake_store.utcnow", lambda: NOW)
    return NOW


@pytest.fixture
def live_door(settings: Settings, runtime: Runtime) -> Iterator[Door]:
    with TestClient(create_app(settings, runtime)) as client:
        yield Door(settings, runtime, client)


@pytest.fixture
def door(frozen: datetime, live_door: Door) -> Door:
    return live_door


# ---------------------------------------------------------------- every rule, both doors


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_http_refuses_names_the_field_and_stores_the_reject(
        case: Case, door: Door, caplog: pytest.LogCaptureFixture) -> None:
    decline = case.decline()
    resp = door.post(decline)
    assert resp.status_code == 202, resp.text
    [result] = resp.json()["results"]
    assert result["accepted"] is False and result["state"] == "REJECTED"
    assert case.field in result["errors"], result["errors"]
    assert result["orderId"] == (None if case.field == "orderId" else decline["orderId"])

    [row] = rejects(door.runtime)
    assert (row.source, row.order_id, row.errors) == ("http", result["orderId"], result["errors"])
    assert count(door.runtime, Order) == 0
    if result["orderId"] is not None:
        view = door.order(result["orderId"])
        assert view["state"] == "REJECTED" and view["errors"] == result["errors"]
    if case.pan:
        assert_no_pan(case.pan, resp.text, *everything_stored(door.runtime), caplog.text)


@pytest.mark.parametrize(("case", "fmt"), CLI_CASES)
def test_cli_refuses_names_the_field_and_stores_the_reject(
        case: Case, fmt: str, settings: Settings, runtime: Runtime, frozen: datetime,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_batch(tmp_path / f"daily.{fmt}", [case.decline()])
    result = run_submit(settings, path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert case.field in result.output  # the per-row report
    assert "1 rows: 0 accepted, 0 already known, 1 rejected" in result.output

    written = rejects_path(path)
    assert written.parent == path.parent
    [record] = [json.loads(line) for line in written.read_text().splitlines()]
    line = 2 if fmt == "csv" else 1  # the CSV header is line 1
    assert record["line"] == line and case.field in record["errors"]
    [row] = rejects(runtime)
    assert (row.source, row.source_ref, row.errors) == ("cli", f"{path.name}:{line}",
                                                       record["errors"])
    assert count(runtime, Order) == 0
    if case.pan:
        assert_no_pan(case.pan, result.output, written.read_text(), *everything_stored(runtime))


# ---------------------------------------------------------------- HTTP: batches and bodies


def test_batch_answers_each_item_in_input_order(door: Door) -> None:
    a, c = make_valid_decline(NOW), make_valid_decline(NOW)
    b = make_valid_decline(NOW, declinedAt=STALE)
    d = make_valid_decline(NOW, **{"card.token": VISA})
    results = door.results({"declines": [a, b, c, d, a, ["not", "a", "decline"]]})
    assert [r["orderId"] for r in results] == [a["orderId"], b["orderId"], c["orderId"],
                                               d["orderId"], a["orderId"], None]
    assert [r["accepted"] for r in results] == [True, False, True, False, True, False]
    assert [r["state"] for r in results] == ["QUEUED", "REJECTED", "QUEUED", "REJECTED",
                                             "QUEUED", "REJECTED"]
    assert [r.get("duplicate", False) for r in results] == [False] * 4 + [True, False]
    assert list(results[1]["errors"]) == ["declinedAt"]
    assert list(results[3]["errors"]) == ["card.token"]
    assert "$" in results[5]["errors"]
    stored = rejects(door.runtime)
    assert [(r.order_id, r.source_ref) for r in stored] == [
        (b["orderId"], "#2"), (d["orderId"], "#4"), (None, "#6")]
    assert count(door.runtime, Order) == 2


def test_ten_thousand_items_are_one_batch(door: Door) -> None:
    decline = make_valid_decline(NOW)
    results = door.results({"declines": [decline] * 10_000})  # the same orderId: cheap to store
    assert len(results) == 10_000
    assert results[0] == {"orderId": decline["orderId"], "accepted": True, "state": "QUEUED",
                          "errors": {}}
    assert all(r["duplicate"] and r["orderId"] == decline["orderId"] for r in results[1:])
    assert count(door.runtime, Order) == 1


def test_more_than_ten_thousand_is_refused_whole_and_stored(door: Door) -> None:
    body = {"declines": [{"orderId": f"big-{i}"} for i in range(10_001)]}
    resp = door.post(body)
    assert resp.status_code == 422, resp.text
    assert "10000" in resp.json()["errors"]["body"][0]
    [row] = rejects(door.runtime)
    assert row.source == "http" and list(row.errors) == ["body"]
    assert count(door.runtime, Order) == 0


@pytest.mark.parametrize("content", [
    b'{"orderId": "inv-1", "card": {"token": "4111111111111111"',  # cut off, with a PAN
    b"not json at all",
    b'[{"orderId": "inv-1"}]',  # JSON, but neither a decline nor {"declines": [...]}
    b'{"declines": []}',
    b'{"declines": [], "extra": 1}',
], ids=["truncated", "text", "array", "empty_batch", "batch_with_extra_key"])
def test_a_body_that_is_no_decline_is_422_and_stored(door: Door, content: bytes) -> None:
    resp = door.post(content=content, headers={**AUTH, "content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["errors"]["body"]
    [row] = rejects(door.runtime)
    assert row.source == "http" and row.errors == resp.json()["errors"]
    assert_no_pan(VISA, resp.text, *everything_stored(door.runtime))


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer wrong-token-0123456789"},
    {"Authorization": f"Basic {TEST_TOKEN}"}, {"Authorization": TEST_TOKEN},
], ids=["none", "wrong", "basic", "no_scheme"])
def test_without_the_bearer_nothing_is_stored(door: Door, headers: dict[str, str]) -> None:
    bad = make_valid_decline(NOW, amount=0)
    resp = door.post({"declines": [make_valid_decline(NOW), bad]}, headers=headers)
    assert resp.status_code == 401
    assert resp.headers["www-authenticate"] == "Bearer"
    assert not any(counts(door.runtime).get(t) for t in ("orders", "rejected_declines"))


# ---------------------------------------------------------------- a known orderId


def test_a_known_order_id_answers_the_existing_order_and_creates_nothing(
        door: Door, settings: Settings, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    good = make_valid_decline(NOW)
    [first] = door.results(good)
    assert first["accepted"] and "duplicate" not in first
    before = counts(door.runtime)

    changed = {**good, "amount": 5000}
    stale = {**good, "declinedAt": STALE}  # would be refused if it were new
    for again in door.results({"declines": [good, changed, stale]}):
        assert again == {"orderId": good["orderId"], "accepted": True, "state": "QUEUED",
                         "errors": {}, "duplicate": True}
    result = run_submit(settings, write_batch(tmp_path / "again.csv", [good]), monkeypatch)
    assert result.exit_code == 0, result.output
    assert "1 rows: 0 accepted, 1 already known, 0 rejected" in result.output
    assert counts(door.runtime) == before
    assert door.order(good["orderId"])["amount"] == 1999
    assert not rejects_path(tmp_path / "again.csv").exists()


def test_a_rejected_order_id_sent_again_valid_is_accepted(door: Door) -> None:
    bad = make_valid_decline(NOW, amount=0)
    [refused] = door.results(bad)
    assert refused["state"] == "REJECTED"
    assert door.order(bad["orderId"])["state"] == "REJECTED"

    [accepted] = door.results({**bad, "amount": 1999})
    assert accepted == {"orderId": bad["orderId"], "accepted": True, "state": "QUEUED",
                        "errors": {}}
    view = door.order(bad["orderId"])
    assert view["state"] == "QUEUED" and view["amount"] == 1999
    assert count(door.runtime, Order) == 1


def test_expiry_defaults_to_expiry_days_and_fourteen_days_is_enough(door: Door) -> None:
    default = make_valid_decline(NOW, expiryDateUtc=None)
    minimum = make_valid_decline(NOW, expiryDateUtc=iso(NOW + timedelta(days=14)))
    results = door.results({"declines": [default, minimum]})
    assert all(r["accepted"] for r in results), results
    assert door.order(default["orderId"])["expiryDateUtc"] == iso(NOW + timedelta(days=30))
    assert door.order(minimum["orderId"])["expiryDateUtc"] == iso(NOW + timedelta(days=14))


def test_the_real_clock_accepts_today_and_refuses_the_day_before_yesterday(
        live_door: Door) -> None:
    now = datetime.now(UTC)
    old = make_valid_decline(now, declinedAt=iso(now - timedelta(days=2)))
    results = live_door.results({"declines": [make_valid_decline(now), old]})
    assert [r["accepted"] for r in results] == [True, False]
    assert "declinedAt" in results[1]["errors"]


# ---------------------------------------------------------------- the CLI: a daily batch


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_cli_batch_progress_report_rejects_file_and_summary(
        fmt: str, settings: Settings, runtime: Runtime, frozen: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    good = [make_valid_decline(NOW), make_valid_decline(NOW)]
    bad = make_valid_decline(NOW, declinedAt=STALE)
    path = write_batch(tmp_path / f"daily.{fmt}", [good[0], bad, good[1]])
    result = run_submit(settings, path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert f"submitting {path.name}" in result.output and "3/3" in result.output  # the bar
    assert "3 rows: 2 accepted, 0 already known, 1 rejected" in result.output
    assert str(rejects_path(path)) in result.output
    [record] = [json.loads(x) for x in rejects_path(path).read_text().splitlines()]
    assert (record["orderId"], list(record["errors"])) == (bad["orderId"], ["declinedAt"])
    with runtime.sessions() as session:
        orders = session.query(Order.order_id, Order.source).order_by(Order.id).all()
    assert [tuple(o) for o in orders] == [(g["orderId"], "cli") for g in good]


def test_cli_keeps_an_unreadable_line_as_a_reject(
        settings: Settings, runtime: Runtime, frozen: datetime, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "daily.jsonl"
    good = json.dumps(make_valid_decline(NOW))
    path.write_text(f'{good}\n{{"orderId": "x", "card": {{"token": "{VISA}"\n')
    result = run_submit(settings, path, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "2 rows: 1 accepted, 0 already known, 1 rejected" in result.output
    [row] = rejects(runtime)
    assert row.source == "cli" and row.source_ref == "daily.jsonl:2" and "body" in row.errors
    assert_no_pan(VISA, result.output, rejects_path(path).read_text(),
                  *everything_stored(runtime))


# ---------------------------------------------------------------- the queue door


@pytest.mark.pipeline
def test_the_documented_queue_message_is_stored_by_a_real_worker(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """docs/intake-message.md: on Redis the raw LPUSH envelope (built here with json/base64),
    otherwise the same payloads through Celery's send_task on the filesystem broker."""
    one = make_valid_decline()
    batch = [make_valid_decline(), make_valid_decline(**{"billingAddress.addressLine1": VISA})]
    payloads = [one, {"declines": batch}]
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        ids = publish_intake(stack.runtime, payloads, raw_redis_url=TEST_REDIS)
        stack.start_worker("intake", concurrency=1)
        wait_until(lambda: count(stack.runtime, Order) == 2 and rejects(stack.runtime),
                   timeout=90, what="the worker to store both messages")
        with stack.runtime.sessions() as session:
            sources = dict(session.query(Order.order_id, Order.source).all())
        assert sources == {one["orderId"]: "queue", batch[0]["orderId"]: "queue"}
        [row] = rejects(stack.runtime)
        assert (row.source, row.source_ref, row.order_id) == (
            "queue", f"task:{ids[1]}#2", batch[1]["orderId"])
        assert list(row.errors) == ["billingAddress.addressLine1"]
        assert_no_pan(VISA, *everything_stored(stack.runtime))


def test_the_documented_envelope_matches_the_one_tested() -> None:
    text = (ROOT / "docs" / "intake-message.md").read_text()
    decline, envelope = (json.loads(b) for b in re.findall(r"```json\n(.*?)```", text, re.S)[:2])
    expected = celery_message(decline, envelope["headers"]["id"],
                              delivery_tag=envelope["properties"]["delivery_tag"])
    assert envelope == expected
    one_line = re.search(r"LPUSH flexmit '(.*)'", text)
    assert one_line is not None and json.loads(one_line.group(1)) == expected
