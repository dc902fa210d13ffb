"""Daily batch files: stream CSV or JSON Lines rows as decline-shaped objects, and write rejects.

CSV: a header row of contract field names, dotted for nesting (``card.token``); an empty cell
is absent (``None``); integer columns (``amount``, ``card.expMonth`` ...) become ints only when
the cell is an integer literal, and ``isRecurring`` a bool only for true/false/1/0, so
anything else reaches validation as the string it was and is reported there.
JSON Lines (``.jsonl``, ``.ndjson``, ``.json``): one object per line, blank lines skipped. A
``.json`` file holding one array (or ``{"declines": [...]}``) is streamed element by element.
Nothing is read whole: rows are yielded as they are parsed. A row that cannot be parsed comes
with ``parse_error`` and its text, card numbers redacted, as ``raw``; it never raises.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from worker.intake import redact_pans

INT_COLUMNS = frozenset({"amount", "subscription.paymentNumber", "subscription.totalPayments",
                         "subscription.price", "card.expMonth", "card.expYear"})
BOOL_COLUMNS = frozenset({"isRecurring"})
JSON_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})
MAX_LINE = 1_000_000  # characters in one JSON line, or one JSON array element
CHUNK = 65_536
_INT_LITERAL = re.compile(r"[+-]?[0-9]{1,18}")
_BOOLS = {"true": True, "false": False, "1": True, "0": False}
_SURROGATE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
_ARRAY_START = re.compile(r'\s*(\{\s*"declines"\s*:\s*)?\[')


@dataclass(frozen=True)
class BatchRow:
    """One row of a batch file: its first line number and the decline object, or why not."""

    line_no: int
    raw: object
    parse_error: str | None = None


def read_batch(path: Path) -> Iterator[BatchRow]:
    """Stream the rows of a CSV or JSON Lines file (chosen by extension, else by sniffing)."""
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        if _is_json(path, fh):
            yield from _read_json(fh)
        else:
            yield from _read_csv(fh)


def _is_json(path: Path, fh: IO[str]) -> bool:
    suffix = path.suffix.lower()
    if suffix == ".csv" or suffix in JSON_SUFFIXES:
        return suffix != ".csv"
    head = fh.read(CHUNK)
    fh.seek(0)
    return head.lstrip()[:1] in ("{", "[")


def _clean(text: str) -> str:
    """Text safe to store and show: undecodable bytes as U+FFFD, card numbers redacted."""
    fixed = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return str(redact_pans(fixed[:10_000]))


def _bad(line_no: int, text: str, error: str) -> BatchRow:
    return BatchRow(line_no, _clean(text), error)


def _undecodable(text: str) -> bool:
    return _SURROGATE.search(text) is not None


# ---------------------------------------------------------------- CSV


def _header_error(names: list[str]) -> str | None:
    seen: set[str] = set()
    for name in names:
        if not name or any(not part for part in name.split(".")):
            return f"header: column {name!r} is not a field name"
        if name in seen:
            return f"header: column {name!r} appears twice"
        seen.add(name)
    for name in names:
        parts = name.split(".")
        for cut in range(1, len(parts)):
            if ".".join(parts[:cut]) in seen:
                return f"header: column {name!r} conflicts with column {'.'.join(parts[:cut])!r}"
    return None


def _cell(column: str, cell: str) -> object:
    if cell == "":
        return None
    if column in INT_COLUMNS and _INT_LITERAL.fullmatch(cell.strip()):
        return int(cell.strip())
    if column in BOOL_COLUMNS:
        return _BOOLS.get(cell.strip().lower(), cell)
    return cell


def nest(flat: Mapping[str, object]) -> dict[str, Any]:
    """``{"card.token": t}`` -> ``{"card": {"token": t}}`` (names checked by the header)."""
    out: dict[str, Any] = {}
    for name, value in flat.items():
        target = out
        *parents, leaf = name.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    return out


def _read_csv(fh: IO[str]) -> Iterator[BatchRow]:
    reader = csv.reader(fh)
    header: list[str] | None = None
    header_error: str | None = None
    line_no = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield BatchRow(line_no, None, f"unreadable CSV: {exc}")
            if reader.line_num < line_no:
                return
            line_no = reader.line_num + 1
            continue
        start, line_no = line_no, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if header is None:
            header = [name.strip() for name in cells]
            header_error = _header_error(header)
            continue
        yield _csv_row(start, header, header_error, cells)


def _csv_row(line_no: int, header: list[str], header_error: str | None,
             cells: list[str]) -> BatchRow:
    text = ",".join(cells)
    if header_error is not None:
        return _bad(line_no, text, header_error)
    if len(cells) != len(header):
        return _bad(line_no, text, f"row has {len(cells)} cells but the header has {len(header)}")
    if _undecodable(text):
        return _bad(line_no, text, "row is not valid UTF-8")
    return BatchRow(line_no, nest({n: _cell(n, c) for n, c in zip(header, cells, strict=True)}))


# ---------------------------------------------------------------- JSON Lines and JSON arrays


def _read_json(fh: IO[str]) -> Iterator[BatchRow]:
    head = fh.read(CHUNK)
    fh.seek(0)
    if _ARRAY_START.match(head):  # ``[...]`` or ``{"declines": [...]}``: never a JSON Lines row
        yield from _ArrayReader(fh).rows()
    else:
        yield from _read_lines(fh)


def _lines(fh: IO[str]) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, too long) per line, never holding more than MAX_LINE characters."""
    line_no = 0
    while True:
        line = fh.readline(MAX_LINE + 1)
        if not line:
            return
        line_no += 1
        if len(line) <= MAX_LINE or line.endswith("\n"):
            yield line_no, line, False
            continue
        while line and not line.endswith("\n"):  # skip the rest of an overlong line
            line = fh.readline(CHUNK)
        yield line_no, "", True


