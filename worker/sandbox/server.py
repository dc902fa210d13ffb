"""Run the sandbox: ``run_sandbox`` (blocking) and ``running_sandbox`` (a background thread)."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn

from worker.sandbox.app import create_sandbox_app
from worker.sandbox.config import SandboxConfig

STARTUP_TIMEOUT_S = 15.0
CONFIG_ENV = "FLEXMIT_SANDBOX_CONFIG"


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


@contextmanager
def sandbox_process(config: SandboxConfig | None = None, *, host: str = "127.0.0.1",
                    log_path: str | None = None) -> Iterator[str]:
    """Serve the sandbox in its OWN process (like the real FlexFactor: no GIL shared with the
    caller, so its arrival times are not skewed by the caller's work); yield its base URL."""
    with socket.socket() as probe:  # a free port for the child to bind
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    env = {**os.environ, CONFIG_ENV: (config or SandboxConfig()).model_dump_json()}
    cmd = [sys.executable, "-m", "worker.sandbox.server", "--host", host, "--port", str(port)]
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(open(log_path, "ab")) if log_path else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            _wait_answering(f"http://{host}:{port}/_sandbox/ledger", proc)
            yield f"http://{host}:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _wait_answering(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the sandbox process exited during start-up")
        try:
            httpx.get(url, timeout=1.0).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.05)  # polling readiness, not a fixed wait
    raise RuntimeError("the sandbox process did not start")


def main() -> None:
    """``python -m worker.sandbox.server --port P``; config JSON from FLEXMIT_SANDBOX_CONFIG."""
    parser = argparse.ArgumentParser(description="Run the FlexFactor sandbox")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    args = parser.parse_args()
    raw = os.environ.get(CONFIG_ENV)
    config = SandboxConfig.model_validate_json(raw) if raw else SandboxConfig()
    run_sandbox(config, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
