"""``create_sandbox_app(config)``: the FastAPI app, its state and its background threads."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from worker.sandbox.config import SandboxConfig
from worker.sandbox.gate import Gate
from worker.sandbox.resolver import Resolver
from worker.sandbox.routes import actions, auth, control, evaluate, orders
from worker.sandbox.state import SandboxState
from worker.sandbox.webhooks import WebhookDispatcher


def create_sandbox_app(config: SandboxConfig | None = None) -> FastAPI:
    """Build a sandbox app; its resolver and webhook threads run for the app's lifespan."""
    state = SandboxState(config or SandboxConfig())
    dispatcher = WebhookDispatcher(state)
    state.emit_hook = dispatcher.enqueue
    resolver = Resolver(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        dispatcher.start()
        resolver.start()
        try:
            yield
        finally:
            resolver.stop()
            dispatcher.stop()

    app = FastAPI(title="FlexFactor sandbox", lifespan=lifespan, redirect_slashes=False)
    app.state.sandbox = state
    app.state.dispatcher = dispatcher
    for module in (auth, evaluate, orders, actions, control):
        app.include_router(module.router)
    app.add_middleware(Gate, state=state)
    return app
