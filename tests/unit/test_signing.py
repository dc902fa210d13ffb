"""Webhook signing (fact sheet §6.4), including FlexFactor's public sample vector."""

from __future__ import annotations

import base64
import os
from email.utils import parsedate_to_datetime
from typing import Any

import pytest

from worker.flexfactor.signing import (
    NonceCache,
    WebhookVerificationError,
    content_hash,
    sign_webhook,
    string_to_sign,
    verify_webhook,
)

# Public sample vector, verbatim from FlexCharge/FlexCharge.NodeJs.SampleClient,
# src/controllers/SampleWebhookController.ts (commit 08218af942666e0c1d03c36977fc12c2d63329a9).
SAMPLE_BODY = (
    b'{"Event":"order.completed","TimeStamp":"2023-03-20T17:16:40.898703Z","EventData":null,'
    b'"ExternalOrderId":"a9735210-1349-49bf-bfde-b737dd07872a",'
    b'"OrderId":"ac9674ed-cbfe-49aa-bc8b-eb1d2b74c429","ConfirmationId":"22ACD1D9",'
    b'"IsTestMode":true,"IsResent":false}'
)
SAMPLE_HEADERS = {
    "Content-Type": "application/json",
    "Host": "fctestwebhook.free.beeceptor.com",
    "x-fc-authorization": (
        "HMAC-SHA512 SignedHeaders=x-fc-nonce;x-fc-date;host;x-fc-content-sha512&Signature="
        "+HXN8ZewgINLk+uC/UI92HSWmLK7gZOECPxOGEM91ATyfyzScMF/+osEK5B0UjO7OFqahDvesSo8jmUWMZtQnA=="
    ),
    "x-fc-content-sha512": (
        "pLs0Op5VWqQM3ZIumqC2NP6MDqcnwFN1znp/oCuw9LcYd8PtvLC8ProyPg8ZDadsRc36NskT3QGKn/PkNqwWfg=="
    ),
    "x-fc-date": "Mon, 20 Mar 2023 17:16:40 GMT",
    "x-fc-nonce": "5f1c2de28a76457c9cb79d1740f2260a",
    "x-fc-signature": (
        "SbzcEwAKsViWqrB8+suZMjOdadswbUjLHtIKjDQJYle31xbB8Vr0pVTDaNP28/y+NDynpyFyKKnXmWZy8uJVig=="
    ),
    "content-length": "255",
}
SAMPLE_HOST = "fctestwebhook.free.beeceptor.com"
SAMPLE_KEY = (  # the sample's subscriber key "From FlexCharge Merchant Portal"
    "XRmKBxG5uvt1qWzqvp+T6CAbTo0MB89GTxXZD5cHA56RP7Mj4NbnHQOR1Y8uorUU9YQz8ujaVRUdm9vTSkPZSw=="
)
SAMPLE_NOW = parsedate_to_datetime(SAMPLE_HEADERS["x-fc-date"]).timestamp()

HOST = "hooks.example.com"
BODY = b'{"Event":"order.completed","OrderId":"abc","IsResent":false}'


def _key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


def _reason(body: bytes, headers: dict[str, str], **kwargs: Any) -> str:
    with pytest.raises(WebhookVerificationError) as info:
        verify_webhook(body, headers, **kwargs)
    return info.value.reason


def test_sample_vector_verifies() -> None:
    assert len(SAMPLE_BODY) == 255
    verify_webhook(
        SAMPLE_BODY, SAMPLE_HEADERS, key_b64=SAMPLE_KEY, host=SAMPLE_HOST, now=SAMPLE_NOW
    )


def test_sign_reproduces_sample_vector() -> None:
    headers = sign_webhook(
        SAMPLE_BODY,
        key_b64=SAMPLE_KEY,
        host=SAMPLE_HOST,
        nonce=SAMPLE_HEADERS["x-fc-nonce"],
        date=SAMPLE_HEADERS["x-fc-date"],
    )
    for name in ("x-fc-authorization", "x-fc-content-sha512", "x-fc-signature", "x-fc-nonce"):
        assert headers[name] == SAMPLE_HEADERS[name]
    assert headers["x-fc-date"] == SAMPLE_HEADERS["x-fc-date"]


def test_content_hash_and_string_to_sign_match_sample() -> None:
    digest = content_hash(SAMPLE_BODY)
    assert digest == SAMPLE_HEADERS["x-fc-content-sha512"]
    text = string_to_sign("n", "d", "h", digest)
    assert text == "POST\nn;d;h;" + digest


def test_round_trip_with_generated_nonce_and_date() -> None:
    key = _key()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    assert len(headers["x-fc-nonce"]) == 32
    int(headers["x-fc-nonce"], 16)
    assert headers["x-fc-date"].endswith(" GMT")
    verify_webhook(BODY, headers, key_b64=key, host=HOST)


