"""Structured logs (structlog) with no card numbers and no secrets, for every logger in the process.

One handler on the root logger renders structlog events and plain stdlib records (Celery,
uvicorn, httpx, SQLAlchemy) alike, and ``redact`` runs in that handler's formatter, so nothing
that reaches the output bypasses it.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from worker.pan import PAN_MASK, redact_text

if TYPE_CHECKING:
    from worker.settings import Settings

SECRET_MASK = "[REDACTED]"  # noqa: S105 - the mask, not a password

# Keys compared after lower-casing and dropping "_", "-" and spaces.
_SECRET_KEYS = frozenset(
    {
        "key", "number", "pan", "cvv", "cvc", "cvv2", "pin", "verificationvalue",
        "cardnumber", "webhookkey", "apikey", "appkey", "appsecret", "subscriberkey",
        "tokenizationkey", "privatekey", "secretkey", "signingkey", "cookie", "setcookie",
    }
)  # fmt: skip
_SECRET_FRAGMENTS = ("secret", "password", "passwd", "token", "authorization", "cvv", "cardnumber")

_HANDLER_MARK = "_flexmit_handler"
# Libraries that install their own handlers (or stop propagation); routed to the root handler.
_ROUTED_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "celery", "celery.task",
                   "celery.worker", "celery.app.trace", "kombu", "httpx", "sqlalchemy")  # fmt: skip


@functools.lru_cache(maxsize=4096)  # field names repeat on every line: checked once each
def is_secret_key(name: str) -> bool:
    """True if a field called ``name`` holds a secret or card data."""
    norm = re.sub(r"[\s_\-]", "", name.lower())
    return norm in _SECRET_KEYS or any(part in norm for part in _SECRET_FRAGMENTS)


def redact_value(value: Any) -> Any:
    """A copy of ``value`` with PANs masked in all text and secret-named fields masked."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, int):
        return PAN_MASK if redact_text(str(value)) != str(value) else value
    if isinstance(value, Mapping):
        return {k: _redact_field(k, v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(v) for v in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return redact_value(_plain(value))


def _plain(value: Any) -> Any:
    """Objects become dicts (so their secret fields are masked) or text (so PANs are)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)  # pydantic models; SecretStr dumps masked
    if callable(dump):
        try:
            return dump(mode="json")
        except Exception:  # a broken model must not break logging
            return str(value)
    return str(value)


def _redact_field(key: Any, value: Any) -> Any:
    if isinstance(key, str) and value is not None and is_secret_key(key):
        return SECRET_MASK
    return redact_value(value)


def redact(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask PANs and secrets anywhere in the event (recursively)."""
    return {k: _redact_field(k, v) for k, v in event_dict.items()}


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _renderer(fmt: str, stream: TextIO) -> Processor:
    use_console = fmt == "console" or (fmt == "auto" and _isatty(stream))
    if use_console:
        return structlog.dev.ConsoleRenderer(colors=_isatty(stream))
    return structlog.processors.JSONRenderer()


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _resolve(settings_or_format: Settings | str, level: str) -> tuple[str, str]:
    if isinstance(settings_or_format, str):
        return settings_or_format, level
    return settings_or_format.log_format, settings_or_format.log_level


def configure_logging(
    settings_or_format: Settings | str = "auto",
    level: str = "INFO",
    *,
    stream: TextIO | None = None,
) -> None:
    """Route structlog and stdlib logging to one redacting handler (JSON lines unless a TTY)."""
    fmt, level = _resolve(settings_or_format, level)
    if fmt not in {"auto", "json", "console"}:
        raise ValueError(f"unknown log format {fmt!r}")
    out = stream if stream is not None else sys.stderr
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text *before* redact: exception messages can carry card data,
            # and pretty tracebacks with locals would print secrets.
            structlog.processors.format_exc_info,
            redact,
            _renderer(fmt, out),
        ],
    )
    _install_root_handler(formatter, out, level.upper())
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Not cached: module-level loggers used before configure_logging() still pick it up.
        cache_logger_on_first_use=False,
    )


def _install_root_handler(formatter: logging.Formatter, out: TextIO, level: str) -> None:
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    # Replace every handler: any other one would print records without redaction.
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _ROUTED_LOGGERS:
        lib = logging.getLogger(name)
        lib.handlers.clear()
        lib.propagate = True
    # httpx logs every request URL at INFO; /tokenize carries its key in the query string.
    # Our client logs each call itself (route, status, latency, traceId) without the query.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger (configure_logging decides where it writes)."""
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger


def bind_context(**values: Any) -> None:
    """Attach fields (order_id, task_id, trace_id, ...) to every log line of this context."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in values.items() if v is not None})


def unbind_context(*keys: str) -> None:
    """Remove fields previously bound with ``bind_context``."""
    structlog.contextvars.unbind_contextvars(*keys)


def clear_context() -> None:
    """Drop every bound field (start of a task or request)."""
    structlog.contextvars.clear_contextvars()


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Bind fields for the duration of a ``with`` block, restoring the previous ones after."""
    with structlog.contextvars.bound_contextvars(
        **{k: v for k, v in values.items() if v is not None}
    ):
        yield
