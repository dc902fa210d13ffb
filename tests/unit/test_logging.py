"""Logs never carry a card number or a secret, whichever logger wrote them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from worker.logging import (
    SECRET_MASK,
    bind_context,
    clear_context,
    configure_logging,
    get_logger,
    is_secret_key,
    log_context,
)
from worker.pan import PAN_MASK, luhn_ok, redact_text
from worker.protocols import CachedToken
from worker.settings import Settings

VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
AMEX = "378282246310005"
NOT_LUHN = "4111111111111112"
SECRET = "s3cr3t-Value-xyz"


@pytest.fixture
def out() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    configure_logging("json", "DEBUG", stream=stream)
    clear_context()
    yield stream
    clear_context()
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_luhn() -> None:
    assert luhn_ok(VISA) and luhn_ok(MASTERCARD) and luhn_ok(AMEX)
    assert not luhn_ok(NOT_LUHN)


@pytest.mark.parametrize(
    "text",
    [
        f"card {VISA} declined",
        "card 4111 1111 1111 1111 declined",
        "card 4111-1111-1111-1111 declined",
        f"amex {AMEX[:4]} {AMEX[4:10]} {AMEX[10:]}",
        f"number={MASTERCARD}",
        f"pan+cvv {VISA} 123",
        f"glued x{VISA}y",
    ],
)
def test_redact_text_masks_pans(text: str) -> None:
    masked = redact_text(text)
    assert PAN_MASK in masked
    digits = "".join(ch for ch in masked if ch.isdigit())
    for pan in (VISA, MASTERCARD, AMEX):
        assert pan not in digits


@pytest.mark.parametrize(
    "text",
    [
        f"order {NOT_LUHN}",
        "amount 123456789012",
        "2023-03-20 17:16:40",
        "id 12345678901234567890123",
        # dates inside order ids (groups of 1-2 digits do not join a card-number window)
        "order inv-2026-11-25-000012 recorded",
        # a duration's fraction digits; a run starting with 0 (no issuer number does)
        "succeeded in 0.1234567890123452s",
        "ref 0378282246310005",
    ],
)
def test_redact_text_keeps_non_pans(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "name",
    ["access_token", "Authorization", "app_secret", "appSecret", "cardNumber", "card_number",
     "number", "key", "webhook_key", "API_KEY", "cvv", "verification_value", "password",
     "x-fc-authorization", "FLEXFACTOR_APP_SECRET", "refresh_token"],
)  # fmt: skip
def test_secret_key_names(name: str) -> None:
    assert is_secret_key(name)


@pytest.mark.parametrize("name", ["order_id", "amount", "event", "trace_id", "status", "expiry"])
def test_ordinary_key_names(name: str) -> None:
    assert not is_secret_key(name)


def test_pan_in_structlog_message_and_nested_dict(out: io.StringIO) -> None:
    log = get_logger("flexmit.test")
    log.info(
        f"charging {VISA} now",
        payload={"order": {"note": f"pan {MASTERCARD}", "items": [AMEX, {"n": int(VISA)}]}},
    )
    text = out.getvalue()
    for pan in (VISA, MASTERCARD, AMEX):
        assert pan not in text
    (line,) = _lines(out)
    assert line["event"] == f"charging {PAN_MASK} now"
    assert line["payload"] == {
        "order": {"note": f"pan {PAN_MASK}", "items": [PAN_MASK, {"n": PAN_MASK}]}
    }
    assert line["level"] == "info" and "timestamp" in line


def test_secrets_never_reach_output(out: io.StringIO) -> None:
    log = get_logger("flexmit.test")
    log.info(
        "token fetched",
        access_token=SECRET,
        request={"headers": {"Authorization": f"Bearer {SECRET}"}, "appSecret": SECRET},
        card={"number": "4111 1111 1111 1111", "verification_value": "123"},
        tokens=[{"api_key": SECRET}],
        cached=CachedToken(access_token=SECRET, expires_ms=1),
    )
    assert SECRET not in out.getvalue()
    (line,) = _lines(out)
    assert line["access_token"] == SECRET_MASK
    assert line["request"] == {"headers": {"Authorization": SECRET_MASK}, "appSecret": SECRET_MASK}
    assert line["card"] == {"number": SECRET_MASK, "verification_value": SECRET_MASK}
    assert line["cached"] == {"access_token": SECRET_MASK, "expires_ms": 1}


def test_stdlib_and_library_loggers_are_redacted(out: io.StringIO) -> None:
    uvicorn = logging.getLogger("uvicorn.error")
    assert uvicorn.propagate and not uvicorn.handlers
    logging.getLogger("celery.app.trace").info("Task %s args %r", "t1", [VISA, {"token": 1}])
    uvicorn.warning("client sent %s", f"4111-1111-1111-1111 cvv 123 password={SECRET}")
    text = out.getvalue()
    assert VISA not in text and "4111-1111" not in text
    first, second = _lines(out)
    assert first["logger"] == "celery.app.trace" and PAN_MASK in str(first["event"])
    assert second["level"] == "warning"


def test_exception_text_is_redacted(out: io.StringIO) -> None:
    try:
        raise ValueError(f"bad card {VISA}")
    except ValueError:
        get_logger("flexmit.test").exception("failed")
        logging.getLogger("kombu").exception("failed too")
    assert VISA not in out.getvalue()
    for line in _lines(out):
        assert PAN_MASK in str(line["exception"])


def test_context_fields_on_every_line(out: io.StringIO) -> None:
    bind_context(task_id="t-1", order_id=None)
    with log_context(order_id="o-9", trace_id="tr-3"):
        get_logger().info("inside")
        logging.getLogger("celery").info("stdlib inside")
    get_logger().info("outside")
    inside, stdlib_inside, outside = _lines(out)
    assert inside["order_id"] == "o-9" and inside["trace_id"] == "tr-3"
    assert inside["task_id"] == "t-1"
    assert stdlib_inside["order_id"] == "o-9"
    assert "order_id" not in outside and outside["task_id"] == "t-1"


def test_level_filters(out: io.StringIO) -> None:
    configure_logging("json", "WARNING", stream=out)
    get_logger().info("quiet")
    logging.getLogger("x").info("quiet")
    get_logger().warning("loud")
    assert [line["event"] for line in _lines(out)] == ["loud"]


def test_console_format_is_redacted_too(out: io.StringIO) -> None:
    configure_logging("console", stream=out)
    get_logger().info(f"pan {VISA}", password=SECRET)
    text = out.getvalue()
    assert PAN_MASK in text and VISA not in text and SECRET not in text


def test_auto_is_json_when_not_a_tty_and_settings_accepted(out: io.StringIO) -> None:
    configure_logging(Settings(log_format="auto", log_level="INFO"), stream=out)
    get_logger().info("hello")
    assert _lines(out)[0]["event"] == "hello"
    with pytest.raises(ValueError):
        configure_logging("xml", stream=out)