def test_header_lookup_is_case_insensitive() -> None:
    key = _key()
    headers = {k.upper(): v for k, v in sign_webhook(BODY, key_b64=key, host=HOST).items()}
    verify_webhook(BODY, headers, key_b64=key, host=HOST)


def test_changed_body_byte_fails() -> None:
    key = _key()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    tampered = BODY.replace(b"abc", b"abd")
    assert _reason(tampered, headers, key_b64=key, host=HOST) == "bad_content_hash"


def test_changed_body_with_recomputed_hash_fails_signature() -> None:
    key = _key()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    tampered = BODY.replace(b"abc", b"abd")
    headers["x-fc-content-sha512"] = content_hash(tampered)
    assert _reason(tampered, headers, key_b64=key, host=HOST) == "bad_signature"


def test_wrong_host_fails() -> None:
    key = _key()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    assert _reason(BODY, headers, key_b64=key, host="evil.example.com") == "bad_signature"


def test_wrong_key_fails_and_message_has_no_key() -> None:
    key, other = _key(), _key()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    with pytest.raises(WebhookVerificationError) as info:
        verify_webhook(BODY, headers, key_b64=other, host=HOST)
    assert info.value.reason == "bad_signature"
    assert key not in str(info.value) and other not in str(info.value)


def test_tampered_body_signature_fails() -> None:
    key = _key()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    headers["x-fc-signature"] = sign_webhook(b"other", key_b64=key, host=HOST)["x-fc-signature"]
    assert _reason(BODY, headers, key_b64=key, host=HOST) == "bad_body_signature"


def test_stale_date_fails() -> None:
    key = _key()
    headers = sign_webhook(BODY, key_b64=key, host=HOST, date="Mon, 20 Mar 2023 17:16:40 GMT")
    assert _reason(BODY, headers, key_b64=key, host=HOST) == "stale"
    # Inside the window it passes; one second past it fails (both directions).
    verify_webhook(BODY, headers, key_b64=key, host=HOST, now=SAMPLE_NOW + 300)
    assert _reason(BODY, headers, key_b64=key, host=HOST, now=SAMPLE_NOW + 301) == "stale"
    assert _reason(BODY, headers, key_b64=key, host=HOST, now=SAMPLE_NOW - 301) == "stale"


def test_replayed_nonce_fails() -> None:
    key = _key()
    cache = NonceCache()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    verify_webhook(BODY, headers, key_b64=key, host=HOST, nonce_seen=cache.seen_before)
    reason = _reason(BODY, headers, key_b64=key, host=HOST, nonce_seen=cache.seen_before)
    assert reason == "replayed_nonce"


def test_forged_request_does_not_burn_nonce() -> None:
    key = _key()
    cache = NonceCache()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    forged = dict(headers, **{"x-fc-signature": "AAAA"})
    assert _reason(BODY, forged, key_b64=key, host=HOST, nonce_seen=cache.seen_before) == (
        "bad_body_signature"
    )
    verify_webhook(BODY, headers, key_b64=key, host=HOST, nonce_seen=cache.seen_before)


@pytest.mark.parametrize(
    "name",
    ["x-fc-nonce", "x-fc-date", "x-fc-content-sha512", "x-fc-signature", "x-fc-authorization"],
)
def test_missing_header_fails(name: str) -> None:
    key = _key()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    del headers[name]
    assert _reason(BODY, headers, key_b64=key, host=HOST) == "missing_header"


def test_malformed_authorization_and_date() -> None:
    key = _key()
    headers = sign_webhook(BODY, key_b64=key, host=HOST)
    bad_auth = dict(headers, **{"x-fc-authorization": "Bearer xyz"})
    assert _reason(BODY, bad_auth, key_b64=key, host=HOST) == "malformed"
    bad_date = sign_webhook(BODY, key_b64=key, host=HOST, date="not a date")
    assert _reason(BODY, bad_date, key_b64=key, host=HOST) == "malformed"


def test_key_rotation_accepts_either_key() -> None:
    old, new, stranger = _key(), _key(), _key()
    for signer in (old, new):
        headers = sign_webhook(BODY, key_b64=signer, host=HOST)
        verify_webhook(BODY, headers, key_b64=[new, old], host=HOST)
    headers = sign_webhook(BODY, key_b64=stranger, host=HOST)
    assert _reason(BODY, headers, key_b64=[new, old], host=HOST) == "bad_signature"


def test_nonce_cache_expires_and_bounds() -> None:
    now = [0.0]
    cache = NonceCache(ttl_s=10, max_size=3, clock=lambda: now[0])
    assert cache.seen_before("a") is False
    assert cache.seen_before("a") is True
    now[0] = 11.0
    assert cache.seen_before("a") is False  # expired, recorded afresh
    for nonce in ("b", "c", "d"):
        cache.seen_before(nonce)
    assert cache.seen_before("a") is False  # evicted by the size bound
