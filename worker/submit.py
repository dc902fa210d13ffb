"""``flexmit submit FILE``: a daily batch (CSV or JSON Lines) through the same intake as HTTP.

Streams the file in chunks (one transaction each), shows a progress bar, writes rejected rows
beside the input (``<name>.rejects.jsonl``), and ends with a per-row report and a summary.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from worker.batchfile import BatchRow, read_batch, write_rejects
from worker.intake_store import ItemResult, accept_declines, store_body_reject
from worker.runtime import Runtime

CHUNK_ROWS = 1000


@dataclass
class SubmitReport:
    """What happened to every row of one file."""

    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.accepted + self.duplicates + len(self.rejected)


def _chunks(rows: Iterator[BatchRow], size: int) -> Iterator[list[BatchRow]]:
    chunk: list[BatchRow] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


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
        bar = progress.add_task(f"submitting {path.name}", total=_count_rows(path))
        for chunk in _chunks(read_batch(path), CHUNK_ROWS):
            _submit_chunk(rt, path, chunk, report)
            progress.advance(bar, len(chunk))
    if report.rejected:
        write_rejects(path, report.rejected)
    return report


def _submit_chunk(rt: Runtime, path: Path, chunk: list[BatchRow], report: SubmitReport) -> None:
    good = [row for row in chunk if row.parse_error is None]
    for row in chunk:
        if row.parse_error is not None:
            ref = f"{path.name}:{row.line_no}"
            store_body_reject(rt, row.raw, row.parse_error, "cli", ref)
            report.rejected.append(_reject_row(row, None, {"line": [row.parse_error]}))
    refs = [f"{path.name}:{row.line_no}" for row in good]
    outcome = accept_declines(rt, [row.raw for row in good], source="cli", refs=refs)
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
