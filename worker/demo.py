"""``flexmit demo``: the whole pipeline on this machine with embedded parts, then a summary.

A fresh directory holds everything: a SQLite database, kombu's filesystem broker, the file-based
shared state (rate limiter, token cache), the batch file and one log per process. Real processes
run the sandbox, the API, the Celery workers and the one beat; the batch goes in through the
real HTTP API; progress and the summary are read from the database and the sandbox's ledger.
Every process is stopped in a ``finally`` (Ctrl-C included), so nothing keeps running.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy.orm import Session, sessionmaker

from worker.batchfile import read_batch
from worker.db.migrate import upgrade
from worker.db.session import make_engine, make_session_factory
from worker.demo_batch import make_batch, write_csv
from worker.demo_procs import (
    DemoError,
    Processes,
    free_port,
    shielded,
    sigterm_as_interrupt,
    wait_http,
)
from worker.demo_report import (
    Tally,
    gather,
    print_tables,
    print_verdict,
    problems,
    sandbox_ledger,
)
from worker.opsview import counts_by_state
from worker.orders import IN_FLIGHT, State
from worker.settings import Settings

RATE_LIMIT = 25.0  # requests/s: 1,000 declines take about 45 s at FlexFactor
RESOLVE_AFTER_S = 3.0  # the sandbox's delay before a pending order's final webhook
CHUNK = 250  # declines per POST /v1/declines
SEED = 20261125  # the same mix every run, so runs compare
SETTLE_MARGIN_S = 45.0  # after the last /evaluate should have gone out
WORKERS_START_S = 60.0  # how long the first order may stay QUEUED (workers booting)
WEBHOOK_PATH = "/v1/flexfactor/webhooks"
COLUMNS = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
           TimeElapsedColumn(), TextColumn("{task.fields[detail]}"))


@dataclass
class Demo:
    """One run: its directory, settings, ports, processes and clock."""

    root: Path
    settings: Settings
    sandbox_port: int
    api_port: int
    procs: Processes
    started: float = field(default_factory=time.monotonic)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def sandbox_root(self) -> str:
        return f"http://127.0.0.1:{self.sandbox_port}"

    @property
    def api_root(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def mark(self, name: str) -> None:
        """Record the seconds since the start under ``name`` (minus what is already recorded)."""
        self.timings[name] = time.monotonic() - self.started - sum(self.timings.values())


def demo_settings(root: Path, sandbox_port: int) -> Settings:
    """Embedded settings for a run in ``root``, with fresh random credentials and keys."""
    values: dict[str, Any] = {
        "FLEXMIT_DATABASE_URL": f"sqlite:///{root / 'flexmit.db'}",
        "FLEXMIT_REDIS_URL": f"file://{root / 'state'}",
        "FLEXMIT_BROKER_URL": f"filesystem://{root / 'broker'}",
        "FLEXFACTOR_BASE_URL": f"http://127.0.0.1:{sandbox_port}/v1",
        "FLEXFACTOR_APP_KEY": f"demo-{secrets.token_hex(8)}",
        "FLEXFACTOR_APP_SECRET": secrets.token_urlsafe(24),
        "FLEXFACTOR_MID": str(uuid.uuid4()),
        "FLEXFACTOR_WEBHOOK_KEY": base64.b64encode(secrets.token_bytes(64)).decode("ascii"),
        "FLEXFACTOR_MODE": "managed",
        "FLEXFACTOR_RATE_LIMIT": RATE_LIMIT,
        "FLEXMIT_INTAKE_TOKEN": secrets.token_urlsafe(24),
        # The demo must never reach anything outside its directory: no billing pushes.
        "FLEXMIT_BILLING_CALLBACK_URL": None,
        "FLEXMIT_BILLING_CALLBACK_SECRET": None,
        "FLEXFACTOR_SITE_ID": None,
        "FLEXFACTOR_TOKENIZATION_KEY": None,
        # Fast ladders so sweeps and status polls act within the demo's minute.
        "FLEXMIT_SWEEP_INTERVAL_S": 2,
        "FLEXMIT_PENDING_LADDER_S": [5, 5, 10],
        "FLEXMIT_REDISPATCH_AFTER_S": 10,
        "FLEXMIT_CLAIM_LEASE_S": 30,
        "FLEXMIT_LOG_FORMAT": "json",
    }
    return Settings(_env_file=None, **values)


def child_env(settings: Settings) -> dict[str, str]:
    """The environment of every child: ours minus any flexmit configuration, plus the demo's."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXMIT_", "FLEXFACTOR_"))}
    return {**base, **settings.to_env(), "PYTHONUNBUFFERED": "1"}


