"""``create_app(settings)``: the FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from worker.api import dashboard, declines, health, orders, orders_list, suppressions, webhooks
from worker.runtime import Runtime
from worker.settings import Settings


def create_app(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """The API for ``settings``; refuses to build without an intake token (no open door)."""
    if settings.intake_token is None or not settings.intake_token.get_secret_value():
        raise ValueError("FLEXMIT_INTAKE_TOKEN must be set: it protects every intake route")
    app = FastAPI(title="flexmit", version="0.1.0",
                  description="Rescue failed subscription charges through FlexFactor.")
    app.state.runtime = runtime or Runtime(settings)
    app.include_router(declines.router)
    app.include_router(orders_list.router)
    app.include_router(orders.router)
    app.include_router(suppressions.router)
    app.include_router(health.router)
    app.include_router(dashboard.router)  # read-only status page: bearer or Basic auth
    app.include_router(webhooks.router)  # FlexFactor's receiver: signature-checked, no bearer
    return app
