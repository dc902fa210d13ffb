"""``flexmit demo`` as a user runs it: a subprocess on embedded parts, real worker processes.

Checks what the user sees (exit code, the printed summary) against the database the demo left
behind, and that no process of the demo is still running afterwards, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from worker.batchfile import read_batch
from worker.demo_batch import BAD_KINDS, make_batch, write_csv
from worker.intake import Rejected, find_pans, validate_decline
from worker.money import format_cents
from worker.settings import Settings

pytestmark = pytest.mark.pipeline
ROOT = Path(__file__).resolve().parents[2]


def demo_env(tmp_path: Path) -> dict[str, str]:
    """No flexmit configuration from outside; the demo directory lands in ``tmp_path``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLEXMIT_", "FLEXFACTOR_"))}
    return {**env, "TMPDIR": str(tmp_path), "COLUMNS": "200", "PYTHONUNBUFFERED": "1"}


def demo_dir(tmp_path: Path) -> Path:
    (found,) = tmp_path.glob("flexmit-demo-*")
    return found


def recorded_pids(root: Path) -> dict[str, int]:
    path = root / "logs" / "pids.json"
    return dict(json.loads(path.read_text())) if path.exists() else {}


def assert_nothing_running(pids: dict[str, int]) -> None:
    """Every recorded process group (leader and prefork children) is gone."""
    assert pids, "the demo recorded no processes"
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def database_figures(root: Path) -> dict[str, Any]:
    """What the demo's SQLite database says, read with plain SQL."""
    engine = create_engine(f"sqlite:///{root / 'flexmit.db'}")
    try:
        with engine.connect() as conn:
            states = dict(conn.execute(text(
                "SELECT state, COUNT(*) FROM orders GROUP BY state")).all())
            rescued = conn.execute(text(
                "SELECT COALESCE(SUM(amount_cents), 0) FROM orders WHERE state IN "
                "('APPROVED', 'PARTIALLY_REFUNDED', 'REFUNDED', 'CHARGEBACK')")).scalar_one()
            rejects = [(json.loads(e), json.loads(p)) for e, p in conn.execute(text(
                "SELECT errors, payload FROM rejected_declines")).all()]
    finally:
        engine.dispose()
    return {"states": states, "rescued": int(rescued), "rejects": rejects}


def test_generated_batch_is_valid_except_its_bad_rows(tmp_path: Path) -> None:
    """Read back through the batch reader, good rows pass intake and each bad row fails for
    exactly the one reason it was made with (so the demo's rejections are the deliberate ones)."""
    now = datetime.now(UTC)
    settings = Settings(_env_file=None)
    batch = make_batch(600, 0.05, now=now, tz=settings.tz, seed=7)
    path = write_csv(tmp_path / "batch.csv", batch.rows)
    reasons: Counter[str] = Counter()
    for row in read_batch(path):
        assert row.parse_error is None
        result = validate_decline(row.raw, now=now, settings=settings)
        if isinstance(result, Rejected):
            (field,) = result.errors
            reasons[field] += 1
    assert batch.bad == 30 and sum(batch.planned_states.values()) == 570
    assert reasons == Counter({BAD_KINDS[kind]: n for kind, n in batch.bad_kinds.items()})
    assert set(reasons) == set(BAD_KINDS.values())
    assert set(batch.planned_states) == {"APPROVED", "DECLINED", "EXPIRED", "CANCELLED"}


def test_demo_accounts_for_every_decline_and_leaves_nothing_running(tmp_path: Path) -> None:
    """200 declines (10 bad), one worker: exit 0, every accepted decline in a final state, the
    printed summary equals the database, and no demo process survives."""
    run = subprocess.run(
        [sys.executable, "-m", "worker.cli", "demo", "--count", "200", "--workers", "1",
         "--keep"], cwd=ROOT, env=demo_env(tmp_path), capture_output=True, text=True,
        timeout=150)
    out = run.stdout
    assert run.returncode == 0, out[-4000:] + run.stderr[-4000:]
    root = demo_dir(tmp_path)
    assert_nothing_running(recorded_pids(root))

    db = database_figures(root)
    summary = json.loads((root / "summary.json").read_text())
    # Every accepted decline became one FlexFactor order and reached the state it was made for.
    assert sum(db["states"].values()) == summary["accepted"] == 190
    assert summary["sandbox"]["distinct_orders"] == 190
    assert not set(db["states"]) & {"QUEUED", "UNKNOWN", "PENDING"}
    assert db["states"] == summary["planned_states"]
    for state, n in db["states"].items():
        assert re.search(rf"│ {state}\s+│\s+{n} │", out), f"{state}={n} not printed"
    assert f"amount rescued: {format_cents(db['rescued'])}" in out

    # Each bad row was refused for the reason it was made with, and no card number was stored.
    fields = sorted(field for errors, _ in db["rejects"] for field in errors)
    assert len(db["rejects"]) == 10
    assert set(fields) == set(BAD_KINDS.values()) and len(fields) == 10
    for name in set(fields):
        assert re.search(rf"│ {re.escape(name)}\s+│\s+{fields.count(name)} │", out)
    assert all(not find_pans(payload) for _, payload in db["rejects"])
    assert "OK:" in out


def test_ctrl_c_stops_every_process(tmp_path: Path) -> None:
    """Ctrl-C in the middle of a run: exit 130 and every process group of the demo is gone."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "demo", "--count", "300", "--workers", "1"],
        cwd=ROOT, env=demo_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while _evaluated_so_far(tmp_path) == 0:  # mid-run: workers busy with FlexFactor
            assert proc.poll() is None and time.monotonic() < deadline, "demo did not start"
            time.sleep(0.2)  # polling the demo's database
        pids = recorded_pids(demo_dir(tmp_path))
        assert set(pids) == {"sandbox", "api", "worker1", "beat"}
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, out.decode(errors="replace")[-3000:]
    assert_nothing_running(pids)


def _evaluated_so_far(tmp_path: Path) -> int:
    """Orders that have left QUEUED in the running demo's database (0 before it exists)."""
    dirs = list(tmp_path.glob("flexmit-demo-*/flexmit.db"))
    if not dirs:
        return 0
    engine = create_engine(f"sqlite:///{dirs[0]}")
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(
                "SELECT COUNT(*) FROM orders WHERE state != 'QUEUED'")).scalar_one())
    except OperationalError:  # not migrated yet
        return 0
    finally:
        engine.dispose()