def start_services(demo: Demo, workers: int) -> None:
    """Start the sandbox, the API, ``workers`` Celery workers and the one beat."""
    procs, root = demo.procs, demo.root
    procs.start("sandbox", "-m", "worker.cli", "sandbox", "--port", str(demo.sandbox_port),
                "--webhook-url", f"{demo.api_root}{WEBHOOK_PATH}", "--mode", "managed",
                "--resolve-after", f"{RESOLVE_AFTER_S:g}", "--rate-limit", f"{RATE_LIMIT:g}")
    procs.start("api", "-m", "worker.cli", "api", "--port", str(demo.api_port))
    for n in range(1, workers + 1):
        procs.start(f"worker{n}", "-m", "celery", "-A", "worker", "worker", "-P", "prefork",
                    "-c", "2", "-Q", "flexmit", "--without-gossip", "--without-mingle",
                    "-n", f"demo{n}@%h", "-l", "INFO")
    procs.start("beat", "-m", "celery", "-A", "worker", "beat", "-s",
                str(root / "beat-schedule"), "-l", "INFO")
    wait_http(f"{demo.sandbox_root}/_sandbox/ledger", procs, "sandbox")
    wait_http(f"{demo.api_root}/healthz", procs, "api")


def submit(demo: Demo, path: Path, console: Console) -> Tally:
    """POST the batch file's rows to the API in chunks, with a progress bar."""
    token = demo.settings.intake_token
    assert token is not None  # demo_settings always sets one
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
    rows = list(read_batch(path))
    tally = Tally(unreadable=sum(1 for r in rows if r.parse_error is not None))
    good = [r.raw for r in rows if r.parse_error is None]
    with httpx.Client(base_url=demo.api_root, headers=headers, timeout=60) as client, \
            Progress(*COLUMNS, console=console) as progress:
        bar = progress.add_task(f"submitting {path.name}", total=len(good), detail="")
        for start in range(0, len(good), CHUNK):
            chunk = good[start:start + CHUNK]
            resp = client.post("/v1/declines", json={"declines": chunk})
            if resp.status_code != 202:
                raise DemoError(f"POST /v1/declines answered {resp.status_code}: {resp.text[:300]}")
            _count(tally, resp.json()["results"])
            progress.update(bar, advance=len(chunk),
                            detail=f"{tally.accepted} accepted, {tally.rejected} rejected")
    return tally


def _count(tally: Tally, results: list[dict[str, Any]]) -> None:
    for item in results:
        tally.sent += 1
        if item.get("duplicate"):
            tally.duplicates += 1
        elif item["accepted"]:
            tally.accepted += 1
        else:
            tally.rejected += 1
            tally.rejected_fields.update(list(item["errors"]))


def _brief(states: dict[str, int]) -> str:
    return " ".join(f"{s.value}={states[s]}" for s in State if states.get(s))


