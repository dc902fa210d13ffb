"""Helpers shared by the route modules: the state from the request, JSON bodies, faults."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse

from worker.sandbox.faults import pick_fault
from worker.sandbox.gate import route_name
from worker.sandbox.state import SandboxState
from worker.sandbox.wire import problem, validation_problem


def get_state(request: Request) -> SandboxState:
    """The sandbox state attached to the app."""
    state: SandboxState = request.app.state.sandbox
    return state


async def read_json(request: Request) -> tuple[Any, JSONResponse | None]:
    """The parsed body (``{}`` when empty), or a 400 ProblemDetails for malformed JSON."""
    raw = await request.body()
    if not raw.strip():
        return {}, None
    try:
        return json.loads(raw), None
    except ValueError:
        return None, validation_problem({"$": ["The JSON value could not be parsed."]})


def camelize(value: Any) -> Any:
    """Lower the first letter of every key: ASP.NET binds JSON keys case-insensitively."""
    if isinstance(value, dict):
        return {
            (k[:1].lower() + k[1:]) if isinstance(k, str) else k: camelize(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [camelize(v) for v in value]
    return value


def fingerprint(body: Any, *extra: str) -> str:
    """A stable digest of a JSON body (plus context) for idempotency comparisons."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")) + "|".join(extra)
    return hashlib.sha256(canonical.encode()).hexdigest()


def fault_for(request: Request, merchant_order_id: str) -> str | None:
    """Which fault (if any) to inject into this request."""
    label, short = route_name(request.method, request.url.path.rstrip("/") or "/")
    state = get_state(request)
    with state.lock:
        return pick_fault(state, short, label, merchant_order_id)


def fault_response(fault: str | None) -> JSONResponse | None:
    """The reply for a fault that happens BEFORE any work ("503", "500"); None otherwise."""
    if fault == "503":
        return problem(503, "Service Unavailable")
    if fault == "500":
        return problem(500, "An error occurred while processing your request.")
    return None


async def maybe_slow(state: SandboxState, fault: str | None) -> None:
    """The ambiguous timeout: the work is done, the reply comes ``slow_reply_s`` late."""
    if fault == "slow":
        await asyncio.sleep(state.config.slow_reply_s)
