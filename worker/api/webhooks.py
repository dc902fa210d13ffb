"""``POST /v1/flexfactor/webhooks``: FlexFactor's webhook receiver (signature-checked, no bearer).

The raw body is read as bytes (FlexFactor does not send ``application/json``) and handed to
``worker.webhooks.receive_webhook``: 200 ``{"received": true}`` for every verified delivery
(duplicates, unknown orders and malformed bodies included, so the sender stops), 401
``{"error": "<reason>"}`` for a refused one, 503 only when the database is unreachable (so
FlexFactor delivers again later). The work happens in the ``flexmit.webhook`` task.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from worker.api.deps import RuntimeDep
from worker.webhooks import receive_webhook

router = APIRouter(prefix="/v1/flexfactor")
log = structlog.get_logger(__name__)


def signed_host(host_header: str) -> str:
    """The host FlexFactor signs: the Host header without port (IPv6 brackets dropped)."""
    try:
        return urlsplit("//" + host_header.strip()).hostname or ""
    except ValueError:  # e.g. an unbalanced "[" : such a host can never verify
        return ""


@router.post("/webhooks")
async def flexfactor_webhook(request: Request, rt: RuntimeDep) -> JSONResponse:
    """Verify, store and enqueue one FlexFactor delivery; answer at once."""
    body = await request.body()
    host = signed_host(request.headers.get("host", ""))
    try:
        result = await run_in_threadpool(receive_webhook, rt, body, request.headers, host)
    except SQLAlchemyError as exc:
        log.error("webhook.store_failed", error=type(exc).__name__)
        return JSONResponse({"error": "unavailable"}, status_code=503)
    return JSONResponse(result.answer, status_code=result.status_code)
