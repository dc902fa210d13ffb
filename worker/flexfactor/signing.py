"""FlexFactor webhook signatures (fact sheet §6.4): one pure module for receiver, sandbox, tests.

Two HMAC-SHA512 signatures, keyed with the base64-DECODED subscriber key:
* ``x-fc-authorization``: over ``"POST\\n" + nonce;date;host;content_hash``, which binds the
  delivery to our host and a moment in time;
* ``x-fc-signature``: over the raw body.
FlexFactor documents no freshness window or replay rule, so both are our own policy here
(300 s and a nonce store, like Stripe).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from email.utils import formatdate, parsedate_to_datetime

AUTH_SCHEME = "HMAC-SHA512"
SIGNED_HEADERS = "x-fc-nonce;x-fc-date;host;x-fc-content-sha512"
_SIGNATURE_MARK = "Signature="

H_NONCE = "x-fc-nonce"
H_DATE = "x-fc-date"
H_CONTENT = "x-fc-content-sha512"
H_SIGNATURE = "x-fc-signature"
H_AUTHORIZATION = "x-fc-authorization"
REQUIRED_HEADERS = (H_NONCE, H_DATE, H_CONTENT, H_SIGNATURE, H_AUTHORIZATION)


class WebhookVerificationError(Exception):
    """A webhook failed verification; ``reason`` is a short code, never any key material."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def content_hash(body: bytes) -> str:
    """base64(SHA-512(body)): the value of ``x-fc-content-sha512``."""
    return base64.b64encode(hashlib.sha512(body).digest()).decode("ascii")


def string_to_sign(nonce: str, date: str, host: str, content_hash: str) -> str:
    """The text the ``x-fc-authorization`` signature covers."""
    return "POST\n" + nonce + ";" + date + ";" + host + ";" + content_hash


def _decode_key(key_b64: str) -> bytes:
    try:
        return base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        # Deliberately no detail: the message must never echo key material.
        raise ValueError("webhook key is not valid base64") from None


def _hmac_b64(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha512).digest()).decode("ascii")


def sign_webhook(
    body: bytes,
    *,
    key_b64: str,
    host: str,
    nonce: str | None = None,
    date: str | None = None,
) -> dict[str, str]:
    """Headers FlexFactor would send with ``body`` (fresh nonce and current date by default)."""
    key = _decode_key(key_b64)
    nonce = nonce if nonce is not None else secrets.token_hex(16)
    date = date if date is not None else formatdate(usegmt=True)
    digest = content_hash(body)
    auth_sig = _hmac_b64(key, string_to_sign(nonce, date, host, digest).encode("utf-8"))
    authorization = f"{AUTH_SCHEME} SignedHeaders={SIGNED_HEADERS}&{_SIGNATURE_MARK}{auth_sig}"
    return {
        H_NONCE: nonce,
        H_DATE: date,
        H_CONTENT: digest,
        H_SIGNATURE: _hmac_b64(key, body),
        H_AUTHORIZATION: authorization,
    }


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _required(headers: Mapping[str, str]) -> dict[str, str]:
    lowered = _lower_headers(headers)
    missing = [name for name in REQUIRED_HEADERS if not lowered.get(name)]
    if missing:
        raise WebhookVerificationError("missing_header", ",".join(missing))
    return lowered


def _auth_signature(authorization: str) -> str:
    # The sample takes everything after "Signature="; also insist on the scheme so a
    # header of another kind is reported as malformed rather than as a bad signature.
    if not authorization.startswith(AUTH_SCHEME + " ") or _SIGNATURE_MARK not in authorization:
        raise WebhookVerificationError("malformed", "x-fc-authorization")
    return authorization[authorization.index(_SIGNATURE_MARK) + len(_SIGNATURE_MARK) :].strip()


def _check_fresh(date: str, now: float | None, tolerance_s: int) -> None:
    try:
        sent = parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError, IndexError):
        raise WebhookVerificationError("malformed", "x-fc-date") from None
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        raise WebhookVerificationError("stale", f"x-fc-date off by {current - sent:.0f}s")


def _equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _match_key(keys: Sequence[bytes], message: bytes, claimed: str, reason: str) -> bytes:
    for key in keys:
        if _equal(_hmac_b64(key, message), claimed):
            return key
    raise WebhookVerificationError(reason)


def verify_webhook(
    body: bytes,
    headers: Mapping[str, str],
    *,
    key_b64: str | Sequence[str],
    host: str,
    now: float | None = None,
    tolerance_s: int = 300,
    nonce_seen: Callable[[str], bool] | None = None,
) -> None:
    """Return if ``body`` + ``headers`` are a fresh, authentic delivery to ``host``; else raise.

    Several keys (rotation) are accepted; the nonce is recorded only after every other check
    passed, so a forged request cannot burn a genuine nonce.
    """
    h = _required(headers)
    key_list = [key_b64] if isinstance(key_b64, str) else list(key_b64)
    keys = [_decode_key(k) for k in key_list]
    claimed_auth = _auth_signature(h[H_AUTHORIZATION])
    digest = content_hash(body)
    if not _equal(digest, h[H_CONTENT].strip()):
        raise WebhookVerificationError("bad_content_hash")
    message = string_to_sign(h[H_NONCE], h[H_DATE], host, digest).encode("utf-8")
    key = _match_key(keys, message, claimed_auth, "bad_signature")
    # The body signature must come from the same key that signed the authorization.
    _match_key([key], body, h[H_SIGNATURE].strip(), "bad_body_signature")
    _check_fresh(h[H_DATE], now, tolerance_s)
    if nonce_seen is not None and nonce_seen(h[H_NONCE]):
        raise WebhookVerificationError("replayed_nonce")


class NonceCache:
    """In-memory, TTL-bounded, thread-safe nonce store for tests and single-process receivers."""

    def __init__(
        self,
        ttl_s: float = 600.0,
        *,
        max_size: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_s
        self._max = max_size
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()  # nonce -> expiry, oldest first
        self._lock = threading.Lock()

    def seen_before(self, nonce: str) -> bool:
        """Record ``nonce``; True if it was already recorded and has not expired."""
        with self._lock:
            now = self._clock()
            self._evict(now)
            if nonce in self._seen:
                return True
            self._seen[nonce] = now + self._ttl
            return False

    def _evict(self, now: float) -> None:
        # Entries are inserted with a constant TTL, so expiry order is insertion order.
        while self._seen:
            oldest, expiry = next(iter(self._seen.items()))
            if expiry > now and len(self._seen) < self._max:
                break
            del self._seen[oldest]
