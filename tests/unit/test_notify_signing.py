"""Push signing: the vectors billing computes on its side, and the checks of verify_push."""

from __future__ import annotations

import hashlib
import hmac

from worker.notify_signing import sign_push, verify_push

SECRET = "whsec_billing_test"
BODY = b'{"eventId":"e-1","orderId":"inv-1","state":"APPROVED"}'
TS = 1_764_057_600


def independent(body: bytes, secret: str, ts: int) -> str:
    """The contract's definition, written out with nothing but hmac."""
    return hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()


def test_signature_is_hex_hmac_sha256_of_timestamp_dot_body() -> None:
    assert sign_push(BODY, SECRET, TS) == independent(BODY, SECRET, TS)
    assert len(sign_push(BODY, SECRET, TS)) == 64


def test_signature_covers_timestamp_body_and_secret() -> None:
    base = sign_push(BODY, SECRET, TS)
    assert sign_push(BODY, SECRET, TS + 1) != base
    assert sign_push(BODY + b" ", SECRET, TS) != base
    assert sign_push(BODY, SECRET + "x", TS) != base


def test_verify_accepts_a_fresh_genuine_push() -> None:
    sig = independent(BODY, SECRET, TS)
    assert verify_push(BODY, str(TS), sig, SECRET, now=TS + 10)
    assert verify_push(BODY, str(TS), sig.upper(), SECRET, now=TS)  # hex case is not meaning


def test_verify_refuses_tampered_body_wrong_secret_or_bad_headers() -> None:
    sig = independent(BODY, SECRET, TS)
    assert not verify_push(BODY.replace(b"APPROVED", b"DECLINED"), str(TS), sig, SECRET, now=TS)
    assert not verify_push(BODY, str(TS), sig, "another-secret", now=TS)
    assert not verify_push(BODY, None, sig, SECRET, now=TS)
    assert not verify_push(BODY, str(TS), None, SECRET, now=TS)
    assert not verify_push(BODY, "not-a-number", sig, SECRET, now=TS)


def test_verify_refuses_a_replayed_old_push() -> None:
    sig = independent(BODY, SECRET, TS)
    assert verify_push(BODY, str(TS), sig, SECRET, now=TS + 300)
    assert not verify_push(BODY, str(TS), sig, SECRET, now=TS + 301)
    assert not verify_push(BODY, str(TS), sig, SECRET, now=TS - 301)
