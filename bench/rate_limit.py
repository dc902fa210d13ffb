"""Rate-limit fidelity: 3,000 declines, limit 50/s, four worker processes (2 workers x -c 2).

flexmit: FLEXFACTOR_RATE_LIMIT=50 (one GCRA limiter in Redis shared by every process, headroom
0.97) against a sandbox that refuses the 51st request in any one second with 429.
Baseline, same run: Celery's own ``rate_limit="50/s"`` on a task doing the same /evaluate POST
through flexmit's client without the shared limiter (Celery applies it per worker instance).

    python -m bench.rate_limit [--declines 3000] [--limit 50]
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

WORKERS = ["w1", "w2"]


def run_flexmit(raws: list[object], limit: float) -> Span:
    """flexmit's pipeline: intake (in this process), then four worker processes evaluate."""
    from worker.intake_store import accept_declines
    from worker.runtime import Runtime

    with pg_database() as db, processes({"FLEXMIT_MERCHANT_TZ": midday_tz()}) as procs:
        flush_redis()
        base = start_sandbox(procs, rate_limit=limit)
        procs.env = bench_env(db, base, FLEXFACTOR_RATE_LIMIT=limit)
        procs.celery_workers(WORKERS, concurrency=2)
        rt = Runtime(settings_from(procs.env))
        try:
            for part in chunks(raws, 1000):
                accept_declines(rt, part, source="bench")
        finally:
            rt.close()
        return watch_evaluates(base, len(raws), timeout=600,
                               done=lambda: redis_queue_idle("flexmit"))


def run_celery(raws: list[object], limit: float, celery_rate: str) -> Span:
    """The baseline: Celery's ``rate_limit`` on each worker, no shared limiter."""
    from bench.tasks_baseline import app

    with processes({"FLEXMIT_MERCHANT_TZ": midday_tz()}) as procs:
        flush_redis()
        base = start_sandbox(procs, rate_limit=limit)
        procs.env = bench_env("sqlite://", base, BENCH_CELERY_RATE_LIMIT=celery_rate)
        bodies = evaluate_bodies(raws, settings_from(procs.env))
        procs.celery_workers(WORKERS, app="bench.tasks_baseline", concurrency=2, queue="bench")
        app.conf.broker_url = REDIS_URL
        with app.producer_or_acquire() as producer:
            for body in bodies:
                app.send_task("bench.evaluate_rate_limited", args=[body], queue="bench",
                              producer=producer)
        return watch_evaluates(base, len(raws), timeout=600,
                               done=lambda: redis_queue_idle("bench"))


def rows_for(ours: Span, celery: Span, limit: float, n: int) -> list[Row]:
    """The table: our figures against Celery's, each judged by its goal."""
    led, bled = ours.ledger, celery.ledger
    r_ours, r_cel = ours.rate / limit, celery.rate / limit
    busiest = led["max_accepted_in_any_second"]
    return [
        Row("achieved rate / limit", f"{fmt(ours.rate, 1)}/s", f"{fmt(celery.rate, 1)}/s",
            f"{r_ours:.3f} (celery {r_cel:.3f})", ">= 0.95", r_ours >= 0.95),
        Row("429 answers", str(led["rate_limited_429"]), str(bled["rate_limited_429"]), "-",
            "0", led["rate_limited_429"] == 0),
        Row("most accepted in any second", str(busiest),
            str(bled["max_accepted_in_any_second"]), f"{busiest / limit:.2f} x limit",
            f"<= {limit:g}", busiest <= limit),
        Row("declines accepted by FlexFactor", f"{ours.accepted}/{n}",
            f"{celery.accepted}/{n}", "-", f"{n}", ours.accepted == n),
    ]


def main(argv: list[str] | None = None) -> None:
    """Run flexmit and the Celery baseline; print and record the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--declines", type=int, default=3000)
    parser.add_argument("--limit", type=float, default=50.0)
    args = parser.parse_args(argv)
    started, host = started_now()
    with tempfile.TemporaryDirectory(prefix="flexmit-bench-") as tmp:
        env = bench_env("sqlite://", "http://unused/v1")
        raws = raw_rows(write_declines_csv(Path(tmp) / "batch.csv", args.declines, tz_of(env)))
    ours = run_flexmit(raws, args.limit)
    celery = run_celery(raws, args.limit, f"{args.limit:g}/s")
    notes = [
        f"{args.declines} declines, sandbox limit {args.limit:g} requests in any 1 s window; "
        "4 worker processes (2 prefork workers x concurrency 2) in every run.",
        "rate = accepted /evaluate requests between the first and the last one, read by "
        "polling the sandbox ledger every 50 ms; flexmit's ceiling is the 0.97 headroom.",
        f"celery baseline: rate_limit=\"{args.limit:g}/s\" on the task; Celery enforces it per "
        "worker instance, so two workers may send twice the limit; FlexFactor's 429s are "
        "retried by the client (Retry-After), up to 3 tries.",
    ]
    report("rate_limit", rows_for(ours, celery, args.limit, args.declines), notes,
           started, host)


if __name__ == "__main__":
    main()
