"""ASGI middleware in front of every route: trailing slashes, the ledger, the rate limit, auth.

Order for ``/v1`` routes: count → rate limit (all but /oauth2/token and /tokenize) → bearer
check (all but /oauth2/token; /tokenize only checks a bearer it was given).
"""

from __future__ import annotations

import re
import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.sandbox.state import SandboxState
from worker.sandbox.wire import problem

log = structlog.get_logger("flexmit.sandbox")
UNLIMITED = {"token", "tokenize"}
_ORDER_PATH = re.compile(r"^/v1/orders/[^/]+(/(refund|cancel|external-cancel))?$")


def route_name(method: str, path: str) -> tuple[str, str]:
    """``(label, short)`` for a ``/v1`` path: ``("POST /v1/orders/{id}/refund", "refund")``."""
    simple = {
        "/v1/oauth2/token": "token",
        "/v1/tokenize": "tokenize",
        "/v1/evaluate": "evaluate",
        "/v1/capture": "capture",
        "/v1/outcome": "outcome",
        "/v1/orders": "orders",
    }
    if path in simple:
        return f"{method} {path}", simple[path]
    match = _ORDER_PATH.match(path)
    if match is None:
        return f"{method} {path}", "unknown"
    action = match.group(2)
    if action is None:
        return f"{method} /v1/orders/{{id}}", "order"
    return f"{method} /v1/orders/{{id}}/{action}", action


def bearer_ok(state: SandboxState, header: str | None) -> bool:
    """True when ``header`` carries a known, unexpired access token ("Bearer " optional)."""
    if not header:
        return False
    token = header[7:].strip() if header[:7].lower() == "bearer " else header.strip()
    expires_ms = state.tokens.get(token)
    return expires_ms is not None and expires_ms > state.now() * 1000


class Gate:
    """The pure-ASGI middleware (no buffering, so slow replies do not hold other requests)."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/"), "raw_path": path.rstrip("/").encode()}
        if not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        label, short = route_name(scope["method"], scope["path"])
        refusal = self._refusal(scope, short)
        if refusal is not None:
            self._count(label, refusal.status_code)
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, self._counting_send(send, label))

    def _refusal(self, scope: Scope, short: str) -> Any:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        auth = headers.get("authorization")
        with self.state.lock:
            if short not in UNLIMITED:
                if not self.state.window.try_accept(time.monotonic(), self.state.config.rate_limit):
                    self.state.ledger.rate_limited_429 += 1
                    return problem(429, "Too Many Requests", headers={"Retry-After": "1"})
                self.state.ledger.count_accepted(time.monotonic())
            needs_auth = short != "token" and (short != "tokenize" or auth)
            if needs_auth and not bearer_ok(self.state, auth):
                response = problem(401, "Unauthorized")
                response.headers["WWW-Authenticate"] = "Bearer"
                return response
        return None

    def _count(self, label: str, status: int) -> None:
        with self.state.lock:
            self.state.ledger.count_call(label, status)
        if status >= 500 or status == 429:
            log.info("sandbox.request", route=label, status=status)

    def _counting_send(self, send: Send, label: str) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._count(label, message["status"])
            await send(message)

        return wrapped
