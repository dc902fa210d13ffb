"""``flexmit submit FILE``: a daily batch (CSV or JSON Lines) through the same intake as HTTP.

Streams the file in chunks (one transaction each), shows a progress bar, writes rejected rows
beside the input (``<name>.rejects.jsonl``), and ends with a per-row report and a summary.

Submitting is CPU bound: parsing and validating a row costs about as much as storing it. On a
big file a forked helper process reads and validates the next chunk while this process stores
the current one. It sends accepted declines already dumped
to their contract JSON (``Prepared``: cheap to pickle) with only the orderId of their raw row;
rejected rows travel whole, since the report shows them.
"""

from __future__ import annotations

import multiprocessing
import queue
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.batchfile import BatchRow, read_batch, write_rejects
from worker.intake import Rejected
from worker.intake_store import ItemResult, Verdict, accept_declines, prepare, store_body_reject
from worker.orders import utcnow
from worker.runtime import Runtime
from worker.settings import Settings

CHUNK_ROWS = 5000  # rows per transaction: big enough that per-chunk costs vanish
PARALLEL_MIN_ROWS = 2 * CHUNK_ROWS  # below this a helper process costs more than it saves
QUEUE_CHUNKS = 2  # chunks validated ahead at most (bounds memory)
POLL_S = 1.0


