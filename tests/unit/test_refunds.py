"""worker.refunds over a real (SQLite) database and a scripted FlexFactor (httpx.MockTransport)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from worker import attempts
from worker.db.models import Attempt, Order, OrderEvent
from worker.flexfactor.client import FlexFactorClient
from worker.orders import utcnow
from worker.refunds import (
    CancelResult,
    RefundResult,
    Refused,
    cancel_order,
    check_refund,
    refund_order,
)
from worker.runtime import Runtime
from worker.settings import Settings

Handler = Callable[[httpx.Request], httpx.Response]
OK = {"success": True, "status": "SUCCESS", "responseCode": "0", "transactionId": "tx-1",
      "errors": [], "customProperties": {}}


class Script:
    """FlexFactor: tokens on demand, /refund answered by ``refund`` (recording each body)."""

    def __init__(self, refund: Handler) -> None:
        self.refund = refund
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth2/token"):
            return httpx.Response(200, json={"accessToken": "t", "expires": 9_999_999_999_999})
        self.bodies.append(json.loads(request.content))
        return self.refund(request)


@pytest.fixture
def rt(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(FLEXMIT_DATABASE_URL=database_url,
                        FLEXMIT_REDIS_URL=f"file://{tmp_path}", FLEXFACTOR_BASE_URL="https://ff/v1",
                        FLEXFACTOR_APP_KEY="k", FLEXFACTOR_APP_SECRET="s-123",
                        FLEXFACTOR_MID="m")
    runtime = Runtime(settings)
    yield runtime
    runtime.close()


def use(rt: Runtime, refund: Handler) -> Script:
    """Give ``rt`` a FlexFactor client that talks to a script (no sleeps between retries)."""
    script = Script(refund)
    http = httpx.Client(transport=httpx.MockTransport(script))
    rt.__dict__["flexfactor"] = FlexFactorClient(
        base_url="https://ff/v1", app_key="k", app_secret="s", mid="m", http=http,
        sleep=lambda _s: None, on_attempt=attempts.record)
    return script


def add_order(rt: Runtime, state: str = "APPROVED", amount: int = 1999, refunded: int = 0,
              key: str | None = "sess-1", **extra: Any) -> str:
    now = utcnow()
    order = Order(order_id=f"o-{state}-{amount}", state=state, mode="managed", source="http",
                  amount_cents=amount, currency="USD", refunded_cents=refunded, declined_at=now,
                  expiry_at=now + timedelta(days=21), decline={}, order_session_key=key,
                  created_at=now, updated_at=now, **extra)
    with rt.sessions() as session:
        session.add(order)
        session.commit()
    return order.order_id


def load(rt: Runtime, order_id: str) -> tuple[Order, list[str]]:
    with rt.sessions() as session:
        order = session.scalar(select(Order).where(Order.order_id == order_id))
        assert order is not None
        causes = list(session.scalars(select(OrderEvent.cause)
                                      .where(OrderEvent.order_pk == order.id)))
        return order, causes


def test_a_full_refund_sends_19_99_and_records_it(rt: Runtime) -> None:
    script = use(rt, lambda _r: httpx.Response(200, json=OK))
    order_id = add_order(rt)
    result = refund_order(rt, order_id, owner="t")
    assert script.bodies == [{"amountToRefund": 19.99}]
    assert result == RefundResult(result.order_pk, order_id, "REFUNDED", 1999, 1999, 0, "USD",
                                  "tx-1")
    assert result.wire()["amountToRefund"] == "19.99"
    order, causes = load(rt, order_id)
    assert (order.state, order.refunded_cents, order.claim_owner) == ("REFUNDED", 1999, None)
    assert causes == ["refund"]


def test_a_second_partial_refund_stays_partially_refunded(rt: Runtime) -> None:
    script = use(rt, lambda _r: httpx.Response(200, json=OK))
    order_id = add_order(rt, state="PARTIALLY_REFUNDED", refunded=500)
    result = refund_order(rt, order_id, 1000, owner="t")
    assert script.bodies == [{"amountToRefund": 10.0}]
    assert (result.state, result.refunded_cents, result.remaining_cents) == (
        "PARTIALLY_REFUNDED", 1500, 499)
    assert result.summary() == ("refunded 10.00 USD of order o-PARTIALLY_REFUNDED-1999: now "
                                "PARTIALLY_REFUNDED, 4.99 USD left to refund")


@pytest.mark.parametrize(("reply", "status", "cause"), [
    (httpx.ReadTimeout("slow"), 504, "refund.outcome_unknown"),
    (httpx.Response(500, json={"title": "boom", "traceId": "tr-9"}), 504,
     "refund.outcome_unknown"),
    (httpx.Response(503, json={"title": "down"}), 503, "refund.not_sent"),
    (httpx.Response(404, json={"title": "Not Found"}), 502, "refund.failed"),
    (httpx.Response(200, json={"success": False, "status": "FAILED", "responseCode": "2001",
                               "responseMessage": "Amount to refund (19.99) is greater"}),
     409, "refund.refused_by_flexfactor"),
])
def test_a_failed_refund_changes_nothing_but_the_audit_trail(
        rt: Runtime, reply: httpx.Response | Exception, status: int, cause: str) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if isinstance(reply, Exception):
            raise reply
        return reply

    use(rt, answer)
    order_id = add_order(rt)
    with pytest.raises(Refused) as caught:
        refund_order(rt, order_id, owner="t")
    assert caught.value.status == status
    order, causes = load(rt, order_id)
    assert (order.state, order.refunded_cents, order.claim_owner) == ("APPROVED", 0, None)
    assert causes == [cause]
    with rt.sessions() as session:
        assert "/orders/{id}/refund" in session.scalars(select(Attempt.route)).all()
    if cause == "refund.refused_by_flexfactor":
        assert caught.value.extra["responseCode"] == "2001"


def test_an_order_claimed_by_another_refund_is_refused_without_a_call(rt: Runtime) -> None:
    script = use(rt, lambda _r: httpx.Response(200, json=OK))
    order_id = add_order(rt, claimed_until=utcnow() + timedelta(seconds=60),
                         claim_owner="other")
    with pytest.raises(Refused, match="in progress") as caught:
        refund_order(rt, order_id, owner="t")
    assert caught.value.status == 409 and script.bodies == []


def order_in(state: str, refunded: int = 0, key: str | None = "k") -> Order:
    return Order(order_id="o", state=state, amount_cents=1999, refunded_cents=refunded,
                 order_session_key=key)


@pytest.mark.parametrize(("order", "amount", "expected"), [
    (order_in("APPROVED"), None, 1999),
    (order_in("APPROVED"), 1, 1),
    (order_in("PARTIALLY_REFUNDED", 500), None, 1499),
    (order_in("PARTIALLY_REFUNDED", 500), 1499, 1499),
])
def test_check_refund_accepts(order: Order, amount: int | None, expected: int) -> None:
    assert check_refund(order, amount) == expected


@pytest.mark.parametrize(("order", "amount", "status"), [
    (order_in("APPROVED"), 2000, 422),
    (order_in("PARTIALLY_REFUNDED", 500), 1500, 422),
    (order_in("APPROVED"), 0, 422),
    (order_in("APPROVED"), True, 422),
    (order_in("APPROVED"), 19.99, 422),
    (order_in("REFUNDED", 1999), None, 409),
    (order_in("PENDING"), None, 409),
    (order_in("CHARGEBACK"), None, 409),
    (order_in("APPROVED", key=None), None, 409),
    (order_in("APPROVED", 1999), None, 409),  # all of it is being refunded right now
])
def test_check_refund_refuses(order: Order, amount: Any, status: int) -> None:
    with pytest.raises(Refused) as caught:
        check_refund(order, amount)
    assert caught.value.status == status


@pytest.mark.parametrize(("state", "hint"), [("APPROVED", True), ("PARTIALLY_REFUNDED", True),
                                             ("REFUNDED", False), ("DECLINED", False)])
def test_cancel_refuses_what_is_charged_or_over(rt: Runtime, state: str, hint: bool) -> None:
    order_id = add_order(rt, state=state)
    with pytest.raises(Refused) as caught:
        cancel_order(rt, order_id)
    assert caught.value.status == 409
    assert ("/refund" in caught.value.message) is hint
    assert load(rt, order_id)[0].state == state


def test_cancel_summaries() -> None:
    assert "external-cancel" in CancelResult(1, "o", "CANCELLED", True, False).summary()
    assert "already" in CancelResult(1, "o", "CANCELLED", False, True).summary()


def test_a_webhook_processed_during_the_call_is_not_counted_twice(rt: Runtime) -> None:
    """FlexFactor's order.refunded (no amount in it) may be applied before our answer is
    recorded: it must see the partial refund, and billing hears of the change once."""
    from worker.db.models import BillingPush
    from worker.orders import State, transition
    from worker.webhook_process import target_state

    order_id = add_order(rt)

    def refund_then_webhook(_request: httpx.Request) -> httpx.Response:
        with rt.sessions() as session:
            order = session.scalar(select(Order).where(Order.order_id == order_id))
            assert order is not None
            target = target_state("order.refunded", order)
            assert target == State.PARTIALLY_REFUNDED  # it saw the 500 cents being refunded
            transition(session, order, target, cause="webhook")
            session.commit()
        return httpx.Response(200, json=OK)

    use(rt, refund_then_webhook)
    result = refund_order(rt, order_id, 500, owner="t")
    order, causes = load(rt, order_id)
    assert (result.state, order.refunded_cents) == ("PARTIALLY_REFUNDED", 500)
    assert causes == ["webhook", "refund"]
    with rt.sessions() as session:
        pushes = session.scalars(select(BillingPush.payload)).all()
    assert [p["state"] for p in pushes] == ["PARTIALLY_REFUNDED"]
