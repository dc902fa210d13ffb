"""``flexmit``: the command line (CONTRACT.md "CLI")."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click
from rich.console import Console

from worker.settings import get_settings


class _Flexmit(click.Group):
    """A bad setting or database trouble is an operator's message, not a traceback."""

    def invoke(self, ctx: click.Context) -> object:
        from pydantic import ValidationError
        from sqlalchemy.exc import OperationalError, ProgrammingError

        try:
            return super().invoke(ctx)
        except ValidationError as exc:
            if exc.title != "Settings":
                raise
            # The setting's name and the rule, never its value (it may be a secret).
            lines = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()]
            raise click.ClickException("invalid settings\n  " + "\n  ".join(lines)) from exc
        except (OperationalError, ProgrammingError) as exc:
            hint = _schema_hint()
            first = str(exc.orig).strip().splitlines()[0][:200] if str(exc.orig).strip() else ""
            reason = hint or f"the database is not usable: {first or type(exc.orig).__name__}"
            raise click.ClickException(reason) from exc


def _schema_hint() -> str | None:
    from worker.db.migrate import pending_revision

    try:
        return pending_revision(get_settings().database_url)
    except Exception:  # the database cannot even be reached: the caller says so
        return None


@click.group(cls=_Flexmit)
def main() -> None:
    """flexmit: hand same-day subscription declines to FlexFactor and follow them to the end."""


@main.command()
def migrate() -> None:
    """Bring the database schema to the latest version."""
    from worker.db.migrate import upgrade

    settings = get_settings()
    upgrade(settings.database_url)
    click.echo("database schema is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
def api(host: str, port: int) -> None:
    """Serve the HTTP API."""
    import uvicorn

    from worker.api import create_app
    from worker.db.migrate import pending_revision
    from worker.logging import configure_logging

    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    try:
        app = create_app(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if (problem := pending_revision(settings.database_url)) is not None:
        raise click.ClickException(problem)  # every route would fail: refuse to start
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def submit(file: Path) -> None:
    """Submit a daily batch FILE (CSV or JSON Lines)."""
    from worker.batchfile import rejects_path
    from worker.runtime import get_runtime
    from worker.submit import print_report, submit_file

    console = Console(stderr=True)
    report = submit_file(get_runtime(), file, console=console)
    print_report(report, console)
    if report.rejected:
        # soft_wrap: a long path stays one line, so it can be copied; markup off for "[".
        console.print(f"rejected rows written to {rejects_path(file)}", soft_wrap=True,
                      markup=False, highlight=False)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8099, show_default=True, type=int)
@click.option("--webhook-url", default=None, help="where the sandbox POSTs signed webhooks")
@click.option("--mode", type=click.Choice(["managed", "sync"]), default=None)
@click.option("--rate-limit", type=float, default=None, help="requests per second (0 = off)")
@click.option("--resolve-after", type=float, default=None, help="seconds until async outcomes")
def sandbox(host: str, port: int, webhook_url: str | None, mode: str | None,
            rate_limit: float | None, resolve_after: float | None) -> None:
    """Run the FlexFactor simulator (its API lives under /v1)."""
    from worker.sandbox.config import SandboxConfig
    from worker.sandbox.server import run_sandbox

    overrides = {"webhook_url": webhook_url, "mode": mode, "rate_limit": rate_limit,
                 "resolve_after_s": resolve_after}
    settings = get_settings()
    creds = {"app_key": settings.flexfactor_app_key, "app_secret": settings.flexfactor_app_secret,
             "mid": settings.flexfactor_mid, "webhook_key_b64": settings.flexfactor_webhook_key}
    for name, secret in creds.items():
        if secret is not None:
            overrides[name] = secret if isinstance(secret, str) else secret.get_secret_value()
    config = SandboxConfig(**{k: v for k, v in overrides.items() if v is not None})
    run_sandbox(config, host=host, port=port)


@main.command()
def status() -> None:
    """Orders by state, queue depth, the oldest waiting, what is due, the rate limiter."""
    from worker.opsprint import print_status
    from worker.runtime import get_runtime

    print_status(get_runtime(), Console())


@main.command()
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), default=None,
              help="the merchant day (default: today in FLEXMIT_MERCHANT_TZ)")
@click.option("--json", "as_json", is_flag=True, help="the funnel as one JSON object")
def report(day: object, as_json: bool) -> None:
    """The day's funnel: received, rejected, sent, approved, expired, amount rescued."""
    from worker.opsprint import print_report
    from worker.runtime import get_runtime

    the_day = day.date() if isinstance(day, datetime) else None
    print_report(get_runtime(), Console(), the_day, as_json=as_json)


@main.command()
@click.argument("order_id")
@click.option("--amount-cents", type=click.IntRange(min=1), default=None,
              help="cents to refund (default: all that is left)")
def refund(order_id: str, amount_cents: int | None) -> None:
    """Refund an APPROVED order ORDER_ID at FlexFactor, in full or in part."""
    import uuid

    from worker.refunds import OrderNotFound, Refused, refund_order
    from worker.runtime import get_runtime

    try:
        result = refund_order(get_runtime(), order_id, amount_cents,
                              owner=f"cli-{uuid.uuid4().hex[:16]}")
    except (OrderNotFound, Refused) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(result.summary())


@main.command()
@click.argument("order_id")
def cancel(order_id: str) -> None:
    """Cancel ORDER_ID while its rescue is still pending (FlexFactor is told by a worker)."""
    from worker.refunds import OrderNotFound, Refused, cancel_order
    from worker.runtime import get_runtime

    try:
        result = cancel_order(get_runtime(), order_id)
    except (OrderNotFound, Refused) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(result.summary())


@main.command()
@click.option("--count", default=1000, show_default=True, help="declines in the sample batch")
@click.option("--bad-fraction", default=0.05, show_default=True)
@click.option("--workers", default=2, show_default=True, help="worker processes")
@click.option("--keep", is_flag=True, help="keep the demo directory (database, logs)")
def demo(count: int, bad_fraction: float, workers: int, keep: bool) -> None:
    """The whole pipeline on this machine: sandbox, API, workers, beat, a daily batch."""
    from worker.demo import run_demo

    sys.exit(run_demo(count=count, bad_fraction=bad_fraction, workers=workers, keep=keep))


from worker.cli_ops import orders, requeue  # noqa: E402 (registered after main is defined)

main.add_command(orders)
main.add_command(requeue)
from worker.cli_health import health  # noqa: E402

main.add_command(health)

if __name__ == "__main__":
    main()
