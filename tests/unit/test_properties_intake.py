"""Any body at ``POST /v1/declines`` gets 202 or 422 with field errors, never a 500, and every
item that is refused is stored (hypothesis: arbitrary JSON and mutated valid declines)."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from tests.factories import REMOVE, make_valid_decline
from tests.webhooks_helpers import make_runtime
from worker.api import create_app
from worker.db.models import Order, RejectedDecline

AUTH = {"Authorization": "Bearer test-intake-token-0123456789"}
# Every field of CONTRACT.md's decline, objects and leaves: what a mutation may hit.
FIELDS = [
    "orderId", "declinedAt", "amount", "currency", "isRecurring", "expiryDateUtc", "siteId",
    "subscription", "subscription.id", "subscription.interval", "subscription.paymentNumber",
    "subscription.totalPayments", "subscription.price", "decline", "decline.pspTransactionId",
    "decline.responseCode", "decline.processor", "card", "card.token", "card.bin",
    "card.last4", "card.expMonth", "card.expYear", "card.holderName", "payer", "payer.email",
    "payer.phone", "billingAddress", "billingAddress.state", "billingAddress.zipCode",
    "billingAddress.countryCode", "surprise", "card.surprise",
]
# Any character, lone surrogates included (a JSON "\ud800" escape decodes to one).
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=30)
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT
           | st.sampled_from(["4111111111111111", "4111 1111 1111 1111", "", " ", "US", "1999",
                              "2026-11-25T08:15:00Z", "9" * 40]))
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(ANY_TEXT, inner, max_size=4), max_leaves=12)
MUTATION = st.tuples(st.sampled_from(FIELDS), st.just(REMOVE) | JSON)


@st.composite
def mutated_decline(draw: st.DrawFn) -> dict[str, Any]:
    """A valid decline with a few fields replaced by anything, or removed."""
    changes: dict[str, Any] = dict(draw(st.lists(MUTATION, max_size=4)))
    try:
        return make_valid_decline(**changes)
    except (AttributeError, TypeError):  # e.g. "card" replaced, then "card.token" set
        return make_valid_decline()


ITEM = mutated_decline() | JSON
BODY = (ITEM | st.fixed_dictionaries({"declines": st.lists(ITEM, max_size=5)})
        | st.dictionaries(st.sampled_from(["declines", "extra"]), JSON, max_size=2))


def counts(client: TestClient) -> tuple[int, int]:
    rt = client.app.state.runtime  # type: ignore[attr-defined]
    with rt.sessions() as session:
        rejected = session.scalar(select(func.count()).select_from(RejectedDecline)) or 0
        orders = session.scalar(select(func.count()).select_from(Order)) or 0
        return rejected, orders


def check_answer(client: TestClient, content: bytes) -> set[str]:
    """POST ``content``; assert the contract's answer and that nothing was dropped; returns
    what happened (``body_rejected``, ``accepted``, ``refused``)."""
    rejected_before, orders_before = counts(client)
    resp = client.post("/v1/declines", content=content,
                       headers={**AUTH, "content-type": "application/json"})
    rejected_after, orders_after = counts(client)
    assert resp.status_code in (202, 422), resp.text
    body = resp.json()
    if resp.status_code == 422:
        assert body["errors"]["body"] and rejected_after == rejected_before + 1
        assert orders_after == orders_before
        return {"body_rejected"}
    results = body["results"]
    refused = [r for r in results if not r["accepted"]]
    new = [r for r in results if r["accepted"] and not r.get("duplicate")]
    for result in refused:
        assert result["state"] == "REJECTED" and result["errors"], result
        assert all(isinstance(k, str) and k and v and all(isinstance(m, str) for m in v)
                   for k, v in result["errors"].items()), result
    assert rejected_after - rejected_before == len(refused)  # every refused item is kept
    assert orders_after - orders_before == len(new)
    return {name for name, items in (("accepted", new), ("refused", refused)) if items}


def test_any_json_body_gets_a_contract_answer(database_url: str,
                                              shared_urls: tuple[str, str]) -> None:
    rt = make_runtime(database_url, shared_urls)
    seen: set[str] = set()
    with TestClient(create_app(rt.settings, rt)) as client:

        @settings(max_examples=150, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(BODY)
        @example({"orderId": "\ud800", "x\udc00": "\x00"})  # lone surrogates, NUL
        @example({"declines": [{"card": {"token": "4111111111111111"}}, None, []]})
        @example({**make_valid_decline(orderId="inv\x00"), "payer": {"email": "\udfff@x.io"}})
        def run(body: Any) -> None:
            seen.update(check_answer(client, json.dumps(body).encode()))

        run()
    rt.close()
    assert seen == {"body_rejected", "accepted", "refused"}  # every branch was exercised


def test_any_bytes_get_a_contract_answer(database_url: str,
                                         shared_urls: tuple[str, str]) -> None:
    rt = make_runtime(database_url, shared_urls)
    seen: set[str] = set()
    valid = json.dumps({"declines": [make_valid_decline()]}).encode()
    with TestClient(create_app(rt.settings, rt)) as client:

        @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(st.binary(max_size=200) | st.integers(0, len(valid)).map(lambda n: valid[:n]))
        @example(valid)
        def run(content: bytes) -> None:
            seen.update(check_answer(client, content))

        run()
    rt.close()
    assert {"body_rejected", "accepted"} <= seen