@dataclass
class SubmitReport:
    """What happened to every row of one file."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.accepted + self.duplicates + len(self.rejected)


@dataclass(frozen=True)
class PreparedChunk:
    """Rows of one chunk; ``verdicts`` (one per row without a parse error) as of ``now``."""

    rows: list[BatchRow]
    verdicts: list[Verdict] | None
    now: datetime | None


def chunks(rows: Iterator[BatchRow], size: int) -> Iterator[list[BatchRow]]:
    """``rows`` in lists of ``size`` (the last one shorter)."""
    chunk: list[BatchRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def prepare_chunk(rows: list[BatchRow], settings: Settings) -> PreparedChunk:
    """Validate every parsed row of ``rows`` as of now."""
    now = utcnow()
    verdicts: list[Verdict] = []
    kept: list[BatchRow] = []
    for row in rows:
        if row.parse_error is None:
            verdict = prepare(row.raw, now=now, settings=settings)
            verdicts.append(verdict)
            if not isinstance(verdict, Rejected):
                row = BatchRow(row.line_no, _id_only(row.raw))
        kept.append(row)
    return PreparedChunk(kept, verdicts, now)


def _id_only(raw: object) -> object:
    # Storing an accepted row needs only its orderId (to spot duplicates); the decline itself
    # travels as the verdict.
    return {"orderId": raw.get("orderId")} if isinstance(raw, dict) else raw


def _produce(path: Path, settings: Settings, size: int, out: Any) -> None:
    """The helper process: every chunk of ``path``, then None; an error as its text."""
    try:
        for rows in chunks(read_batch(path), size):
            out.put(prepare_chunk(rows, settings))
        out.put(None)
    except BaseException as exc:  # reported to the parent, which stops the submit
        out.put(f"{type(exc).__name__}: {exc}")


def prepared_chunks(path: Path, settings: Settings, size: int) -> Iterator[PreparedChunk]:
    """The chunks of ``path``, read and validated by a helper process."""
    # fork, not spawn: spawn re-imports the caller's __main__ (a script without a main guard
    # would run again). The child only reads the file and validates; it never touches the
    # connections it inherits and leaves with os._exit (multiprocessing's way), closing none.
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue(maxsize=QUEUE_CHUNKS)
    proc = ctx.Process(target=_produce, args=(path, settings, size, out), daemon=True,
                       name="flexmit-submit-validate")
    proc.start()
    try:
        while (item := _next(out, proc)) is not None:
            if isinstance(item, str):
                raise RuntimeError(f"validating {path.name} failed: {item}")
            yield item
    finally:
        if proc.is_alive():
            proc.kill()
        proc.join(timeout=10)


def _next(out: Any, proc: Any) -> PreparedChunk | str | None:
    while True:
        try:
            return out.get(timeout=POLL_S)
        except queue.Empty:
            if not proc.is_alive():
                try:
                    return out.get(timeout=POLL_S)
                except queue.Empty:
                    raise RuntimeError("the validation process stopped unexpectedly") from None


def _count_rows(path: Path) -> int:
    with path.open("rb") as fh:
        lines = sum(1 for line in fh if line.strip())
    return max(lines - 1, 0) if path.suffix.lower() == ".csv" else lines


def submit_file(rt: Runtime, path: Path, *, console: Console | None = None) -> SubmitReport:
    """Submit every row of ``path``; returns the report (rejects are also written to disk)."""
    console = console or Console(stderr=True)
    report = SubmitReport()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        total = _count_rows(path)
        bar = progress.add_task(f"submitting {path.name}", total=total)
        for chunk in _chunk_source(rt, path, total):
            _submit_chunk(rt, path, chunk, report)
            progress.advance(bar, len(chunk.rows))
    if report.rejected:
        write_rejects(path, report.rejected)
    return report


def _chunk_source(rt: Runtime, path: Path, total: int) -> Iterator[PreparedChunk]:
    # Reading and validating is CPU work: on a big file a helper process does it for the
    # next chunk while this one stores the current chunk (two cores, both busy).
    if total < PARALLEL_MIN_ROWS:
        for rows in chunks(read_batch(path), CHUNK_ROWS):
            yield PreparedChunk(rows, None, None)
        return
    yield from prepared_chunks(path, rt.settings, CHUNK_ROWS)


def _submit_chunk(rt: Runtime, path: Path, chunk: PreparedChunk, report: SubmitReport) -> None:
    good = [row for row in chunk.rows if row.parse_error is None]
    for row in chunk.rows:
        if row.parse_error is not None:
            ref = f"{path.name}:{row.line_no}"
            store_body_reject(rt, row.raw, row.parse_error, "cli", ref)
            report.rejected.append(_reject_row(row, None, {"line": [row.parse_error]}))
    refs = [f"{path.name}:{row.line_no}" for row in good]
    outcome = accept_declines(rt, [row.raw for row in good], source="cli", refs=refs,
                              now=chunk.now, verdicts=chunk.verdicts)
    for row, result in zip(good, outcome.results, strict=True):
        _tally(report, row, result)


def _tally(report: SubmitReport, row: BatchRow, result: ItemResult) -> None:
    if result.duplicate:
        report.duplicates += 1
    elif result.accepted:
        report.accepted += 1
    else:
        report.rejected.append(_reject_row(row, result.orderId, result.errors))


def _reject_row(row: BatchRow, order_id: str | None,
                errors: dict[str, list[str]]) -> dict[str, Any]:
    from worker.intake import redact_pans

    return {"line": row.line_no, "orderId": order_id, "errors": errors,
            "payload": redact_pans(row.raw)}


def print_report(report: SubmitReport, console: Console, *, max_rows: int = 50) -> None:
    """The per-row report of rejects and the summary line."""
    if report.rejected:
        table = Table(title="rejected rows", show_lines=False)
        # The field name is what the reader acts on: on a narrow terminal it stays whole
        # (not "billingAddress.address…"); the orderId folds and the error text wraps.
        table.add_column("line", no_wrap=True)
        table.add_column("orderId", overflow="fold", max_width=20)
        table.add_column("field", no_wrap=True)
        table.add_column("error")
        for item in report.rejected[:max_rows]:
            for field_name, messages in item["errors"].items():
                table.add_row(str(item["line"]), str(item["orderId"] or "-"), field_name,
                              "; ".join(messages))
        console.print(table)
        if len(report.rejected) > max_rows:
            console.print(f"... and {len(report.rejected) - max_rows} more rejected rows")
    console.print(f"[bold]{report.total}[/] rows: [green]{report.accepted} accepted[/], "
                  f"{report.duplicates} already known, [red]{len(report.rejected)} rejected[/]")
