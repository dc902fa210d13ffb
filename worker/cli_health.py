"""``flexmit health worker``: the liveness probe of a worker container (exit 0 live, 1 not)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from worker import heartbeat


@click.group()
def health() -> None:
    """Health checks for probes (docker HEALTHCHECK, Kubernetes livenessProbe)."""


@health.command()
@click.option("--max-age", type=click.FloatRange(min=0), default=None,
              help="seconds a heartbeat may be old [FLEXMIT_HEARTBEAT_MAX_AGE_S, default 60]")
@click.option("--node", default=None,
              help="worker node name (w1@host, or just w1); default: every node stamped here")
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path),
              default=None, help="stamp directory [FLEXMIT_HEARTBEAT_DIR]")
def worker(max_age: float | None, node: str | None, directory: Path | None) -> None:
    """Fail unless the worker consumed a message from the broker within --max-age seconds."""
    verdicts = heartbeat.check(node, max_age=max_age, directory=directory)
    for verdict in verdicts:
        click.echo(f"{verdict.node}: {'live' if verdict.ok else 'NOT LIVE'}: {verdict.detail}")
    sys.exit(0 if all(v.ok for v in verdicts) else 1)
