"""Run every benchmark once, in turn, each appending its section to bench/RESULTS.md.

    python -m bench.run_all [--skip NAME ...]

They run one after another (never side by side: they share the machine's two cores and the
benchmark Redis database, which each one flushes).
"""

from __future__ import annotations

import argparse
import importlib
import time
import traceback

ORDER = ("rate_limit", "overhead", "intake", "reconcile", "memory")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks in ``ORDER``; a failing one is reported and the rest still run."""
    parser = argparse.ArgumentParser(description="run every benchmark")
    parser.add_argument("--skip", nargs="*", default=[], choices=ORDER)
    args = parser.parse_args(argv)
    failed: list[str] = []
    for name in ORDER:
        if name in args.skip:
            continue
        began = time.monotonic()
        print(f"\n=== bench.{name} ===", flush=True)
        try:
            importlib.import_module(f"bench.{name}").main([])
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(name)
        print(f"=== bench.{name}: {time.monotonic() - began:.0f} s ===", flush=True)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
