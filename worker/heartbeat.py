"""Worker liveness: "when did this worker node last take a message off the broker?"

A process that is alive but no longer consuming (a Redis reconnect gone wrong, celery#8082,
#10205) must fail its health check, so the stamp is written only when a message was consumed:
each worker node sends itself a ``flexmit.heartbeat`` task through the broker every few
seconds, on a queue only it consumes (``flexmit.hb.<node>``), and the task stamps a file named
after the node. Any other task a node runs stamps too (throttled), so a node busy with long
tasks still looks alive. ``flexmit health worker`` reads the stamps.

Stamps are small JSON files in ``FLEXMIT_HEARTBEAT_DIR`` (one host, one container: the health
check runs beside the worker it checks).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Read from the environment here (not Settings) so every process agrees without extra wiring.
ENV_DIR = "FLEXMIT_HEARTBEAT_DIR"
ENV_INTERVAL = "FLEXMIT_HEARTBEAT_INTERVAL_S"
ENV_MAX_AGE = "FLEXMIT_HEARTBEAT_MAX_AGE_S"
DEFAULT_DIR = "/tmp/flexmit-heartbeat"  # noqa: S108 - per-container scratch, not shared secrets
DEFAULT_INTERVAL_S = 10.0
DEFAULT_MAX_AGE_S = 60.0
QUEUE_PREFIX = "flexmit.hb."
TASK_NAME = "flexmit.heartbeat"
# A task stamp at most this often per process: a busy node runs hundreds of tasks a second.
TASK_STAMP_EVERY_S = 1.0

_UNSAFE = re.compile(r"[^A-Za-z0-9@._-]")
_last_task_stamp: dict[str, float] = {}


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def heartbeat_dir() -> Path:
    """Where stamps live (``FLEXMIT_HEARTBEAT_DIR``)."""
    return Path(os.environ.get(ENV_DIR, "").strip() or DEFAULT_DIR)


def interval_s() -> float:
    """Seconds between two heartbeats a node sends itself (``FLEXMIT_HEARTBEAT_INTERVAL_S``)."""
    return max(0.1, _env_float(ENV_INTERVAL, DEFAULT_INTERVAL_S))


def max_age_s() -> float:
    """Oldest stamp a healthy node may have (``FLEXMIT_HEARTBEAT_MAX_AGE_S``)."""
    return _env_float(ENV_MAX_AGE, DEFAULT_MAX_AGE_S)


def queue_name(node: str) -> str:
    """The queue only ``node`` consumes (its heartbeats travel through it).

    The node name comes last: kombu's file broker picks a queue's messages by file-name
    suffix, so no other queue name may end with ``.flexmit``.
    """
    return QUEUE_PREFIX + node


def stamp_path(node: str, directory: Path | None = None) -> Path:
    """The stamp file of ``node``."""
    return (directory or heartbeat_dir()) / f"{_UNSAFE.sub('_', node)}.json"


def stamp(node: str, source: str, *, main_pid: int | None = None, now: float | None = None,
          directory: Path | None = None) -> None:
    """Record that ``node`` is alive now (``source``: start | heartbeat | task); atomic.

    ``main_pid`` is the node's main process (known at start); later stamps, written by pool
    children, keep the one already on file.
    """
    path = stamp_path(node, directory)
    path.parent.mkdir(parents=True, exist_ok=True)
    if main_pid is None:
        previous = read_stamp(path)
        main_pid = previous.pid if previous is not None else None
    record = {"node": node, "at": time.time() if now is None else now, "source": source,
              "pid": main_pid}
    fd, temp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        json.dump(record, out)
    os.replace(temp, path)  # readers see the old stamp or the new one, never half of one


def stamp_from_task(node: str | None) -> None:
    """A task started on ``node``: stamp, at most once a second per process; never raises."""
    if not node:
        return
    now = time.monotonic()
    if now - _last_task_stamp.get(node, float("-inf")) < TASK_STAMP_EVERY_S:
        return
    _last_task_stamp[node] = now
    try:
        stamp(node, "task")
    except OSError:  # liveness bookkeeping must never fail a business task
        return


def remove_stamp(node: str) -> None:
    """Forget ``node`` (a clean shutdown: it is gone, not dead)."""
    stamp_path(node).unlink(missing_ok=True)


@dataclass(frozen=True)
class Stamp:
    """One node's latest stamp."""

    node: str
    at: float
    source: str
    pid: int | None


def read_stamp(path: Path) -> Stamp | None:
    """The stamp in ``path``, or None if missing or unreadable."""
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        pid = data.get("pid")
        return Stamp(node=str(data["node"]), at=float(data["at"]),
                     source=str(data.get("source", "")), pid=int(pid) if pid else None)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_stamps(directory: Path | None = None) -> list[Stamp]:
    """Every readable stamp in the directory, by node name."""
    folder = directory or heartbeat_dir()
    if not folder.is_dir():
        return []
    found = (read_stamp(p) for p in sorted(folder.glob("*.json")))
    return [s for s in found if s is not None]


@dataclass(frozen=True)
class Verdict:
    """Whether one node passes its liveness check, and why."""

    node: str
    ok: bool
    detail: str


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists; it is just not ours
        return True
    return True


def judge(stamp_: Stamp, max_age: float, now: float) -> Verdict:
    """A node is live if its main process runs and its last stamp is at most ``max_age`` old."""
    age = now - stamp_.at
    if stamp_.pid is not None and not _pid_alive(stamp_.pid):
        return Verdict(stamp_.node, False, f"process {stamp_.pid} is gone")
    if age > max_age:
        return Verdict(stamp_.node, False,
                       f"last consumed {age:.1f}s ago ({stamp_.source}), limit {max_age:g}s")
    return Verdict(stamp_.node, True, f"consumed {age:.1f}s ago ({stamp_.source})")


def matches(stamp_: Stamp, wanted: str) -> bool:
    """``wanted`` is the full node name, or the part before ``@`` (hostnames vary by container)."""
    return stamp_.node == wanted or stamp_.node.split("@", 1)[0] == wanted


def check(node: str | None = None, *, max_age: float | None = None,
          directory: Path | None = None, now: float | None = None) -> list[Verdict]:
    """Verdicts for ``node`` (or every node with a stamp); a node without a stamp fails."""
    limit = max_age_s() if max_age is None else max_age
    moment = time.time() if now is None else now
    stamps = read_stamps(directory)
    if node is not None:
        stamps = [s for s in stamps if matches(s, node)]
    if not stamps:
        where = directory or heartbeat_dir()
        return [Verdict(node or "*", False, f"no heartbeat stamp in {where}")]
    return [judge(s, limit, moment) for s in stamps]
