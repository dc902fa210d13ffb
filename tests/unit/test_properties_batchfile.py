"""Any batch file (CSV, JSON Lines, JSON array, bytes) is read without raising: each row is a
decline-shaped object or a parse error; submitted, every refused row is stored (hypothesis)."""

from __future__ import annotations

import csv
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rich.console import Console
from sqlalchemy import func, select

from tests.factories import make_valid_decline
from tests.pipeline import stack_settings
from tests.webhooks_helpers import make_runtime
from worker.batchfile import BatchRow, read_batch
from worker.db.models import Order, RejectedDecline
from worker.intake import validate_decline
from worker.orders import utcnow
from worker.runtime import Runtime
from worker.submit import submit_file

SETTINGS = stack_settings("sqlite://", "file:///unused", "filesystem:///unused",
                          "http://127.0.0.1:9/v1")
SUFFIXES = st.sampled_from([".csv", ".jsonl", ".ndjson", ".json", ".txt", ""])
COLUMNS = ["orderId", "declinedAt", "amount", "currency", "isRecurring", "card.token",
           "card.expMonth", "card.expYear", "payer.email", "billingAddress.countryCode",
           "subscription.id", "card", "card.token.x", "", " amount", "amount"]
ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
CELL = ANY_TEXT | st.sampled_from(["", "1999", "-1", "true", "0", "1e3", "4111111111111111",
                                   '"', "\r\n", "2026-11-25T08:15:00Z"])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(ANY_TEXT, inner, max_size=3), max_leaves=8)


@st.composite
def csv_text(draw: st.DrawFn) -> str:
    """A CSV file with a header of (mostly) contract columns and rows of anything."""
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=8))
    rows = draw(st.lists(st.lists(CELL, max_size=len(header) + 2), max_size=5))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def json_lines(values: list[Any]) -> str:
    return "\n".join(json.dumps(v) for v in values)


CONTENT = (st.binary(max_size=400)
           | csv_text().map(lambda t: t.encode("utf-8", "surrogatepass"))
           | st.lists(JSON | st.just(make_valid_decline()), max_size=5)
           .map(lambda vs: json_lines(vs).encode("utf-8", "surrogatepass"))
           | st.lists(JSON, max_size=4).map(lambda vs: json.dumps({"declines": vs}).encode()))


def written(content: bytes, suffix: str, folder: str) -> Path:
    path = Path(folder) / f"batch{suffix}"
    path.write_bytes(content)
    return path


def check_rows(rows: list[BatchRow]) -> None:
    for row in rows:
        assert isinstance(row.line_no, int) and row.line_no >= 1
        assert row.parse_error is None or (isinstance(row.parse_error, str) and row.parse_error)
        if row.parse_error is None:  # a row that parsed goes on to validation, which decides
            validate_decline(row.raw, now=utcnow(), settings=SETTINGS)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CONTENT, SUFFIXES)
@example(b"\xef\xbb\xbforderId,amount\n\xff\xfe,1\n", ".csv")
@example(b'[{"orderId": "a"}, 5, "x", [', ".json")
@example(b'{"declines": [{"orderId": "\\ud800"}]}', ".json")
def test_any_file_is_read_without_raising(content: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_rows(list(read_batch(written(content, suffix, folder))))


def counts(rt: Runtime) -> tuple[int, int]:
    with rt.sessions() as session:
        return (session.scalar(select(func.count()).select_from(RejectedDecline)) or 0,
                session.scalar(select(func.count()).select_from(Order)) or 0)


def test_any_file_submitted_keeps_every_refused_row(database_url: str,
                                                     shared_urls: tuple[str, str]) -> None:
    rt = make_runtime(database_url, shared_urls)

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(CONTENT, SUFFIXES)
    @example(json_lines([make_valid_decline(orderId="\ud800"), "x"]).encode(), ".jsonl")
    def run(content: bytes, suffix: str) -> None:
        rejected_before, orders_before = counts(rt)
        with tempfile.TemporaryDirectory() as folder:
            report = submit_file(rt, written(content, suffix, folder),
                                 console=Console(file=io.StringIO()))
        rejected_after, orders_after = counts(rt)
        assert rejected_after - rejected_before == len(report.rejected)
        assert orders_after - orders_before == report.accepted

    run()
    rt.close()
