"""Run the sandbox: ``run_sandbox`` (blocking) and ``running_sandbox`` (a background thread)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from worker.sandbox.app import create_sandbox_app
from worker.sandbox.config import SandboxConfig

STARTUP_TIMEOUT_S = 15.0


def _uvicorn_config(config: SandboxConfig, host: str, port: int, log_level: str) -> uvicorn.Config:
    # access_log off: /tokenize's query string carries the tokenization key.
    return uvicorn.Config(
        create_sandbox_app(config),
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="on",
    )


def run_sandbox(
    config: SandboxConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8099,
    log_level: str = "warning",
) -> None:
    """Serve the sandbox on ``host:port`` until interrupted (the ``flexmit sandbox`` command)."""
    uvicorn.Server(_uvicorn_config(config or SandboxConfig(), host, port, log_level)).run()


@contextmanager
def running_sandbox(
    config: SandboxConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[str]:
    """Serve the sandbox in a background thread; yield its base URL ``http://host:PORT/v1``."""
    server = uvicorn.Server(_uvicorn_config(config or SandboxConfig(), host, port, "warning"))
    thread = threading.Thread(target=server.run, name="sandbox-uvicorn", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def _wait_started(server: uvicorn.Server, thread: threading.Thread) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the sandbox server did not start")
        time.sleep(0.01)  # polling the started flag, not a fixed wait
