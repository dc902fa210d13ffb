"""Run docker-compose.yml's services outside Docker: the same commands and environment, with the
compose hostnames (postgres, redis, sandbox, api) and fixed ports translated to local ones."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent
OUR_IMAGE_SERVICES = ("migrate", "sandbox", "api", "worker", "beat", "flower")
# What `docker compose up` would be given by the operator (the file's required secrets).
OPERATOR_ENV = {"FLEXMIT_INTAKE_TOKEN": "test-intake-token-0123456789",
                "FLOWER_BASIC_AUTH": "ops:flower-test-password"}
_VAR = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")
_COMPOSE_HOST = re.compile(r"//(?:[^/@]*@)?(postgres|redis|sandbox|api)[:/]")


def load_compose() -> dict[str, Any]:
    """docker-compose.yml as data (YAML anchors and ``<<`` merges resolved)."""
    return dict(yaml.safe_load(COMPOSE_FILE.read_text()))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}`` and ``$$`` on one string."""
    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1) or match.group(4)
        op, arg = match.group(2), match.group(3) or ""
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and missing:
            raise KeyError(f"{name}: {arg}")
        if op and op.endswith("-") and missing:
            return arg
        return current or ""
    return _VAR.sub(one, value)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Local:
    """How compose names map to this machine: service URLs, ports, embedded DB and broker."""

    database_url: str
    redis_url: str
    broker_url: str
    scratch: Path | None = None  # the container's own /tmp (the worker's heartbeat stamps)
    ports: dict[int, int] = field(default_factory=dict)  # compose port -> local port

    def port(self, compose_port: int) -> int:
        return self.ports.setdefault(compose_port, free_port())

    def url(self, text: str) -> str:
        """``http://api:8000/x`` -> ``http://127.0.0.1:<local>/x`` (service hosts only)."""
        def swap(match: re.Match[str]) -> str:
            return f"{match.group(1)}127.0.0.1:{self.port(int(match.group(2)))}"
        return re.sub(r"(https?://)(?:sandbox|api):(\d+)", swap, text)


def service_env(service: dict[str, Any], local: Local) -> dict[str, str]:
    """The service's environment as compose renders it, then pointed at local resources."""
    raw = service.get("environment") or {}
    env: dict[str, str] = {}
    for name, value in raw.items():
        if value is None:
            continue  # compose: unset unless the operator's shell has it
        env[name] = interpolate(str(value), OPERATOR_ENV)
    env["FLEXMIT_DATABASE_URL"] = local.database_url
    env["FLEXMIT_REDIS_URL"] = local.redis_url
    env["FLEXMIT_BROKER_URL"] = local.broker_url
    if local.scratch is not None:  # each container has its own /tmp; tests share one
        env["FLEXMIT_HEARTBEAT_DIR"] = str(local.scratch / "heartbeat")
    env = {k: local.url(v) for k, v in env.items()}
    leftover = {k: v for k, v in env.items() if _COMPOSE_HOST.search(v)}
    assert not leftover, f"compose hostnames left untranslated: {leftover}"
    return env


def service_command(argv: list[str], local: Local) -> list[str]:
    """The compose command with our venv's programs, loopback binding and local ports."""
    out: list[str] = []
    for i, arg in enumerate(argv):
        arg = local.url(interpolate(str(arg), OPERATOR_ENV))
        if out and out[-1] == "--port":
            arg = str(local.port(int(arg)))
        elif arg.startswith("--port="):
            arg = f"--port={local.port(int(arg.split('=', 1)[1]))}"
        elif arg == "0.0.0.0":
            arg = "127.0.0.1"  # the container listens on all interfaces; a test does not
        elif i == 0 and arg == "python":
            arg = sys.executable
        elif i == 0:
            arg = str(BIN / arg)
        out.append(arg)
    return out


def healthcheck_command(service: dict[str, Any], local: Local) -> list[str] | None:
    """The service's ``healthcheck: test: [CMD, ...]`` translated like its command."""
    test = (service.get("healthcheck") or {}).get("test")
    if not test or test[0] != "CMD":
        return None
    code = [re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{local.port(int(m[1]))}", a)
            for a in test[1:]]
    return service_command(code, local)


@dataclass
class Proc:
    """One running entry point, its log file, and a clean stop."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM the main process only (as ``docker stop`` does); returns the exit code.

        A worker's prefork children must not get it too: the parent's warm shutdown stops them.
        """
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
            raise AssertionError(f"{self.name} ignored SIGTERM for {timeout}s") from None


def start(name: str, argv: list[str], env: dict[str, str], cwd: Path) -> Proc:
    """Start ``argv`` in its own process group, stdout+stderr to ``cwd/<name>.log``."""
    log = cwd / f"{name}.log"
    # Only what compose gives the service: no FLEXMIT_TEST_* or other settings leak in.
    ours = ("FLEXMIT_", "FLEXFACTOR_", "FLOWER_")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    full_env.update(env, PYTHONUNBUFFERED="1")
    with log.open("ab") as out:
        popen = subprocess.Popen(argv, cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    return Proc(name, popen, log)


def wait_for(check: Callable[[], Any], proc: Proc, *, timeout: float, what: str) -> Any:
    """Poll ``check`` until truthy; fail early (with the log) if ``proc`` exits meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except (httpx.HTTPError, OSError):
            result = None
        if result:
            return result
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited ({proc.popen.returncode}) before {what}:\n"
                                 f"{proc.text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}:\n"
                                 f"{proc.text()[-3000:]}")
        time.sleep(0.2)
