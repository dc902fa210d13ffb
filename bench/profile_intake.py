"""Where intake time goes: cProfile of ``worker.submit.submit_file`` in this process.

    python -m bench.profile_intake [--rows 20000] [--top 30]

A fresh PostgreSQL database and the benchmark's Redis database; prints the top functions by own
time and by cumulative time. Diagnostic only: nothing is appended to RESULTS.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

from bench.common import bench_env, flush_redis, pg_database, settings_from, tz_of
from bench.data import write_declines_csv


def main(argv: list[str] | None = None) -> None:
    """Profile one in-process submit of ``--rows`` rows and print the hot spots."""
    from rich.console import Console

    from worker.runtime import Runtime
    from worker.submit import submit_file

    parser = argparse.ArgumentParser(description="profile flexmit submit")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args(argv)
    env = bench_env("sqlite://", "http://unused/v1")
    with tempfile.TemporaryDirectory(prefix="flexmit-bench-") as tmp, pg_database() as db:
        path = write_declines_csv(Path(tmp) / "declines.csv", args.rows, tz_of(env))
        flush_redis()
        rt = Runtime(settings_from({**env, "FLEXMIT_DATABASE_URL": db}))
        profiler = cProfile.Profile()
        started = time.perf_counter()
        profiler.enable()
        report = submit_file(rt, path, console=Console(file=io.StringIO()))
        profiler.disable()
        elapsed = time.perf_counter() - started
        rt.close()
    flush_redis()
    print(f"{report.accepted} accepted of {args.rows} rows in {elapsed:.1f} s "
          f"({report.accepted / elapsed:,.0f}/s, under cProfile)")
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(key).print_stats(args.top)
        print(f"\n=== by {key} ===\n{out.getvalue()}")


if __name__ == "__main__":
    main()
