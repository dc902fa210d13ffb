"""May billing retry? From acceptance until a final status or the expiry: no."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.factories import make_valid_decline
from tests.pipeline import running_stack
from worker.api import create_app
from worker.db.models import Order
from worker.evaluate import evaluate_order
from worker.intake_store import accept_declines
from worker.orders import State, as_utc, utcnow
from worker.suppression import KEY, lookup

AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}


def test_suppressed_from_acceptance_lifted_by_a_final_decline(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        rt = stack.runtime
        # cents 90-94: the sandbox declines at once (worker/sandbox/outcomes.py)
        outcome = accept_declines(rt, [make_valid_decline(orderId="sup-1", amount=1090)],
                                  source="http")
        with TestClient(create_app(stack.settings, rt)) as client:
            before = client.get("/v1/suppressions/sup-1", headers=AUTH).json()
            assert before["retryAllowed"] is False
            assert before["reason"] == "rescue_in_progress"
            assert before["until"].startswith((utcnow() + timedelta(days=21)).date().isoformat())

            assert evaluate_order(rt, outcome.new_order_pks[0], owner="t") == State.DECLINED
            after = client.get("/v1/suppressions/sup-1", headers=AUTH).json()
            unknown = client.get("/v1/suppressions/never-seen", headers=AUTH).json()
            no_bearer = client.get("/v1/suppressions/sup-1")
    assert after == {"orderId": "sup-1", "retryAllowed": True, "until": None,
                     "reason": "declined"}
    assert unknown["retryAllowed"] is True and unknown["reason"] == "unknown_order"
    assert no_bearer.status_code == 401


def test_paid_orders_stay_suppressed_and_expiry_lifts_a_pending_one(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        rt = stack.runtime
        out = accept_declines(rt, [make_valid_decline(orderId="paid", amount=1099),
                                   make_valid_decline(orderId="slow", amount=1010)],
                              source="http")
        paid_pk, slow_pk = out.new_order_pks
        assert evaluate_order(rt, paid_pk, owner="t") == State.APPROVED
        assert evaluate_order(rt, slow_pk, owner="t") == State.PENDING
        with rt.sessions() as session:
            paid = lookup(session, rt.redis, "paid")
            expiry = as_utc(session.get(Order, slow_pk).expiry_at)  # type: ignore[union-attr]
            during = lookup(session, None, "slow")
            after_expiry = lookup(session, None, "slow", now=expiry + timedelta(seconds=1))
    assert (paid.retryAllowed, paid.reason) == (False, "paid_by_flexfactor")
    assert during.retryAllowed is False
    assert (after_expiry.retryAllowed, after_expiry.reason) == (True, "expired")


def test_answers_come_from_the_cache_with_the_window_as_ttl(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    """With Redis, a suppression is one key whose TTL is the rescue window: billing systems
    that ask on every retry never touch the database."""
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        rt = stack.runtime
        accept_declines(rt, [make_valid_decline(orderId="cached-1")], source="http")
        if rt.redis is None:  # embedded mode: no Redis, the database answers (still correct)
            with rt.sessions() as session:
                assert lookup(session, None, "cached-1").retryAllowed is False
            return
        ttl = rt.redis.ttl(KEY.format("cached-1"))
        assert timedelta(days=20) < timedelta(seconds=int(ttl)) <= timedelta(days=21)
        with rt.sessions() as session:
            # Change the row behind the cache's back: the answer still comes from the key.
            session.execute(update(Order).where(Order.order_id == "cached-1")
                            .values(state=State.DECLINED))
            answer = lookup(session, rt.redis, "cached-1")
            session.rollback()
    assert answer.retryAllowed is False and answer.reason == "rescue_in_progress"
