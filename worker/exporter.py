"""The worker-side Prometheus exporter: one HTTP endpoint per worker node, covering the main
process and every prefork child.

Celery's prefork children each count in their own memory, so the worker runs prometheus_client
in multiprocess mode: every process writes its values to small mmap files in one directory and
the exporter (a thread in the worker's main process) adds them up at scrape time.
Multiprocess mode must be chosen before our metrics are built, so ``prepare_multiprocess``
must run before anything imports ``worker.metrics``; ``tasks.health`` is the first task module
a worker imports and calls it. See docs/observability.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

ENV_PORT = "FLEXMIT_METRICS_PORT"
ENV_ADDR = "FLEXMIT_METRICS_ADDR"
ENV_BASE = "FLEXMIT_METRICS_DIR"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_ADDR = "0.0.0.0"


def exporter_port() -> int | None:
    """``FLEXMIT_METRICS_PORT`` (None: no worker exporter)."""
    raw = os.environ.get(ENV_PORT, "").strip()
    return int(raw) if raw else None


def exporter_addr() -> str:
    """``FLEXMIT_METRICS_ADDR`` (default all interfaces: Prometheus scrapes from outside)."""
    return os.environ.get(ENV_ADDR, "").strip() or DEFAULT_ADDR


def multiprocess_active() -> bool:
    """True if prometheus_client keeps this process's values in shared files."""
    if "prometheus_client" not in sys.modules:
        return bool(os.environ.get(MULTIPROC_ENV))
    from prometheus_client import values

    return bool(getattr(values.ValueClass, "_multiprocess", False))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clear_dead_siblings(base: Path) -> None:
    """Remove directories of worker nodes that are gone (a crash leaves its files behind)."""
    for child in base.iterdir() if base.is_dir() else []:
        if child.is_dir() and child.name.isdigit() and not _pid_alive(int(child.name)):
            shutil.rmtree(child, ignore_errors=True)


def prepare_multiprocess() -> str | None:
    """Give this worker node a fresh metrics directory if the exporter is wanted and nothing
    chose one; a no-op without a port, or once ``worker.metrics`` exists (too late)."""
    if exporter_port() is None or os.environ.get(MULTIPROC_ENV):
        return os.environ.get(MULTIPROC_ENV)
    if "worker.metrics" in sys.modules:
        return None
    base = Path(os.environ.get(ENV_BASE, "").strip()
                or Path(tempfile.gettempdir()) / "flexmit-metrics")
    base.mkdir(parents=True, exist_ok=True)
    _clear_dead_siblings(base)
    mine = base / str(os.getpid())
    shutil.rmtree(mine, ignore_errors=True)  # a recycled pid must not inherit old counts
    mine.mkdir()
    # Inherited by the prefork children: they write beside the main process.
    os.environ[MULTIPROC_ENV] = str(mine)
    if "prometheus_client" in sys.modules:
        # Already loaded (celery's CLI loads flower's command plugin, which imports it), so
        # its import-time choice was made without the directory. Metrics read the value class
        # when they are built; ours are built after this (prometheus_client keeps
        # ``values.ValueClass`` swappable on purpose).
        from prometheus_client import values

        values.ValueClass = values.MultiProcessValue()
    return str(mine)


def multiprocess_registry() -> CollectorRegistry:
    """A registry that adds up every process's files in ``PROMETHEUS_MULTIPROC_DIR``."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def start_exporter(port: int, addr: str) -> None:
    """Serve ``/metrics`` for this node on ``addr:port`` (a daemon thread)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=addr, registry=multiprocess_registry())


def child_exited(pid: int) -> None:
    """A pool child ends: its live gauges stop counting (its counters keep their totals)."""
    if multiprocess_active() and os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid)


def remove_own_directory() -> None:
    """At clean shutdown: drop the directory ``prepare_multiprocess`` made for this node."""
    path = os.environ.get(MULTIPROC_ENV, "")
    if path and Path(path).name == str(os.getpid()):
        shutil.rmtree(path, ignore_errors=True)
