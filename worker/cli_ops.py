"""Operator commands ``flexmit orders show`` and ``flexmit requeue`` (registered in cli.py).

Imports are deferred to the command bodies, so ``flexmit --help`` stays fast.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import click
from rich.console import Console

if TYPE_CHECKING:
    from worker.runtime import Runtime


@click.group()
def orders() -> None:
    """Look at single orders."""


@orders.command()
@click.argument("order_id")
def show(order_id: str) -> None:
    """ORDER_ID in full: state, amounts, FlexFactor key, history, attempts, pushes, webhooks."""
    from worker.opsprint import print_order
    from worker.runtime import get_runtime

    if not print_order(get_runtime(), order_id, Console(highlight=False)):
        raise click.ClickException(f"no order or rejected decline with orderId {order_id!r}")


@click.command()
@click.option("--order", "order_id", default=None, help="only this orderId")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S",
                                              "%Y-%m-%d %H:%M:%S"]), default=None,
              help="only work that failed at or after this time (merchant time zone)")
@click.option("--stuck", is_flag=True,
              help="also QUEUED/UNKNOWN orders re-tried --min-checks times without an outcome")
@click.option("--min-checks", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--pushes", is_flag=True, help="also billing pushes parked or failing")
@click.option("--dry-run", is_flag=True, help="show what would be requeued, change nothing")
def requeue(order_id: str | None, since: datetime | None, stuck: bool, min_checks: int,
            pushes: bool, dry_run: bool) -> None:
    """Send FAILED (and, with flags, dead-lettered) work round again after a fix."""
    from worker.requeue import Selection
    from worker.requeue import requeue as do_requeue
    from worker.runtime import get_runtime

    rt = get_runtime()
    start = since.replace(tzinfo=rt.settings.tz) if since is not None else None
    sel = Selection(order_id=order_id, since=start, stuck=stuck, min_checks=min_checks,
                    pushes=pushes)
    result = do_requeue(rt, sel, dry_run=dry_run)
    if order_id is not None and not (result.orders or result.skipped or result.pushes):
        kind = "FAILED or stuck" if stuck else "FAILED"
        raise click.ClickException(f"no {kind} order {order_id!r} to requeue "
                                   f"(see: flexmit orders show {order_id})")
    for oid, state in result.orders:
        click.echo(f"{'would requeue' if dry_run else 'requeued'} {oid} (was {state})")
    for oid, why in result.skipped:
        click.echo(f"skipped {oid}: {why}")
    for event_id, oid in result.pushes:
        click.echo(f"{'would retry' if dry_run else 'retrying'} push {event_id} of {oid}")
    if dry_run:
        click.echo(f"dry run: {len(result.orders)} orders and {len(result.pushes)} pushes "
                   "would be requeued; nothing changed")
    else:
        click.echo(f"{len(result.orders)} orders requeued, {len(result.pushes)} pushes due "
                   f"again, {result.sent} evaluate messages sent")
    if pushes and result.pushes and not dry_run:
        _warn_if_pushes_unconfigured(rt)


def _warn_if_pushes_unconfigured(rt: Runtime) -> None:
    from worker.notify import unconfigured_reason

    reason = unconfigured_reason(rt.settings)
    if reason is not None:
        click.echo(f"warning: pushes will be parked again: {reason}", err=True)
