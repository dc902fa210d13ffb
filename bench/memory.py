"""Memory: RSS of a worker's pool process after 50,000 tasks against after 1,000.

One ``celery -A worker worker -P prefork -c 1``; the tasks are ``flexmit.evaluate`` on order ids
that do not exist, so each runs our whole task path (base task, log context, session, the
compare-and-set claim, rollback, log line) and fails its claim fast, without the sandbox.
RSS is read from /proc (VmRSS) once the queue is drained: the baseline after the first 1,000,
the measure after 50,000 in all.

    python -m bench.memory [--tasks 50000] [--warmup 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from bench.common import (
    Row,
    bench_env,
    flush_redis,
    pg_database,
    processes,
    redis_queue_idle,
    report,
    settings_from,
    started_now,
    wait_until,
)

GOAL = 0.10
MISSING_PK = 10_000_000_000  # far beyond any order id


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in kB (VmRSS of /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def children(ppid: int) -> list[int]:
    """Pids whose parent is ``ppid`` (from /proc/<pid>/stat)."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended while we looked
        if int(fields[1]) == ppid:
            found.append(int(stat.parent.name))
    return found


def send(settings_env: dict[str, str], start: int, count: int) -> None:
    """Publish ``count`` evaluate messages for missing orders over one connection."""
    from worker.celeryconfig import make_celery
    from worker.dispatch import send_evaluate

    celery = make_celery(settings_from(settings_env))
    send_evaluate(celery, range(MISSING_PK + start, MISSING_PK + start + count), batch=1)


def drained(timeout: float) -> float:
    """Wait until the queue is empty and nothing is unacked; returns the seconds waited."""
    began = time.monotonic()
    wait_until(lambda: redis_queue_idle("flexmit"), timeout=timeout, what="queue drained",
               every=0.25)
    return time.monotonic() - began


def main(argv: list[str] | None = None) -> None:
    """Measure pool-child RSS after the warm-up and after all tasks; print and record."""
    parser = argparse.ArgumentParser(description="worker memory growth")
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    args = parser.parse_args(argv)
    started, host = started_now()
    with pg_database() as db:
        env = bench_env(db, "http://127.0.0.1:9/v1")
        with processes(env) as procs:
            flush_redis()
            # A deeper prefetch only saves broker round trips between these tiny tasks; the
            # messages wait in the parent, so the pool child measured is unaffected.
            procs.celery_workers(["mem"], concurrency=1, extra=("--prefetch-multiplier", "32"))
            parent = procs.procs["mem"].pid
            send(env, 0, args.warmup)
            drained(timeout=300)
            (child,) = children(parent)
            base_child, base_parent = rss_kb(child), rss_kb(parent)
            began = time.monotonic()
            send(env, args.warmup, args.tasks - args.warmup)
            drained(timeout=900)
            rate = (args.tasks - args.warmup) / (time.monotonic() - began)
            end_child, end_parent = rss_kb(child), rss_kb(parent)
            same_child = child in children(parent)
    flush_redis()
    growth = (end_child - base_child) / base_child
    rows = [
        Row(f"pool child RSS after {args.tasks:,} tasks", f"{end_child / 1024:.1f} MB",
            f"{base_child / 1024:.1f} MB (after {args.warmup:,})", f"{growth:+.1%}",
            f"< +{GOAL:.0%}", growth < GOAL and same_child),
        Row("worker main process RSS", f"{end_parent / 1024:.1f} MB",
            f"{base_parent / 1024:.1f} MB", f"{(end_parent - base_parent) / base_parent:+.1%}",
            "(info)", None),
    ]
    notes = [
        "flexmit.evaluate on order ids that do not exist: claim fails, rollback, one log line; "
        "prefork -c 1, acks_late, prefetch multiplier 32, Redis broker, PostgreSQL.",
        f"the same pool child served every task: {same_child}; "
        f"throughput after the warm-up about {rate:,.0f} tasks/s (queue filled while draining).",
    ]
    report("memory", rows, notes, started, host)


if __name__ == "__main__":
    main()
