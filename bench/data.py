"""Benchmark data: the demo's realistic declines, as a CSV, as raw rows, as /evaluate bodies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from worker.batchfile import read_batch
from worker.demo_batch import make_batch, write_csv
from worker.settings import Settings


def write_declines_csv(path: Path, count: int, tz: ZoneInfo, *, seed: int = 7) -> Path:
    """A daily batch of ``count`` valid declines (the contract's CSV columns)."""
    batch = make_batch(count, 0.0, now=datetime.now(UTC), tz=tz, seed=seed)
    return write_csv(path, batch.rows)


def raw_rows(path: Path) -> list[Any]:
    """The rows of a batch file as intake sees them (nested dicts)."""
    return [row.raw for row in read_batch(path) if row.parse_error is None]


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """``items`` in slices of ``size``."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


def evaluate_bodies(raws: list[Any], settings: Settings) -> list[dict[str, Any]]:
    """The exact /evaluate bodies flexmit would build for these declines (no idempotencyKey)."""
    from worker.intake import Accepted, validate_decline
    from worker.mapping import evaluate_payload

    now = datetime.now(UTC)
    bodies: list[dict[str, Any]] = []
    for raw in raws:
        verdict = validate_decline(raw, now=now, settings=settings)
        if not isinstance(verdict, Accepted):
            raise ValueError(f"benchmark decline rejected: {verdict.errors}")
        decline = verdict.decline.model_dump(by_alias=True, mode="json", exclude_none=True)
        bodies.append(evaluate_payload(decline, expiry_at=verdict.expiry_at, settings=settings,
                                       mode=settings.flexfactor_mode))
    return bodies
