"""Any delivery at ``POST /v1/flexfactor/webhooks`` gets 200 or 401, never a 500, and every one
is stored (hypothesis: arbitrary bytes and x-fc-* headers; validly signed arbitrary JSON)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.webhooks_helpers import HOST, KEY, make_order, make_runtime
from worker.api import create_app
from worker.db.models import WebhookEvent
from worker.flexfactor.signing import sign_webhook

HOOK = "/v1/flexfactor/webhooks"
SIGNED_HEADERS = ["x-fc-nonce", "x-fc-date", "x-fc-content-sha512", "x-fc-signature",
                  "x-fc-authorization"]
# What an HTTP client can put in a header value: printable ASCII (no CR/LF).
HEADER_VALUE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=120)
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=80)  # lone surrogates too
SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(ANY_TEXT, inner, max_size=4), max_leaves=12)
EVENTS = st.sampled_from(["order.completed", "order.expired", "order.cancelled",
                          "order.refunded", "payment.chargeback.received", "challenge.passed",
                          "payout.created", "order.unheard_of"]) | ANY_TEXT


def stored(client: TestClient) -> int:
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.sessions() as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent)) or 0


def post(client: TestClient, body: bytes, headers: dict[str, str]) -> int:
    """Deliver; assert the answer is 200/401 and that the delivery was stored."""
    before = stored(client)
    resp = client.post(HOOK, content=body, headers=headers)
    assert resp.status_code in (200, 401), resp.text
    assert stored(client) == before + 1, "a delivery was not stored"
    return resp.status_code


@st.composite
def envelopes(draw: st.DrawFn, known: list[dict[str, str]]) -> dict[str, Any]:
    """A PascalCase body whose fields are anything, sometimes naming a real order."""
    body: dict[str, Any] = draw(st.dictionaries(ANY_TEXT, JSON, max_size=3))
    order = draw(st.sampled_from([*known, {}]))
    body["Event"] = draw(EVENTS | JSON)
    body["OrderId"] = order.get("key") if draw(st.booleans()) else draw(JSON)
    body["ExternalOrderId"] = order.get("id") if draw(st.booleans()) else draw(JSON)
    for name in ("ConfirmationId", "TimeStamp", "IsResent"):
        if draw(st.booleans()):
            body[name] = draw(JSON)
    return body


def test_any_bytes_and_headers_are_answered_and_kept(database_url: str,
                                                      shared_urls: tuple[str, str]) -> None:
    rt = make_runtime(database_url, shared_urls)
    with TestClient(create_app(rt.settings, rt)) as client:

        @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.binary(max_size=300), st.dictionaries(st.sampled_from(SIGNED_HEADERS),
                                                        HEADER_VALUE))
        @example(b'{"Event":"order.completed"}', {"x-fc-authorization": "HMAC-SHA512 "})
        @example(b"\x00\xff", {"x-fc-date": "Mon, 99 Foo 2026 25:61:61 GMT"})
        def run(body: bytes, headers: dict[str, str]) -> None:
            assert post(client, body, headers) == 401  # nothing unsigned gets through

        run()
    rt.close()


def test_signed_arbitrary_json_is_acknowledged_and_kept(database_url: str,
                                                         shared_urls: tuple[str, str]) -> None:
    rt = make_runtime(database_url, shared_urls)
    known = [{"id": o.order_id, "key": str(o.order_session_key)}
             for o in (make_order(rt), make_order(rt))]
    with TestClient(create_app(rt.settings, rt)) as client:

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(JSON | envelopes(known))
        @example({"Event": "order.completed", "OrderId": "\ud800", "ExternalOrderId": "\x00"})
        @example({"Event": "\udfff", "ConfirmationId": "\ud800" * 3})
        def run(payload: Any) -> None:
            body = json.dumps(payload).encode()
            headers = sign_webhook(body, key_b64=KEY, host=HOST)
            assert post(client, body, headers) == 200

        run()
    rt.close()