def follow(demo: Demo, sessions: sessionmaker[Session], accepted: int, console: Console,
           timeout: float) -> bool:
    """Show progress until no order is in flight (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    workers_by = time.monotonic() + WORKERS_START_S
    with Progress(*COLUMNS, console=console) as progress:
        bar = progress.add_task("waiting for the workers", total=accepted, detail="")
        while True:
            demo.procs.check_alive()
            with sessions() as session:
                states = counts_by_state(session)
            open_now = sum(states.get(s, 0) for s in IN_FLIGHT)
            total = sum(states.values())
            if states.get(State.QUEUED, 0) < total:
                progress.update(bar, description="resolving")
            elif time.monotonic() > workers_by:
                raise DemoError(f"no order left QUEUED within {WORKERS_START_S:.0f} s:\n"
                                f"{demo.procs.log_tail('worker1')}")
            progress.update(bar, completed=total - open_now, detail=_brief(states))
            if total >= accepted and not open_now:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)  # polling the database: the observable state of the pipeline


def _pipeline(demo: Demo, count: int, bad_fraction: float, workers: int,
              console: Console) -> dict[str, Any]:
    """Start, submit, follow; returns the summary (with its problems)."""
    settings = demo.settings
    upgrade(settings.database_url)
    console.print(f"[bold]flexmit demo[/] in {demo.root}: sandbox :{demo.sandbox_port}, "
                  f"API :{demo.api_port}, {workers} workers x 2, limit {RATE_LIMIT:g}/s")
    start_services(demo, workers)
    demo.mark("startup")
    batch = make_batch(count, bad_fraction, now=datetime.now(UTC), tz=settings.tz, seed=SEED)
    path = write_csv(demo.root / f"declines-{datetime.now(settings.tz):%Y-%m-%d}.csv", batch.rows)
    tally = submit(demo, path, console)
    demo.mark("submit")
    engine = make_engine(settings)
    try:
        sessions = make_session_factory(engine)
        timeout = tally.accepted / (RATE_LIMIT * settings.rate_headroom) + SETTLE_MARGIN_S
        settled = follow(demo, sessions, tally.accepted, console, max(timeout, 90.0))
        demo.mark("settle")
        ledger = sandbox_ledger(demo.sandbox_root)
        summary = gather(sessions, tally, ledger, dict(batch.planned_states), RATE_LIMIT)
    finally:
        engine.dispose()
    summary["settled"] = settled
    summary["bad_kinds"] = dict(batch.bad_kinds)
    summary["problems"] = problems(summary)
    print_tables(console, summary)
    return summary


def run_demo(*, count: int = 1000, bad_fraction: float = 0.05, workers: int = 2,
             keep: bool = False) -> int:
    """Run the demo; returns the exit code (0: every accepted decline final, nothing lost)."""
    console = Console()
    root = Path(tempfile.mkdtemp(prefix="flexmit-demo-"))
    sandbox_port = api_port = free_port()
    while api_port == sandbox_port:  # the kernel may hand out a just-released port again
        api_port = free_port()
    settings = demo_settings(root, sandbox_port)
    demo = Demo(root, settings, sandbox_port, api_port,
                Processes(root / "logs", child_env(settings), root))
    summary: dict[str, Any] | None = None
    code = 1
    try:
        with sigterm_as_interrupt():
            summary = _pipeline(demo, count, max(bad_fraction, 0.0), max(workers, 1), console)
            code = 0 if not summary["problems"] else 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: stopping every process[/]")
        code = 130
    except DemoError as exc:
        console.print(f"[bold red]demo failed:[/] {exc}")
    except Exception:  # a bug: show it, but still stop every process and keep the evidence
        console.print_exception()
    finally:
        _finish(demo, summary, console)
    return _cleanup(root, keep=keep or code != 0, console=console, code=code)


def _finish(demo: Demo, summary: dict[str, Any] | None, console: Console) -> None:
    """Stop every process, then store the summary and print the verdict."""
    console.print(f"stopping {len(demo.procs.procs)} processes (warm shutdown) ...")
    with shielded():
        killed = demo.procs.stop_all()
    if killed:
        console.print(f"[yellow]needed SIGKILL: {', '.join(killed)}[/]")
    if summary is None:
        return
    demo.mark("shutdown")
    summary["timings"] = {**demo.timings, "total": sum(demo.timings.values())}
    summary["pids"] = {name: proc.pid for name, proc in demo.procs.procs.items()}
    (demo.root / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    print_verdict(console, summary)


def _cleanup(root: Path, *, keep: bool, console: Console, code: int) -> int:
    if keep:
        console.print(f"kept {root} (database, batch file, logs/, summary.json)")
    else:
        shutil.rmtree(root, ignore_errors=True)
    return code
