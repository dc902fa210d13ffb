"""Small wire helpers: ids, timestamps, the ProblemDetails and success envelopes (§8.1)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi.responses import JSONResponse

PROBLEM_TYPES = {
    400: "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    401: "https://tools.ietf.org/html/rfc9110#section-15.5.2",
    404: "https://tools.ietf.org/html/rfc9110#section-15.5.5",
    409: "https://tools.ietf.org/html/rfc9110#section-15.5.10",
    429: "https://tools.ietf.org/html/rfc6585#section-4",
    500: "https://tools.ietf.org/html/rfc9110#section-15.6.1",
    503: "https://tools.ietf.org/html/rfc9110#section-15.6.4",
}
VALIDATION_TITLE = "One or more validation errors occurred."


def new_guid() -> str:
    """A fresh lowercase GUID string."""
    return str(uuid.uuid4())


def trace_id() -> str:
    """A W3C traceparent-shaped id, as ASP.NET puts in ``traceId``."""
    return f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"


def iso_utc(ts: float) -> str:
    """ISO 8601 UTC with 7 fractional digits and a ``Z`` (the .NET round-trip format)."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_iso(value: object) -> datetime | None:
    """Parse an ISO 8601 string (``Z`` allowed) to an aware UTC datetime, or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def problem_body(
    status: int, title: str, errors: dict[str, list[str]] | None = None
) -> dict[str, Any]:
    """An ASP.NET ProblemDetails body."""
    body: dict[str, Any] = {
        "type": PROBLEM_TYPES.get(status, "about:blank"),
        "title": title,
        "status": status,
        "traceId": trace_id(),
    }
    if errors is not None:
        body["errors"] = errors
    return body


def problem(
    status: int,
    title: str,
    errors: dict[str, list[str]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An ASP.NET ProblemDetails response."""
    body = problem_body(status, title, errors)
    return JSONResponse(body, status_code=status, headers=headers)


def validation_problem(errors: dict[str, list[str]]) -> JSONResponse:
    """The 400 "One or more validation errors occurred." body."""
    return problem(400, VALIDATION_TITLE, errors)


def envelope(status: str | None, *, success: bool = True, **fields: Any) -> dict[str, Any]:
    """The standard success envelope shared by most FlexFactor responses."""
    return {
        **fields,
        "success": success,
        "result": "Success" if success else "Failed",
        "status": status,
        "statusCode": None,
        "errors": [],
        "customProperties": {},
    }


def failed(code: str, message: str, **fields: Any) -> dict[str, Any]:
    """A business failure: ``success:false``, ``FAILED``, ``responseCode`` + item1..item4 errors."""
    errors = [{"item1": message, "item2": code, "item3": code, "item4": True}]
    body = envelope("FAILED", success=False, responseCode=code, responseMessage=message, **fields)
    body["errors"] = errors
    return body
