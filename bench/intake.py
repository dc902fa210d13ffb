"""Intake: a 100,000-row CSV through ``flexmit submit`` into PostgreSQL, against the naive way.

flexmit: ``flexmit submit FILE`` as its own process (interpreter start included), fresh
PostgreSQL database, Redis broker (no worker running: messages wait in the queue).
Naive baseline, same run: per row validate, one INSERT (SQLAlchemy Core), commit, one
``send_task``: measured on the first ``--naive-rows`` rows and expressed per second.

    python -m bench.intake [--rows 100000] [--naive-rows 5000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    ROOT,
    Row,
    bench_env,
    flush_redis,
    fmt,
    pg_database,
    report,
    settings_from,
    started_now,
    tz_of,
)
from bench.data import raw_rows, write_declines_csv

GOAL_RATE = 5000.0
GOAL_RATIO = 4.0


def count_orders(database_url: str) -> int:
    """Orders stored in ``database_url``."""
    from sqlalchemy import create_engine, text

    from worker.db.session import normalize_url

    engine = create_engine(normalize_url(database_url))
    with engine.connect() as conn:
        total = int(conn.execute(text("SELECT count(*) FROM orders")).scalar() or 0)
    engine.dispose()
    return total


def run_submit(path: Path, env: dict[str, str]) -> tuple[float, int]:
    """``flexmit submit path`` in a fresh database: (wall seconds, orders stored)."""
    import os

    with pg_database() as db:
        flush_redis()
        child_env = {**os.environ, **env, "FLEXMIT_DATABASE_URL": db}
        started = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "worker.cli", "submit", str(path)],
                              cwd=ROOT, env=child_env, capture_output=True, text=True,
                              timeout=1800, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"flexmit submit failed: {done.stderr[-2000:]}")
        stored = count_orders(db)
    flush_redis()
    return wall, stored


def _order_values(ok: Any, now: datetime) -> dict[str, Any]:
    decline = ok.decline.model_dump(by_alias=True, mode="json", exclude_none=True)
    return {"order_id": decline["orderId"], "state": "QUEUED", "mode": "managed",
            "source": "naive", "amount_cents": decline["amount"],
            "currency": decline["currency"], "refunded_cents": 0,
            "declined_at": ok.declined_at, "expiry_at": ok.expiry_at, "decline": decline,
            "attempt_count": 0, "next_check_at": now, "check_count": 0, "dispatched_at": now,
            "dispatch_count": 1, "created_at": now, "updated_at": now}


def run_naive(raws: list[Any], env: dict[str, str]) -> tuple[float, int]:
    """One validate + INSERT + commit + send_task per row: (seconds, rows stored)."""
    from sqlalchemy import insert

    from worker.celeryconfig import make_celery
    from worker.db.models import Order
    from worker.db.session import make_engine
    from worker.dispatch import EVALUATE_TASK, QUEUE
    from worker.intake import Accepted, validate_decline

    with pg_database() as db:
        flush_redis()
        settings = settings_from({**env, "FLEXMIT_DATABASE_URL": db})
        engine, celery = make_engine(settings), make_celery(settings)
        started = time.perf_counter()
        for raw in raws:
            now = datetime.now(UTC)
            verdict = validate_decline(raw, now=now, settings=settings)
            if not isinstance(verdict, Accepted):
                continue
            with engine.begin() as conn:  # one transaction (and commit) per row
                pk = conn.execute(insert(Order).values(**_order_values(verdict, now))
                                  .returning(Order.id)).scalar_one()
            celery.send_task(EVALUATE_TASK, args=[pk], queue=QUEUE)
        elapsed = time.perf_counter() - started
        engine.dispose()
        stored = count_orders(db)
    flush_redis()
    return elapsed, stored


def main(argv: list[str] | None = None) -> None:
    """Run both; print and record declines per second and the ratio to the naive way."""
    parser = argparse.ArgumentParser(description="intake throughput")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--naive-rows", type=int, default=5_000)
    args = parser.parse_args(argv)
    started, host = started_now()
    env = bench_env("sqlite://", "http://unused/v1")
    with tempfile.TemporaryDirectory(prefix="flexmit-bench-") as tmp:
        path = write_declines_csv(Path(tmp) / "declines.csv", args.rows, tz_of(env))
        naive_s, naive_n = run_naive(raw_rows(path)[:args.naive_rows], env)
        wall, stored = run_submit(path, env)
    rate, naive_rate = stored / wall, naive_n / naive_s
    share = rate / naive_rate if naive_rate else 0.0
    rows = [
        Row("declines/s through flexmit submit", fmt(rate, 0), "-",
            f"{rate / GOAL_RATE:.2f} of goal", f">= {GOAL_RATE:,.0f}/s", rate >= GOAL_RATE),
        Row("vs naive (INSERT + commit + send_task per row)", fmt(rate, 0),
            fmt(naive_rate, 0), f"{share:.2f}x", f">= {GOAL_RATIO:g}x", share >= GOAL_RATIO),
        Row("orders stored", f"{stored}/{args.rows}", f"{naive_n}/{args.naive_rows}", "-",
            "all", stored == args.rows),
    ]
    notes = [
        f"flexmit: `flexmit submit` on a {args.rows:,}-row CSV took {wall:.1f} s wall, "
        "process start included; no worker consumed the queue meanwhile.",
        f"naive: {naive_n:,} rows in {naive_s:.1f} s in this process (extrapolated as a "
        "per-second rate, not run on all rows): it stores only the order row, no audit "
        "event, no suppression, so it is cheaper per row than flexmit's intake.",
    ]
    report("intake", rows, notes, started, host)


if __name__ == "__main__":
    main()