def _read_lines(fh: IO[str]) -> Iterator[BatchRow]:
    for line_no, line, too_long in _lines(fh):
        if too_long:
            yield BatchRow(line_no, None, f"line is longer than {MAX_LINE} characters")
        elif line.strip():
            yield _json_row(line_no, line.strip())


def _json_row(line_no: int, text: str) -> BatchRow:
    if _undecodable(text):
        return _bad(line_no, text, "line is not valid UTF-8")
    try:
        value = json.loads(text)
    except ValueError as exc:
        return _bad(line_no, text, f"not valid JSON: {_json_reason(exc)}")
    if not isinstance(value, dict):
        return _bad(line_no, text, "line is not a JSON object (one decline per line)")
    return BatchRow(line_no, value)


def _json_reason(exc: ValueError) -> str:
    return exc.msg if isinstance(exc, json.JSONDecodeError) else "bad value"


class _ArrayReader:
    """Streams the objects of ``[...]`` or ``{"declines": [...]}``: a buffer, a position, a line."""

    def __init__(self, fh: IO[str]) -> None:
        self.fh, self.buf, self.pos, self.line = fh, "", 0, 1
        self.decoder = json.JSONDecoder()

    def rows(self) -> Iterator[BatchRow]:
        match = _ARRAY_START.match(self._fill(CHUNK))
        if match is None:  # _read_json checked the start; kept for safety
            yield BatchRow(1, None, "not a JSON array of declines")
            return
        self._advance(match.end())
        while True:
            char = self._skip_space()
            if char == "]":
                yield from self._trailing(wrapped=match.group(1) is not None)
                return
            if char == "":
                yield BatchRow(self.line, None, "the JSON array is not closed")
                return
            row, fatal = self._element()
            yield row
            if fatal:
                return  # nothing after malformed JSON can be trusted
            if self._skip_space() == ",":
                self._advance(self.pos + 1)

    def _trailing(self, *, wrapped: bool) -> Iterator[BatchRow]:
        """A parse error if anything but the closing ``}`` follows the array (nothing is lost)."""
        self._advance(self.pos + 1)
        if wrapped and self._skip_space() == "}":
            self._advance(self.pos + 1)
        if self._skip_space():
            yield _bad(self.line, self.buf[self.pos:self.pos + 200],
                       "unexpected content after the JSON array; it was not read")

    def _element(self) -> tuple[BatchRow, bool]:
        """The next element as a row, and whether the JSON itself was broken."""
        line = self.line
        while True:
            try:
                value, end = self.decoder.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                more = len(self.buf) - self.pos < MAX_LINE and self._more()
                if not more:
                    return _bad(line, self.buf[self.pos:self.pos + 200],
                                f"not valid JSON: {exc.msg}"), True
                continue
            self._advance(end)
            if not isinstance(value, dict):
                return BatchRow(line, _clean(json.dumps(value)[:10_000]),
                                "array element is not a JSON object"), False
            return BatchRow(line, value), False

    def _skip_space(self) -> str:
        while True:
            rest = self.buf[self.pos:]
            stripped = rest.lstrip()
            self._advance(self.pos + len(rest) - len(stripped))
            if stripped or not self._more():
                return stripped[:1]

    def _advance(self, end: int) -> None:
        self.line += self.buf.count("\n", self.pos, end)
        self.pos = end
        if self.pos > CHUNK:  # drop what is consumed so memory stays bounded
            self.buf, self.pos = self.buf[self.pos:], 0

    def _more(self) -> bool:
        chunk = self.fh.read(CHUNK)
        self.buf += chunk
        return bool(chunk)

    def _fill(self, size: int) -> str:
        while len(self.buf) < size and self._more():
            pass
        return self.buf


# ---------------------------------------------------------------- rejects


def rejects_path(path: Path) -> Path:
    """Where the rejects of ``path`` go: ``<name>.rejects.jsonl`` beside it."""
    return path.with_name(f"{path.stem}.rejects.jsonl")


def write_rejects(path: Path, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Write reject records (``line``, ``orderId``, ``errors``, ``payload``) beside ``path``.

    Each record is redacted again before writing (no card number reaches the disk); the file
    appears atomically. Returns its path.
    """
    target = rejects_path(path)
    temp = target.with_name(f".{target.name}.tmp")
    # A lone surrogate (a JSON "\ud800" escape in the input) cannot be UTF-8; backslashreplace
    # writes it back as that same JSON escape, so the line stays valid JSON.
    with temp.open("w", encoding="utf-8", errors="backslashreplace") as out:
        for row in rows:
            out.write(json.dumps(redact_pans(dict(row)), ensure_ascii=False, default=str))
            out.write("\n")
    os.replace(temp, target)
    return target
