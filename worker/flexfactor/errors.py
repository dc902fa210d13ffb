"""One error tree for FlexFactor calls, and the one function that maps a response onto it.

Messages carry the method, the path (never the query: /tokenize has a key there), the status,
FlexFactor's title and traceId and, for validation errors, field *names*. They never carry a
request body, a header or a server message that could echo one (PAN-like digit runs are masked).
"""

from __future__ import annotations

import math
import re
import time
from datetime import UTC
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

DEFAULT_RETRY_AFTER_S = 1.0
OAUTH_PATH = "/oauth2/token"
_MAX_TEXT_BODY = 2000
_DIGIT_RUN = re.compile(r"\d{12,}")
# The request never left this machine: sending it again cannot duplicate anything.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,  # no pooled connection became free: nothing was written
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
)


class FlexFactorError(Exception):
    """Any failed FlexFactor call: message, HTTP status (if any), response body, traceId."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: Any = None,
        trace_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.trace_id = trace_id


class FlexFactorValidationError(FlexFactorError):
    """400: the request was invalid; ``field_errors`` maps field paths to messages. Final."""

    def __init__(self, message: str, *, field_errors: dict[str, list[str]], **kw: Any) -> None:
        super().__init__(message, **kw)
        self.field_errors = field_errors


class FlexFactorAuthError(FlexFactorError):
    """401/403, or 400 from /oauth2/token (bad credentials)."""


class FlexFactorNotFound(FlexFactorError):
    """404: no such order."""


class FlexFactorConflict(FlexFactorError):
    """409: the same idempotent request is in progress, or a key was reused with another body."""


class FlexFactorRateLimited(FlexFactorError):
    """429: slow down for ``retry_after_s`` seconds."""

    def __init__(self, message: str, *, retry_after_s: float, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after_s = retry_after_s


class FlexFactorServerError(FlexFactorError):
    """5xx from FlexFactor or its gateway."""


class FlexFactorConnectionError(FlexFactorError):
    """No connection could be made: the request was NOT sent, so it is safe to send again."""


class FlexFactorTimeout(FlexFactorError):
    """The request left but no answer came: FlexFactor may or may not have processed it."""


class FlexFactorBusinessError(FlexFactorError):
    """HTTP 200 with ``success: false`` / ``status: FAILED`` (e.g. refund code 2001). Final."""

    def __init__(self, message: str, *, response_code: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.response_code = response_code


def scrub(text: str) -> str:
    """Mask digit runs long enough to be a card number."""
    return _DIGIT_RUN.sub("[digits]", text)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); default 1 s."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return DEFAULT_RETRY_AFTER_S
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, seconds) if math.isfinite(seconds) else DEFAULT_RETRY_AFTER_S


def parse_problem(body: Any) -> tuple[dict[str, list[str]], str | None, str | None]:
    """(field errors, traceId, title) from any ProblemDetails variant of fact sheet §8.1."""
    if not isinstance(body, dict):
        return {}, None, None
    errors = body.get("errors")
    if isinstance(errors, dict):
        source: dict[str, Any] = errors
    elif errors is None and body and all(isinstance(v, list) for v in body.values()):
        source = body  # the flat variant: {"TraceId": [...], "Field": ["msg"]}
    else:
        source = {}
    fields = {k: _as_list(v) for k, v in source.items() if k.lower() != "traceid"}
    trace = _first_str(_get_ci(body, "traceid")) or _first_str(_get_ci(source, "traceid"))
    title = body.get("title") if isinstance(body.get("title"), str) else None
    return fields, trace, title


def is_business_failure(body: Any) -> bool:
    """True for a 2xx body that reports failure (``success: false`` or ``status: FAILED``)."""
    if not isinstance(body, dict):
        return False
    statuses = (body.get("status"), body.get("captureStatus"))
    return body.get("success") is False or any(
        isinstance(s, str) and s.upper() == "FAILED" for s in statuses
    )


def response_body(resp: httpx.Response) -> Any:
    """The parsed JSON body, else the (truncated) text, else None."""
    if not resp.content:
        return None
    try:
        return resp.json()
    except ValueError:
        return resp.text[:_MAX_TEXT_BODY]


def error_from_response(resp: httpx.Response) -> FlexFactorError:
    """Map a failed FlexFactor response (an HTTP error or a 2xx business failure) to its class."""
    body = response_body(resp)
    status = resp.status_code
    fields, trace, title = parse_problem(body)
    where = _where(resp)
    kw: dict[str, Any] = {"status_code": status, "body": body, "trace_id": trace}
    suffix = f" (traceId={trace})" if trace else ""
    if 200 <= status < 300:
        code, text = _business_code(body)
        msg = f"{where} -> {status} business failure: code={code} {scrub(text)}".rstrip()
        return FlexFactorBusinessError(msg + suffix, response_code=code, **kw)
    if (status == 400 and where.endswith(OAUTH_PATH)) or status in (401, 403):
        return FlexFactorAuthError(f"{where} -> {status}: authentication refused{suffix}", **kw)
    if status == 400:
        names = ", ".join(sorted(fields)) or "-"
        msg = f"{where} -> 400 validation failed: {scrub(title or 'invalid request')}"
        return FlexFactorValidationError(
            f"{msg}; fields: {names}{suffix}", field_errors=fields, **kw
        )
    if status == 429:
        wait = parse_retry_after(resp.headers.get("Retry-After"))
        msg = f"{where} -> 429 rate limited; retry after {wait:.1f}s{suffix}"
        return FlexFactorRateLimited(msg, retry_after_s=wait, **kw)
    cls = _BY_STATUS.get(status) or (FlexFactorServerError if status >= 500 else FlexFactorError)
    return cls(f"{where} -> {status}: {scrub(title or resp.reason_phrase)}{suffix}", **kw)


def error_from_transport(exc: httpx.TransportError, what: str) -> FlexFactorError:
    """Map an httpx transport failure: not sent -> ConnectionError, else Timeout (ambiguous)."""
    error: FlexFactorError
    name = type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        error = FlexFactorConnectionError(f"FlexFactor {what}: could not connect ({name})")
    else:
        msg = f"FlexFactor {what}: no response ({name}); it may have been processed"
        error = FlexFactorTimeout(msg)
    error.__cause__ = exc
    return error


_BY_STATUS: dict[int, type[FlexFactorError]] = {404: FlexFactorNotFound, 409: FlexFactorConflict}


def _where(resp: httpx.Response) -> str:
    try:
        request = resp.request
    except RuntimeError:  # a Response built by hand has no request
        return "FlexFactor"
    return f"FlexFactor {request.method} {request.url.path}"


def _business_code(body: Any) -> tuple[str | None, str]:
    if not isinstance(body, dict):
        return None, ""
    code, text = body.get("responseCode"), body.get("responseMessage")
    errors = body.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        code = code or errors[0].get("item2")  # C# ValueTuple: item1 message, item2 code
        text = text or errors[0].get("item1")
    return (str(code) if code is not None else None), (text if isinstance(text, str) else "")


def _get_ci(mapping: dict[str, Any], key: str) -> Any:
    return next((v for k, v in mapping.items() if k.lower() == key), None)


def _first_str(value: Any) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def _as_list(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v) for v in value]
    return [str(value)]
