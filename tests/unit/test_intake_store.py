"""worker.intake_store: one stored outcome per item, in order; duplicates create nothing;
rejects are kept redacted; messages go out only for new orders, after commit."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tests.conftest import TEST_TOKEN, embedded_runtime
from tests.factories import make_valid_decline
from worker import intake_store
from worker.db.models import Order, OrderEvent, RejectedDecline, Suppression
from worker.intake import PAN_PLACEHOLDER
from worker.intake_store import ItemResult, accept_body, accept_declines, store_batch
from worker.runtime import Runtime

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
VISA = "4111111111111111"


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    with embedded_runtime(database_url, tmp_path, FLEXMIT_INTAKE_TOKEN=TEST_TOKEN,
                          FLEXMIT_EXPIRY_DAYS=25) as rt:
        yield rt


@pytest.fixture
def session(runtime: Runtime) -> Iterator[Session]:
    with runtime.sessions() as s:
        yield s


def store(session: Session, runtime: Runtime, raws: list[Any], **kwargs: Any) -> Any:
    return store_batch(session, raws, settings=runtime.settings, source="http", now=NOW, **kwargs)


def rows(session: Session, model: Any) -> int:
    return session.scalar(select(func.count()).select_from(model)) or 0


def sent_messages(runtime: Runtime) -> list[dict[str, Any]]:
    """Task messages on the embedded filesystem broker."""
    folder = Path(runtime.settings.broker_url.removeprefix("filesystem://")) / "queue"
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.msg"))]


def test_results_follow_input_order_and_valid_items_become_queued_orders(
        session: Session, runtime: Runtime) -> None:
    good, bad = make_valid_decline(NOW), make_valid_decline(NOW, amount=0)
    outcome = store(session, runtime, [bad, good])
    assert [(r.orderId, r.accepted, r.state) for r in outcome.results] == [
        (bad["orderId"], False, "REJECTED"), (good["orderId"], True, "QUEUED")]
    order = session.scalars(select(Order)).one()
    assert outcome.new_order_pks == [order.id]
    assert (order.amount_cents, order.currency, order.source, order.state) == (
        1999, "USD", "http", "QUEUED")
    event = session.scalars(select(OrderEvent)).one()
    assert (event.order_pk, event.to_state, event.cause) == (order.id, "QUEUED", "intake.http")
    sup = session.get(Suppression, order.id)
    assert sup is not None and sup.until == order.expiry_at


def test_a_missing_expiry_is_declined_at_plus_expiry_days(
        session: Session, runtime: Runtime) -> None:
    store(session, runtime, [make_valid_decline(NOW, expiryDateUtc=None)])
    order = session.scalars(select(Order)).one()
    assert order.expiry_at.replace(tzinfo=UTC) == NOW + timedelta(days=25)


def test_a_repeated_order_id_in_one_batch_is_a_duplicate_even_if_invalid(
        session: Session, runtime: Runtime) -> None:
    good = make_valid_decline(NOW)
    outcome = store(session, runtime, [good, {**good, "amount": 0}])
    assert [(r.accepted, r.duplicate) for r in outcome.results] == [(True, False), (True, True)]
    assert len(outcome.new_order_pks) == 1
    assert (rows(session, Order), rows(session, RejectedDecline)) == (1, 0)


def test_a_known_order_id_answers_its_order_and_is_not_sent_again(
        session: Session, runtime: Runtime) -> None:
    good = make_valid_decline(NOW)
    first = store(session, runtime, [good])
    session.commit()
    again = store(session, runtime, [good])
    [result] = again.results
    assert (result.duplicate, result.order_pk, result.state) == (
        True, first.new_order_pks[0], "QUEUED")
    assert again.new_order_pks == []
    assert (rows(session, Order), rows(session, OrderEvent)) == (1, 1)


def test_rejects_are_stored_redacted_with_their_origin(
        session: Session, runtime: Runtime) -> None:
    pan = make_valid_decline(NOW, **{"payer.phone": VISA})
    bad_id = make_valid_decline(NOW, orderId="no spaces allowed")
    store(session, runtime, [pan, bad_id, 42], source_ref="upload-7")
    stored = session.scalars(select(RejectedDecline).order_by(RejectedDecline.id)).all()
    assert [(r.order_id, r.source_ref) for r in stored] == [
        (pan["orderId"], "upload-7#1"), (None, "upload-7#2"), (None, "upload-7#3")]
    assert stored[0].payload["payer"]["phone"] == PAN_PLACEHOLDER
    assert VISA not in json.dumps(stored[0].payload)
    assert list(stored[1].errors) == ["orderId"]
    assert stored[2].errors == {"$": ["must be a JSON object: one decline"]}


def test_refs_name_each_item(session: Session, runtime: Runtime) -> None:
    store(session, runtime, [make_valid_decline(NOW), {"orderId": "x"}],
          refs=["daily.csv:2", "daily.csv:3"])
    assert session.scalars(select(RejectedDecline.source_ref)).all() == ["daily.csv:3"]


def test_wire_shows_duplicate_only_when_true() -> None:
    assert ItemResult("a", True, "QUEUED").wire() == {
        "orderId": "a", "accepted": True, "state": "QUEUED", "errors": {}}
    assert ItemResult("a", True, "QUEUED", duplicate=True).wire()["duplicate"] is True


def test_accept_declines_commits_then_sends_one_message_naming_the_new_orders(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_store, "utcnow", lambda: NOW)
    good = make_valid_decline(NOW)
    outcome = accept_declines(runtime, [good, {"orderId": "bad"}], source="cli")
    messages = sent_messages(runtime)
    assert [m["headers"]["task"] for m in messages] == ["flexmit.evaluate"]
    args = json.loads(base64.b64decode(messages[0]["body"]))[0]
    assert args == [outcome.new_order_pks]  # one batch: [the new order's pk]
    with runtime.sessions() as s:  # committed before it was sent
        assert s.get(Order, args[0][0]) is not None
    accept_declines(runtime, [good], source="cli")  # known: nothing new to send
    assert len(sent_messages(runtime)) == 1


def test_a_concurrent_insert_of_the_same_order_id_answers_as_a_duplicate(
        runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake_store, "utcnow", lambda: NOW)
    good = make_valid_decline(NOW)
    accept_declines(runtime, [good], source="http")
    real = intake_store.existing_states
    calls: list[int] = []

    def blind_once(session: Session, ids: Any) -> dict[str, tuple[int, str]]:
        calls.append(1)  # the first look misses the row, as a racing request would
        return {} if len(calls) == 1 else real(session, ids)

    monkeypatch.setattr(intake_store, "existing_states", blind_once)
    [result] = accept_declines(runtime, [good], source="http").results
    assert result.duplicate and len(calls) == 2
    with runtime.sessions() as s:
        assert rows(s, Order) == 1


@pytest.mark.parametrize("body", [
    [make_valid_decline(NOW, **{"card.token": VISA})],
    {"declines": "not a list"},
    {"declines": [], "note": VISA},
    "text",
], ids=["list", "declines_not_list", "extra_key", "string"])
def test_accept_body_keeps_a_body_of_the_wrong_shape_as_one_redacted_reject(
        runtime: Runtime, body: object) -> None:
    [result] = accept_body(runtime, body, source="queue", source_ref="task:1").results
    assert (result.accepted, result.state, list(result.errors)) == (False, "REJECTED", ["body"])
    with runtime.sessions() as s:
        row = s.scalars(select(RejectedDecline)).one()
        assert (row.source, row.source_ref, row.errors) == ("queue", "task:1", result.errors)
        assert VISA not in json.dumps(row.payload)
        assert rows(s, Order) == 0
