"""Shared dependencies: the bearer check and the process runtime."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from worker.runtime import Runtime


def get_rt(request: Request) -> Runtime:
    """The runtime ``create_app`` installed."""
    rt: Runtime = request.app.state.runtime
    return rt


def require_bearer(request: Request, rt: Annotated[Runtime, Depends(get_rt)]) -> None:
    """401 unless ``Authorization: Bearer <FLEXMIT_INTAKE_TOKEN>`` (constant-time compare)."""
    expected = rt.settings.intake_token
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if (expected is None or scheme.lower() != "bearer"
            or not hmac.compare_digest(token.strip().encode(),
                                       expected.get_secret_value().encode())):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or wrong bearer token",
                            headers={"WWW-Authenticate": "Bearer"})


RuntimeDep = Annotated[Runtime, Depends(get_rt)]
Protected = [Depends(require_bearer)]
