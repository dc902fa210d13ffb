"""Reconciliation at scale: the stale-PENDING sweep query with 100,000 vs 1,000,000 orders.

Orders are bulk-loaded with COPY: 1% managed PENDING and due (next check in the past), 9%
PENDING not yet due, 90% final. The timed query is what ``flexmit.sweep_pending`` runs before
it stamps anything: ``redispatch_grace`` (a count of QUEUED orders) plus
``worker.reconcile.due_pending`` (at most 1,000 ids, oldest due first). Median of 5 after one
warm-up, at each size; the goal is a time ratio <= 1.5 (an index is read, not the table).

    python -m bench.reconcile [--small 100000] [--large 1000000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, text

from bench.common import Row, bench_env, pg_database, report, settings_from, started_now

GOAL = 1.5
RUNS = 5
COLUMNS = ("order_id", "state", "mode", "source", "amount_cents", "currency", "refunded_cents",
           "declined_at", "expiry_at", "decline", "order_session_key", "ff_status",
           "attempt_count", "next_check_at", "check_count", "dispatched_at", "dispatch_count",
           "created_at", "updated_at")
FINAL = ("APPROVED", "DECLINED", "EXPIRED", "CANCELLED")


def _decline(n: int) -> str:
    # The stored decline of a real order is about a kilobyte; rows of a realistic width make a
    # table scan cost what it would cost in production.
    return json.dumps({"orderId": f"bench-{n:08d}", "amount": 1999, "currency": "USD",
                       "card": {"token": f"tok_bench_{n:032d}", "bin": "411111",
                                "last4": "1111", "brand": "VISA"},
                       "payer": {"email": f"payer{n}@example.com", "id": f"cus_{n}"},
                       "billingAddress": {"firstName": "Ada", "lastName": "Lovelace",
                                          "addressLine1": "1 Main St", "city": "Austin",
                                          "state": "TX", "zipCode": "78701",
                                          "countryCode": "US"},
                       "decline": {"responseCode": "05", "responseDescription": "Do not honor",
                                   "processor": "acme", "pspTransactionId": f"ch_{n}"}})


def _row(n: int, now: datetime) -> tuple[Any, ...]:
    kind = n % 100
    declined = now - timedelta(days=(n % 20) + 1)
    if kind == 0:  # due: the sweep's work
        state, next_at = "PENDING", now - timedelta(minutes=1 + n % 600)
    elif kind < 10:  # PENDING, next check later
        state, next_at = "PENDING", now + timedelta(minutes=1 + n % 1440)
    else:
        state, next_at = FINAL[n % len(FINAL)], None
    return (f"bench-{n:08d}", state, "managed", "bench", 1999, "USD", 0, declined,
            declined + timedelta(days=21), _decline(n), f"ffkey-{n:012d}", "SUBMITTED", 1,
            next_at, 0, declined, 1, declined, declined)


def load_orders(engine: Engine, start: int, stop: int, now: datetime) -> float:
    """COPY orders ``start..stop`` into the table; returns the seconds it took."""
    began = time.perf_counter()
    raw = engine.raw_connection()
    try:
        sql = f"COPY orders ({', '.join(COLUMNS)}) FROM STDIN"
        with raw.cursor() as cur, cur.copy(sql) as copy:  # type: ignore[attr-defined]
            for n in range(start, stop):
                copy.write_row(_row(n, now))
        raw.commit()
    finally:
        raw.close()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE orders"))
    return time.perf_counter() - began


def sweep_query(engine: Engine, now: datetime) -> tuple[float, int]:
    """One read of the sweep (grace + due ids): (seconds, ids found)."""
    from sqlalchemy.orm import Session

    from worker.dispatch import redispatch_grace
    from worker.reconcile import due_pending

    settings = settings_from(bench_env("sqlite://", "http://unused/v1"))
    with Session(engine) as session:
        began = time.perf_counter()
        grace = redispatch_grace(session, settings)
        ids = due_pending(session, now, dispatch_grace=grace)
        elapsed = time.perf_counter() - began
        session.rollback()
    return elapsed, len(ids)


def timed(engine: Engine, now: datetime) -> tuple[float, int]:
    """Median of ``RUNS`` sweep reads after one warm-up."""
    sweep_query(engine, now)
    samples = [sweep_query(engine, now) for _ in range(RUNS)]
    return statistics.median(s for s, _ in samples), samples[-1][1]


def plan(engine: Engine, now: datetime) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of the exact due_pending statement SQLAlchemy sends."""
    captured: list[tuple[str, Any]] = []

    def grab(_conn: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if "next_check_at" in statement and "ORDER BY" in statement:
            captured.append((statement, params))

    event.listen(engine, "before_cursor_execute", grab)
    try:
        sweep_query(engine, now)
    finally:
        event.remove(engine, "before_cursor_execute", grab)
    statement, params = captured[-1]
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, params)
        return [str(r[0]) for r in rows]


def index_line(lines: list[str]) -> str:
    """The plan lines that say how ``orders`` is read (the scans, outermost first)."""
    scans = [line.strip().removeprefix("->").strip().split("  (cost")[0]
             for line in lines if " Scan " in f" {line.strip().removeprefix('->').strip()}"]
    return " > ".join(scans) or "(no scan found)"


def measure(small: int, large: int) -> Iterator[tuple[int, float, int, list[str], float]]:
    """Load up to ``small`` then ``large`` orders; yield (size, median s, ids, plan, load s)."""
    from worker.db.session import make_engine

    now = datetime.now(UTC)
    with pg_database() as db:
        engine = make_engine(db)
        loaded = 0
        for size in (small, large):
            load_s = load_orders(engine, loaded, size, now)
            loaded = size
            median, found = timed(engine, now)
            yield size, median, found, plan(engine, now), load_s
        engine.dispose()


def main(argv: list[str] | None = None) -> None:
    """Time the sweep at both sizes; print and record the ratio and the plan."""
    parser = argparse.ArgumentParser(description="reconciliation sweep at scale")
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    started, host = started_now()
    (n1, t1, f1, p1, l1), (n2, t2, f2, p2, l2) = list(measure(args.small, args.large))
    share = t2 / t1 if t1 else float("inf")
    rows = [
        Row(f"sweep read, {n2:,} vs {n1:,} orders", f"{t2 * 1000:.1f} ms",
            f"{t1 * 1000:.1f} ms", f"{share:.2f}", f"<= {GOAL}", share <= GOAL),
        Row("due ids returned (limit 1,000)", str(f2), str(f1), "-", "all due, <= 1000",
            (f1, f2) == (min(1000, n1 // 100), min(1000, n2 // 100))),
    ]
    notes = [
        f"bulk load with COPY: {n1:,} orders in {l1:.1f} s, then {n2 - n1:,} more in "
        f"{l2:.1f} s (then VACUUM ANALYZE); 1% due PENDING, 9% PENDING later, 90% final.",
        "timed: redispatch_grace (count of QUEUED) + worker.reconcile.due_pending, median of "
        f"{RUNS} after a warm-up, warm cache.",
        f"plan at {n1:,}: `{index_line(p1)}`",
        f"plan at {n2:,}: `{index_line(p2)}`",
    ]
    report("reconcile", rows, notes, started, host)


if __name__ == "__main__":
    main()
