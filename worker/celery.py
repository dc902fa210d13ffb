"""The Celery app that ``celery -A worker ...`` loads (the one module that builds at import)."""

from __future__ import annotations

from celery.signals import setup_logging, worker_process_init, worker_process_shutdown

from worker.celeryconfig import make_celery
from worker.logging import configure_logging
from worker.settings import get_settings

settings = get_settings()
configure_logging(settings.log_format, settings.log_level)

app = make_celery(settings)


@setup_logging.connect
def _our_logging(**_: object) -> None:
    # Connected, so Celery leaves the root logger alone: every line goes through our
    # redacting handler (JSON in containers) instead of Celery's own format.
    configure_logging(settings.log_format, settings.log_level)


@worker_process_init.connect
def _fresh_resources(**_: object) -> None:
    # Prefork children must not share the parent's DB pool or HTTP connections.
    from worker.runtime import reset_runtime

    reset_runtime(close=False)


@worker_process_shutdown.connect
def _close_resources(**_: object) -> None:
    from worker.runtime import reset_runtime

    reset_runtime()
