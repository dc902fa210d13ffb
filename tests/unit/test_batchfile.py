"""worker.batchfile: CSV and JSON Lines rows as decline objects, streamed; rejects beside."""

from __future__ import annotations

import csv
import json
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.factories import make_valid_decline
from worker import batchfile
from worker.batchfile import BatchRow, nest, read_batch, rejects_path, write_rejects
from worker.intake import PAN_MESSAGE, PAN_PLACEHOLDER, Accepted, Rejected, validate_decline
from worker.settings import Settings

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
CFG = Settings(_env_file=None, FLEXMIT_MERCHANT_TZ="America/New_York")  # type: ignore[call-arg]
VISA = "4111111111111111"


def flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_csv(path: Path, declines: list[dict[str, Any]]) -> Path:
    flat = [flatten(d) for d in declines]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows({k: cell(v) for k, v in row.items()} for row in flat)
    return path


def rows(path: Path) -> list[BatchRow]:
    return list(read_batch(path))


# ---------------------------------------------------------------- CSV


def test_csv_round_trip_of_a_valid_decline(tmp_path: Path) -> None:
    decline = make_valid_decline(NOW)
    [row] = rows(write_csv(tmp_path / "daily.csv", [decline]))
    assert row.line_no == 2 and row.parse_error is None
    assert row.raw == decline
    assert isinstance(validate_decline(row.raw, now=NOW, settings=CFG), Accepted)


