"""Pushes to billing over real HTTP: a receiver that fails at first, retries on the ladder."""

from __future__ import annotations

import json
import socket
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.notify_helpers import SECRET, add_orders, move, notify_settings, pushes
from worker.notify import deliver_due
from worker.notify_signing import verify_push
from worker.orders import State, as_utc
from worker.runtime import Runtime
from worker.sandbox.testing import webhook_receiver

T0 = datetime.now(UTC).replace(microsecond=0)


def test_failing_receiver_gets_each_event_once_after_ladder_retries(database_url: str,
                                                                   tmp_path: Path) -> None:
    with webhook_receiver() as billing:
        billing.fail_first = 3  # the first three deliveries get a 500
        rt = Runtime(notify_settings(database_url, tmp_path,
                                     FLEXMIT_BILLING_CALLBACK_URL=billing.url))
        ids = add_orders(rt, 3, now=T0)
        for oid, final in zip(ids, (State.APPROVED, State.DECLINED, State.EXPIRED), strict=True):
            move(rt, oid, final, now=T0)

        first = deliver_due(rt, owner="w", now=T0)
        assert [o.result for o in first] == ["failed", "failed", "failed"]
        assert all(as_utc(p.next_attempt_at) == T0 + timedelta(seconds=60)  # type: ignore[arg-type]
                   for p in pushes(rt))
        assert deliver_due(rt, owner="w", now=T0 + timedelta(seconds=59)) == []
        second = deliver_due(rt, owner="w", now=T0 + timedelta(seconds=60))
        assert [o.result for o in second] == ["delivered"] * 3
        received = billing.snapshot()
        rt.close()

    delivered = Counter(json.loads(r.body)["eventId"] for r in received if r.status == 200)
    assert sorted(delivered.values()) == [1, 1, 1]
    assert {p.event_id for p in pushes(rt)} == set(delivered)
    assert all(verify_push(r.body, r.headers["flexmit-timestamp"],
                           r.headers["flexmit-signature"], SECRET) for r in received)
    states = {json.loads(r.body)["orderId"]: json.loads(r.body) for r in received}
    assert {s["state"] for s in states.values()} == {"APPROVED", "DECLINED", "EXPIRED"}
    assert all(s["retryAllowed"] == (s["state"] != "APPROVED") for s in states.values())
    assert all(p.attempts == 2 and p.last_status == 200 for p in pushes(rt))


def test_unreachable_billing_is_retried_later(database_url: str, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rt = Runtime(notify_settings(database_url, tmp_path,
                                 FLEXMIT_BILLING_CALLBACK_URL=f"http://127.0.0.1:{port}/cb"))
    (oid,) = add_orders(rt, 1, now=T0)
    move(rt, oid, State.DECLINED, now=T0)
    assert [o.result for o in deliver_due(rt, owner="w", now=T0)] == ["failed"]
    (row,) = pushes(rt)
    rt.close()
    assert row.last_error == "network: ConnectError" and row.delivered_at is None
    assert as_utc(row.next_attempt_at) == T0 + timedelta(seconds=60)  # type: ignore[arg-type]
