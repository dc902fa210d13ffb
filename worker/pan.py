"""Card numbers (PANs) in free text: one scanner for the intake guard and the log masking.

A candidate is a window of consecutive digit groups holding 13 to 19 digits that pass the Luhn
check. Groups may be split by single spaces or dashes, as card numbers are printed (4-4-4-4,
4-6-5, 4-6-4), and each group of a window has at least 3 digits: shorter groups are dates and
phone numbers (``inv-2026-11-25-000123`` is not a card). "<pan> <cvv>" is still found (the
window ends early). No issuer number starts with 0, so neither does a candidate. ``\\d`` is any
Unicode decimal digit, on purpose: a card number typed in other scripts is still one.
"""

from __future__ import annotations

import re
import unicodedata

PAN_MASK = "[PAN REDACTED]"

_THIRTEEN = re.compile(r"\d(?:[ -]?\d){12}")  # cheap pre-check: 13 digits, maybe separated
_DIGIT_RUN = re.compile(r"\d+(?:[ -]\d+)*")
_GROUP = re.compile(r"\d+")


def luhn_ok(digits: str) -> bool:
    """True if ``digits`` (decimal digits only, at least 2) passes the Luhn checksum."""
    if len(digits) < 2:
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = unicodedata.decimal(char, -1)
        if value < 0:
            return False
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def pan_spans(run: str) -> list[tuple[int, int]]:
    """Spans (in ``run``, one match of the digit-run pattern) of every candidate window."""
    groups = [(m.start(), m.end()) for m in _GROUP.finditer(run)]
    spans = []
    for i, (start, _) in enumerate(groups):
        if unicodedata.decimal(run[start], -1) == 0:
            continue
        digits = ""
        for g_start, g_end in groups[i:]:
            if digits and (g_end - g_start < 3 or len(digits) < 3):
                break
            digits += run[g_start:g_end]
            if len(digits) > 19:
                break
            if len(digits) >= 13 and luhn_ok(digits):
                spans.append((start, g_end))
    return spans


def may_hold_pan(text: str) -> bool:
    """False when ``text`` cannot hold a card number (no 13 digits in a row): one regex search,
    the fast path for the many short values of a decline or a log line."""
    return len(text) >= 13 and _THIRTEEN.search(text) is not None


def has_pan(text: str) -> bool:
    """True if ``text`` contains something that looks like a raw card number."""
    if not may_hold_pan(text):
        return False
    return any(pan_spans(m.group()) for m in _DIGIT_RUN.finditer(text))


def redact_text(text: str) -> str:
    """``text`` with every card number replaced by ``[PAN REDACTED]`` (for log lines: the
    digits after the point of a decimal number, such as a duration, are left alone)."""
    if not may_hold_pan(text):
        return text
    return _DIGIT_RUN.sub(_mask_run, text)


def _is_fraction(match: re.Match[str]) -> bool:
    at, text = match.start(), match.string
    return at >= 2 and text[at - 1] == "." and text[at - 2].isdigit()


def _mask_run(match: re.Match[str]) -> str:
    run = match.group(0)
    spans = [] if _is_fraction(match) else pan_spans(run)
    if not spans:
        return run
    keep = [True] * len(run)
    for start, end in spans:
        keep[start:end] = [False] * (end - start)
    out, i = [], 0
    while i < len(run):
        if keep[i]:
            out.append(run[i])
            i += 1
            continue
        out.append(PAN_MASK)
        while i < len(run) and not keep[i]:
            i += 1
    return "".join(out)