def test_csv_dotted_columns_nest_and_empty_cells_are_absent(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("orderId,card.token,card.expMonth,subscription.id,billingAddress.zipCode\n"
                    "A1,tok_1,12,,02134\n")
    assert rows(path)[0].raw == {"orderId": "A1", "card": {"token": "tok_1", "expMonth": 12},
                                 "subscription": {"id": None},
                                 "billingAddress": {"zipCode": "02134"}}


@pytest.mark.parametrize(("column", "text", "expected"), [
    ("amount", "1999", 1999),
    ("amount", " 1999 ", 1999),
    ("amount", "-5", -5),
    ("amount", "19.99", "19.99"),
    ("amount", "1,999", "1,999"),
    ("amount", "1e3", "1e3"),
    ("amount", "9" * 40, "9" * 40),
    ("subscription.paymentNumber", "3", 3),
    ("subscription.totalPayments", "12", 12),
    ("subscription.price", "1999", 1999),
    ("card.expMonth", "07", 7),
    ("card.expYear", "2028", 2028),
    ("card.bin", "411111", "411111"),  # a string column stays a string
    ("card.last4", "0004", "0004"),
    ("decline.responseCode", "05", "05"),
    ("isRecurring", "true", True),
    ("isRecurring", "FALSE", False),
    ("isRecurring", "1", True),
    ("isRecurring", "0", False),
    ("isRecurring", "yes", "yes"),
    ("orderId", "", None),
])
def test_csv_types_only_where_the_contract_has_them(tmp_path: Path, column: str, text: str,
                                                    expected: object) -> None:
    path = tmp_path / "t.csv"
    with path.open("w", newline="") as fh:
        csv.writer(fh).writerows([["x", column], ["1", text]])
    raw = rows(path)[0].raw
    assert isinstance(raw, dict)
    node: Any = raw
    for part in column.split("."):
        node = node[part]
    assert node == expected and type(node) is type(expected)


def test_csv_bad_values_reach_validation_as_strings(tmp_path: Path) -> None:
    decline = make_valid_decline(NOW)
    flat_path = write_csv(tmp_path / "bad.csv", [decline])
    text = flat_path.read_text().replace(",1999,", ",19.99,", 1)
    flat_path.write_text(text)
    result = validate_decline(rows(flat_path)[0].raw, now=NOW, settings=CFG)
    assert isinstance(result, Rejected)
    assert result.errors["amount"] == ["must be an integer number of cents greater than 0"]


def test_csv_line_numbers_count_blank_lines_and_multiline_cells(tmp_path: Path) -> None:
    path = tmp_path / "l.csv"
    path.write_text('orderId,notes\nA,x\n\n"B","two\nlines"\nC,y\n', newline="")
    assert [(r.line_no, r.raw["orderId"]) for r in rows(path)  # type: ignore[index]
            ] == [(2, "A"), (4, "B"), (6, "C")]


def test_csv_with_a_bom_header(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbforderId,amount\r\nA,5\r\n")
    assert rows(path)[0].raw == {"orderId": "A", "amount": 5}


def test_csv_rows_with_the_wrong_cell_count_are_parse_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(f"orderId,amount\nA,5\nB\nC,5,{VISA}\nD,6\n")
    got = rows(path)
    assert [r.parse_error is None for r in got] == [True, False, False, True]
    assert got[1].line_no == 3 and "1 cells but the header has 2" in (got[1].parse_error or "")
    assert VISA not in repr(got[2]) and PAN_PLACEHOLDER in repr(got[2])


@pytest.mark.parametrize(("header", "reason"), [
    ("orderId,orderId", "appears twice"),
    ("card,card.token", "conflicts"),
    ("orderId,,amount", "not a field name"),
    ("card..token", "not a field name"),
])
def test_csv_bad_headers_mark_every_row(tmp_path: Path, header: str, reason: str) -> None:
    path = tmp_path / "h.csv"
    width = header.count(",") + 1
    path.write_text(header + "\n" + ",".join(["x"] * width) + "\n" + ",".join(["y"] * width))
    got = rows(path)
    assert len(got) == 2 and all(reason in (r.parse_error or "") for r in got)


def test_csv_invalid_utf8_is_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_bytes(b"orderId,notes\nA,caf\xe9\nB,ok\n")
    got = rows(path)
    assert "UTF-8" in (got[0].parse_error or "") and got[1].parse_error is None
    json.dumps(got[0].raw)


def test_a_13_digit_non_luhn_number_in_csv_is_not_a_pan(tmp_path: Path) -> None:
    decline = make_valid_decline(NOW, **{"decline.pspTransactionId": "1234567890123"})
    [row] = rows(write_csv(tmp_path / "n.csv", [decline]))
    assert isinstance(validate_decline(row.raw, now=NOW, settings=CFG), Accepted)


def test_a_pan_in_a_csv_cell_is_caught(tmp_path: Path) -> None:
    decline = make_valid_decline(NOW, **{"card.token": "4111 1111 1111 1111", "amount": VISA})
    [row] = rows(write_csv(tmp_path / "p.csv", [decline]))
    assert row.raw["amount"] == int(VISA)  # type: ignore[index]
    result = validate_decline(row.raw, now=NOW, settings=CFG)
    assert isinstance(result, Rejected)
    assert result.errors["card.token"] == [PAN_MESSAGE] and result.errors["amount"] == [PAN_MESSAGE]
    assert VISA not in repr(result)


def test_nest() -> None:
    assert nest({"a.b.c": 1, "a.d": 2, "e": None}) == {"a": {"b": {"c": 1}, "d": 2}, "e": None}


# ---------------------------------------------------------------- JSON Lines


def test_jsonl_rows_blank_lines_and_bad_lines(tmp_path: Path) -> None:
    decline = make_valid_decline(NOW)
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(decline) + "\n\n   \n{bad json, " + VISA + "\n[1, 2]\n"
                    + json.dumps({"orderId": "x"}) + "\n")
    got = rows(path)
    assert [r.line_no for r in got] == [1, 4, 5, 6]
    assert got[0].raw == decline and got[0].parse_error is None
    assert (got[1].parse_error or "").startswith("not valid JSON")
    assert VISA not in repr(got[1])
    assert "not a JSON object" in (got[2].parse_error or "")
    assert got[3].raw == {"orderId": "x"}


def test_jsonl_invalid_utf8_and_overlong_lines(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batchfile, "MAX_LINE", 50)
    path = tmp_path / "u.ndjson"
    path.write_bytes(b'{"a": "caf\xe9"}\n{"b": "' + b"x" * 200 + b'"}\n{"c": 1}\n')
    got = rows(path)
    assert "UTF-8" in (got[0].parse_error or "")
    assert got[1].line_no == 2 and "longer than 50" in (got[1].parse_error or "")
    assert got[2] == BatchRow(3, {"c": 1}, None)


def test_json_array_and_declines_wrapper_are_streamed(tmp_path: Path) -> None:
    one, two = make_valid_decline(NOW), make_valid_decline(NOW)
    body = json.dumps({"declines": [one, 5, two]}, indent=2)
    path = tmp_path / "batch.json"
    path.write_text(body)
    got = rows(path)
    assert [r.raw for r in got if r.parse_error is None] == [one, two]
    assert got[1].parse_error == "array element is not a JSON object"
    assert got[0].line_no == 3
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps([one]))
    assert [r.raw for r in rows(plain)] == [one]


