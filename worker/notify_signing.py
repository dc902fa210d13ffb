"""Signing of flexmit's pushes to billing (CONTRACT.md "Pushes to billing").

Self-contained (standard library only) so a billing team can copy this file as it is.

Every push is ``POST FLEXMIT_BILLING_CALLBACK_URL`` with these headers:

* ``Flexmit-Timestamp``: unix seconds when the push was signed;
* ``Flexmit-Signature``: lowercase hex HMAC-SHA256 of ``"{timestamp}.{raw body}"`` keyed with
  ``FLEXMIT_BILLING_CALLBACK_SECRET`` (UTF-8);
* ``Flexmit-Event-Id``: the event's id, also ``eventId`` in the body; a retry of the same event
  carries the same id, so billing dedupes on it (pushes are at-least-once).

A receiver verifies the signature over the raw bytes BEFORE parsing the JSON, with a
constant-time compare, and refuses timestamps further than ``tolerance_s`` from its clock
(a captured push cannot be replayed later).
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER_TIMESTAMP = "Flexmit-Timestamp"
HEADER_SIGNATURE = "Flexmit-Signature"
HEADER_EVENT_ID = "Flexmit-Event-Id"
DEFAULT_TOLERANCE_S = 300


def sign_push(body: bytes, secret: str, timestamp: int) -> str:
    """Hex HMAC-SHA256 of ``b"{timestamp}." + body`` keyed with ``secret``."""
    message = str(int(timestamp)).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify_push(body: bytes, timestamp: str | None, signature: str | None, secret: str, *,
                now: float | None = None, tolerance_s: int = DEFAULT_TOLERANCE_S) -> bool:
    """True if ``signature`` signs ``body`` at ``timestamp`` and the timestamp is fresh.

    ``timestamp`` and ``signature`` are the raw header values (None when a header is missing).
    """
    if not timestamp or not signature:
        return False
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_s:
        return False
    expected = sign_push(body, secret, ts)
    return hmac.compare_digest(expected, signature.strip().lower())
