#!/usr/bin/env python3
"""One-command set-up for a fresh machine with only Python 3.11.

    python3 dev.py demo     # build .venv if needed, then run `flexmit demo`
    python3 dev.py test     # build .venv if needed, then run the tests (extra args: pytest)
    python3 dev.py lint     # ruff + mypy
    python3 dev.py flexmit ARGS...   # any flexmit command inside the venv

The virtualenv is rebuilt whenever pyproject.toml changes (a hash stamp lives in .venv).
"""

from __future__ import annotations

import hashlib
import os
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


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    ensure_venv()
    cmd, rest = argv[0], argv[1:]
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    if cmd == "test":
        run = [str(BIN / "python"), "-m", "pytest", *rest]
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