def test_json_array_that_breaks_stops_with_a_parse_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('[\n{"a": 1},\n{"b": ' + VISA + ",\n")
    got = rows(path)
    assert got[0].raw == {"a": 1}
    assert got[1].line_no == 3 and "not valid JSON" in (got[1].parse_error or "")
    assert VISA not in repr(got[1])


def test_a_json_file_with_one_object_per_line_is_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "lines.json"
    path.write_text('{"a": 1}\n{"b": 2}\n')
    assert [r.raw for r in rows(path)] == [{"a": 1}, {"b": 2}]


@pytest.mark.parametrize(("content", "expected"), [
    ('{"orderId": "a"}\n', {"orderId": "a"}),
    ("orderId,amount\na,5\n", {"orderId": "a", "amount": 5}),
])
def test_unknown_extensions_are_sniffed(tmp_path: Path, content: str, expected: object) -> None:
    path = tmp_path / "batch.txt"
    path.write_text(content)
    assert rows(path)[0].raw == expected


# ---------------------------------------------------------------- streaming


def _big_csv(path: Path, count: int) -> Path:
    decline = flatten(make_valid_decline(NOW))
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(decline))
        values = [cell(v) for v in decline.values()]
        for i in range(count):
            values[0] = f"inv-{i}"
            writer.writerow(values)
    return path


def test_100k_rows_are_read(tmp_path: Path) -> None:
    path = _big_csv(tmp_path / "big.csv", 100_000)
    rows_iter = read_batch(path)
    assert isinstance(rows_iter, Iterator)
    assert sum(1 for row in rows_iter if row.parse_error is None) == 100_000


def test_memory_stays_bounded_whatever_the_file_size(tmp_path: Path) -> None:
    path = _big_csv(tmp_path / "mid.csv", 10_000)
    assert path.stat().st_size > 2_500_000
    tracemalloc.start()
    try:
        count = sum(1 for _ in read_batch(path))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 10_000
    assert peak < 1_000_000  # well below the file size: only the current row is held


def test_the_first_row_comes_before_the_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "lazy.jsonl"
    path.write_text('{"a": 1}\n' + "{oops\n" * 10)
    first = next(read_batch(path))
    assert first.raw == {"a": 1}


# ---------------------------------------------------------------- rejects


def test_write_rejects_beside_the_input_redacted(tmp_path: Path) -> None:
    source = tmp_path / "daily.csv"
    records = [{"line": 3, "orderId": "A", "errors": {"amount": ["bad"]},
                "payload": {"notes": VISA, "amount": "x"}},
               {"line": 7, "orderId": None, "errors": {"line": ["not valid JSON"]},
                "payload": "garbage"}]
    written = write_rejects(source, iter(records))
    assert written == rejects_path(source) == tmp_path / "daily.rejects.jsonl"
    lines = [json.loads(line) for line in written.read_text().splitlines()]
    assert [item["line"] for item in lines] == [3, 7]
    assert lines[0]["payload"] == {"notes": PAN_PLACEHOLDER, "amount": "x"}
    assert lines[0]["errors"] == {"amount": ["bad"]}
    assert VISA not in written.read_text()
    assert not list(tmp_path.glob(".*.tmp"))


def test_content_after_a_json_array_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "two.json"
    path.write_text('[{"a": 1}]\n[{"b": 2}]\n')
    got = rows(path)
    assert got[0].raw == {"a": 1}
    assert got[1].line_no == 2 and "after the JSON array" in (got[1].parse_error or "")
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text('{"declines": [{"a": 1}]}\n')
    assert rows(wrapped) == [BatchRow(1, {"a": 1}, None)]
