"""The FlexFactor sandbox: a faithful simulator served over real HTTP (FastAPI + uvicorn).

Public API: ``SandboxConfig``, ``create_sandbox_app(config)``, ``run_sandbox(config, ...)`` and
``running_sandbox(config, port=0)``. The outcome rules live in ``worker.sandbox.outcomes``.
"""

from __future__ import annotations

from worker.sandbox.app import create_sandbox_app
from worker.sandbox.config import FaultRule, SandboxConfig
from worker.sandbox.server import run_sandbox, running_sandbox

__all__ = ["FaultRule", "SandboxConfig", "create_sandbox_app", "run_sandbox", "running_sandbox"]
