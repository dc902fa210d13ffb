"""``POST /v1/declines``: one decline or ``{"declines": [...]}`` (up to 10,000), answered 202."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from worker.api.deps import Protected, RuntimeDep
from worker.intake import parse_declines_body, redact_pans
from worker.intake_store import accept_declines, store_body_reject
from worker.metrics import DECLINES_REJECTED

router = APIRouter(prefix="/v1", dependencies=Protected)
MAX_BATCH = 10_000


@router.post("/declines", status_code=202)
async def post_declines(request: Request, rt: RuntimeDep) -> JSONResponse:
    """Validate, store and enqueue; per-item results in input order."""
    raw = await request.body()
    try:
        body: Any = json.loads(raw)
        items = parse_declines_body(body)
        if len(items) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} declines; got {len(items)}")
    except ValueError as exc:  # JSONDecodeError is a ValueError
        message = str(exc) if not isinstance(exc, json.JSONDecodeError) else (
            f"request body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        )
        await run_in_threadpool(store_body_reject, rt, _redacted_text(raw), message, "http")
        DECLINES_REJECTED.labels("http", "body").inc()
        return JSONResponse({"detail": message, "errors": {"body": [message]}}, status_code=422)
    outcome = await run_in_threadpool(accept_declines, rt, items, source="http")
    return JSONResponse({"results": [r.wire() for r in outcome.results]}, status_code=202)


def _redacted_text(raw: bytes) -> Any:
    try:
        return redact_pans(json.loads(raw))
    except ValueError:
        return redact_pans(raw.decode("utf-8", errors="replace")[:100_000])
