"""Pipeline overhead: flexmit's evaluate throughput against a bare Celery task doing one httpx POST.

No rate limit anywhere (sandbox limit off, FLEXFACTOR_RATE_LIMIT=100000). Both runs: the same
declines queued first, then two prefork workers of concurrency 2 started together, the same
sandbox (its own process), throughput read from the sandbox ledger.

    python -m bench.overhead [--declines 3000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from bench.common import (
    REDIS_URL,
    Row,
    Span,
    bench_env,
    flush_redis,
    fmt,
    midday_tz,
    pg_database,
    processes,
    redis_queue_idle,
    report,
    settings_from,
    start_sandbox,
    started_now,
    tz_of,
    watch_evaluates,
)
from bench.data import chunks, evaluate_bodies, raw_rows, write_declines_csv
from worker.settings import Settings

WORKERS = ["w1", "w2"]
GOAL = 0.7


def run_flexmit(raws: list[object], batch: int | None = None) -> Span:
    """Intake everything (messages wait in Redis), then start the workers and watch.
    ``batch`` overrides ``FLEXMIT_EVALUATE_BATCH`` (default: the setting's default)."""
    from worker.intake_store import accept_declines
    from worker.runtime import Runtime

    with pg_database() as db, processes({"FLEXMIT_MERCHANT_TZ": midday_tz()}) as procs:
        flush_redis()
        base = start_sandbox(procs, rate_limit=0)
        extra = {"FLEXMIT_EVALUATE_BATCH": batch} if batch else {}
        procs.env = bench_env(db, base, FLEXFACTOR_RATE_LIMIT=100000, **extra)
        rt = Runtime(settings_from(procs.env))
        try:
            for part in chunks(raws, 1000):
                accept_declines(rt, part, source="bench")
        finally:
            rt.close()
        procs.celery_workers(WORKERS, concurrency=2)
        return watch_evaluates(base, len(raws), timeout=900,
                               done=lambda: redis_queue_idle("flexmit"))


def run_bare(raws: list[object]) -> Span:
    """Queue one bare-POST task per decline, then start the baseline workers and watch."""
    from bench.tasks_baseline import app

    with processes({"FLEXMIT_MERCHANT_TZ": midday_tz()}) as procs:
        flush_redis()
        base = start_sandbox(procs, rate_limit=0)
        procs.env = bench_env("sqlite://", base)
        app.conf.broker_url = REDIS_URL
        with app.producer_or_acquire() as producer:
            for body in evaluate_bodies(raws, settings_from(procs.env)):
                app.send_task("bench.post_evaluate", args=[body], queue="bench",
                              producer=producer)
        procs.celery_workers(WORKERS, app="bench.tasks_baseline", concurrency=2, queue="bench")
        return watch_evaluates(base, len(raws), timeout=900,
                               done=lambda: redis_queue_idle("bench"))


def main(argv: list[str] | None = None) -> None:
    """Run both; print and record flexmit's throughput as a fraction of the bare task's."""
    parser = argparse.ArgumentParser(description="pipeline overhead")
    parser.add_argument("--declines", type=int, default=3000)
    args = parser.parse_args(argv)
    started, host = started_now()
    with tempfile.TemporaryDirectory(prefix="flexmit-bench-") as tmp:
        env = bench_env("sqlite://", "http://unused/v1")
        raws = raw_rows(write_declines_csv(Path(tmp) / "batch.csv", args.declines, tz_of(env)))
    bare = run_bare(raws)
    ours = run_flexmit(raws)
    single = run_flexmit(raws, batch=1)
    share = ours.rate / bare.rate if bare.rate else 0.0
    single_share = single.rate / bare.rate if bare.rate else 0.0
    batch = Settings(_env_file=None).evaluate_batch
    rows = [
        Row("evaluate throughput (evaluates/s)", fmt(ours.rate, 1), fmt(bare.rate, 1),
            f"{share:.2f}", f">= {GOAL}", share >= GOAL),
        Row("evaluates accepted", f"{ours.accepted}/{args.declines}",
            f"{bare.accepted}/{args.declines}", "-", "all", ours.accepted == args.declines),
        Row("one order per message (FLEXMIT_EVALUATE_BATCH=1)", fmt(single.rate, 1),
            fmt(bare.rate, 1), f"{single_share:.2f}", "(info)", None),
    ]
    notes = [
        f"{args.declines} declines; 4 worker processes (2 prefork workers x -c 2) in both runs; "
        "sandbox and workers share the machine's cores.",
        "baseline: bench.tasks_baseline.post_evaluate, one httpx POST of the same /evaluate "
        "body (token fetched once per process), nothing else.",
        f"flexmit's task: one message names up to {batch} orders (FLEXMIT_EVALUATE_BATCH); "
        "one compare-and-set claim + commit for all; per order: build and validate the body, "
        "shared limiter (one Redis round trip), POST; then lock the rows and store the attempts, "
        "state changes, audit rows, outbox rows and suppression changes in one commit.",
    ]
    report("overhead", rows, notes, started, host)


if __name__ == "__main__":
    main()
