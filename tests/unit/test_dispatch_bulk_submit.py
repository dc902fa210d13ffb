"""Bulk ``flexmit submit``: a file validated by the helper process gives the same report and the
same stored rows as one validated in-process, and only the dispatch window is sent at once."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from sqlalchemy import func, select

from tests.conftest import embedded_runtime
from tests.factories import make_valid_decline
from worker import submit
from worker.db.models import Order, OrderEvent, RejectedDecline, Suppression
from worker.runtime import Runtime


@pytest.fixture
def runtime(database_url: str, tmp_path: Path) -> Iterator[Runtime]:
    with embedded_runtime(database_url, tmp_path, FLEXFACTOR_RATE_LIMIT=1) as rt:
        yield rt


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = "" if value is None else (
                str(value).lower() if isinstance(value, bool) else value)
    return out


def write_batch(path: Path, prefix: str, n: int) -> None:
    """``n`` rows: every 10th has a bad email, after every 25th, the one before it comes again."""
    rows = []
    for i in range(n):
        decline = make_valid_decline(orderId=f"{prefix}-{i:04d}")
        if i % 10 == 9:
            decline["payer"]["email"] = "not-an-email"
        rows.append(_flat(decline))
        if i % 25 == 24:
            rows.append(dict(rows[-2]))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    buf.write("only,three,cells\n")  # a row that cannot be parsed
    path.write_text(buf.getvalue())


def run(rt: Runtime, path: Path) -> dict[str, Any]:
    report = submit.submit_file(rt, path, console=Console(file=io.StringIO()))
    lines = sorted((r["line"], tuple(r["errors"])) for r in report.rejected)
    return {"accepted": report.accepted, "duplicates": report.duplicates, "rejected": lines}


def counts(rt: Runtime, prefix: str) -> tuple[int, ...]:
    with rt.sessions() as s:
        orders = s.scalar(select(func.count()).select_from(Order)
                          .where(Order.order_id.like(f"{prefix}-%")))
        pks = select(Order.id).where(Order.order_id.like(f"{prefix}-%"))
        events = s.scalar(select(func.count()).select_from(OrderEvent)
                          .where(OrderEvent.order_pk.in_(pks),
                                 OrderEvent.cause == "intake.cli"))
        sups = s.scalar(select(func.count()).select_from(Suppression)
                        .where(Suppression.order_pk.in_(pks)))
        rejects = s.scalar(select(func.count()).select_from(RejectedDecline)
                           .where(RejectedDecline.source_ref.like(f"{prefix}.csv:%")))
        return orders or 0, events or 0, sups or 0, rejects or 0


def test_the_helper_process_path_matches_the_in_process_path(
        runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(submit, "CHUNK_ROWS", 40)
    write_batch(tmp_path / "inproc.csv", "inproc", 150)
    write_batch(tmp_path / "helper.csv", "helper", 150)
    monkeypatch.setattr(submit, "PARALLEL_MIN_ROWS", 10**9)
    in_process = run(runtime, tmp_path / "inproc.csv")
    monkeypatch.setattr(submit, "PARALLEL_MIN_ROWS", 0)
    helper = run(runtime, tmp_path / "helper.csv")

    assert helper == in_process
    assert (helper["accepted"], helper["duplicates"], len(helper["rejected"])) == (135, 6, 16)
    assert counts(runtime, "helper") == counts(runtime, "inproc") == (135, 135, 135, 16)
    with runtime.sessions() as s:  # window 100: the second file found it full
        dispatched = s.scalar(select(func.count()).select_from(Order)
                              .where(Order.dispatched_at.is_not(None)))
    assert dispatched == 100


def test_a_helper_that_fails_stops_the_submit_with_its_error(
        runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "boom.csv"
    write_batch(path, "boom", 5)

    def explode(rows: Any, settings: Any) -> Any:
        raise ValueError("disk on fire")

    monkeypatch.setattr(submit, "PARALLEL_MIN_ROWS", 0)
    monkeypatch.setattr(submit, "prepare_chunk", explode)  # the forked child inherits it
    with pytest.raises(RuntimeError, match="disk on fire"):
        run(runtime, path)
