"""worker.pan: the one card-number scanner behind the intake guard and the log masking."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.pan import PAN_MASK, has_pan, redact_text

VISA = "4111111111111111"
AMEX = "378282246310005"
FULLWIDTH = {ord(d): 0xFF10 + int(d) for d in "0123456789"}  # a card typed in another script


@pytest.mark.parametrize("text", [
    VISA, f"card {VISA[:4]} {VISA[4:8]} {VISA[8:12]} {VISA[12:]}", f"x{AMEX}y",
    f"{AMEX[:4]}-{AMEX[4:10]}-{AMEX[10:]}", f"{VISA} 123", VISA.translate(FULLWIDTH),
])  # fmt: skip
def test_card_numbers_are_found_and_masked(text: str) -> None:
    assert has_pan(text)
    assert PAN_MASK in redact_text(text) and VISA not in redact_text(text)


@pytest.mark.parametrize("text", [
    "inv-2026-11-25-000012",  # a date inside an id: groups of 2 never join a window
    "0" + AMEX,  # no issuer number starts with 0
    "4111111111111112",  # fails Luhn
    "12345678901234567890123",  # longer than any card
])  # fmt: skip
def test_look_alikes_are_neither_refused_nor_masked(text: str) -> None:
    assert not has_pan(text) and redact_text(text) == text


@given(st.text(alphabet="0123456789 -.x", max_size=48))
def test_logs_mask_only_what_intake_would_refuse(text: str) -> None:
    masked = redact_text(text)
    assert masked == text or has_pan(text)
    if "." not in text:  # (a duration's fraction digits are left alone in logs)
        assert not has_pan(masked.replace(PAN_MASK, " "))  # nothing left behind once masked
