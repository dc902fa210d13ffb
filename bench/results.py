"""What every benchmark prints and records: a small table, the machine, ``bench/RESULTS.md``."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "RESULTS.md"


@dataclass(frozen=True)
class Row:
    """One line of a benchmark's table; ``ok`` None means informational (no goal)."""

    metric: str
    measured: str
    baseline: str
    ratio: str
    goal: str
    ok: bool | None

    @property
    def verdict(self) -> str:
        return "-" if self.ok is None else ("PASS" if self.ok else "MISS")


HEADER = ("metric", "measured", "baseline", "ratio", "goal", "verdict")


def table(rows: list[Row]) -> str:
    """The rows as a markdown table (readable in a terminal too)."""
    cells = [HEADER, *[(r.metric, r.measured, r.baseline, r.ratio, r.goal, r.verdict)
                       for r in rows]]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |"
             for line in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return "?"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "?"


def _service_versions() -> tuple[str, str]:
    from bench.common import PG_ADMIN_URL, REDIS_URL

    try:
        import redis

        rv = str(redis.Redis.from_url(REDIS_URL).info("server")["redis_version"])
    except Exception:  # the machine line must never break a benchmark
        rv = "?"
    try:
        from sqlalchemy import create_engine, text

        from worker.db.session import normalize_url

        engine = create_engine(normalize_url(PG_ADMIN_URL))
        with engine.connect() as conn:
            pg = str(conn.execute(text("SHOW server_version")).scalar())
        engine.dispose()
    except Exception:
        pg = "?"
    return rv, pg


def code_version() -> str:
    """The commit measured, and whether the working tree had uncommitted changes."""
    sha = _version(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"])
    dirty = _version(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"])
    return f"commit {sha}" + (" + uncommitted changes" if dirty not in ("", "?") else "")


def machine() -> str:
    """One line describing this machine and the software versions the figures depend on."""
    import celery
    import kombu

    mem_kb = _first("/proc/meminfo", "MemTotal")
    ram_gb = int(mem_kb.split()[0]) / 1024 / 1024 if mem_kb != "?" else 0.0
    redis_v, pg_v = _service_versions()
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"{os.cpu_count()} CPU ({_first('/proc/cpuinfo', 'model name')}), {ram_gb:.1f} GB RAM, "
            f"{platform.system()} {platform.release()}; Python {platform.python_version()}, "
            f"Celery {celery.__version__}, kombu {kombu.__version__}, Redis {redis_v}, "
            f"PostgreSQL {pg_v}; load average at start {load}")


def record(name: str, rows: list[Row], *, command: str, notes: list[str],
           started: datetime, host: str) -> None:
    """Append a dated section for benchmark ``name`` to ``bench/RESULTS.md``."""
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `python -m bench.<name>`; "
                           "see bench/README.md.\n")
    stamp = started.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"\n## {name}: {stamp}\n", f"`{command}`, {code_version()}, on {host}\n",
             table(rows), ""]
    parts += [f"- {note}" for note in notes]
    with RESULTS.open("a", encoding="utf-8") as out:
        out.write("\n".join(parts) + "\n")


def report(name: str, rows: list[Row], notes: list[str], started: datetime, host: str) -> None:
    """Print the table and notes, then append them to RESULTS.md."""
    print(f"\n{name}\n{table(rows)}")
    for note in notes:
        print(f"- {note}")
    command = f"python -m bench.{name}" + "".join(f" {a}" for a in sys.argv[1:])
    record(name, rows, command=command, notes=notes, started=started, host=host)
    print(f"appended to {RESULTS.relative_to(ROOT)}")


def ratio(a: float, b: float) -> float:
    """``a / b`` (infinity when the baseline is zero)."""
    return a / b if b else float("inf")
