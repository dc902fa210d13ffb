"""Celery settings that survive the known traps (../shared/field-notes.md)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from celery import Celery

from worker.settings import Settings

QUEUE = "flexmit"
# tasks.health first: it picks prometheus_client's multiprocess mode before any metric exists.
TASK_MODULES = ("tasks.health", "tasks.evaluate", "tasks.intake", "tasks.sweeps", "tasks.webhooks",
                "tasks.notify", "tasks.reconcile")


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for ``settings``: reliability first, then throughput."""
    return {
        "broker_url": broker_url(settings),
        "broker_connection_retry_on_startup": True,
        # A message is acknowledged only after its task ran; a killed worker's message is
        # re-delivered. Tasks are idempotent (DB claim) so a second delivery does nothing.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # Business state lives in SQL; results would only pile up in Redis (#7801).
        "task_ignore_result": True,
        "result_backend": None,
        "task_default_queue": QUEUE,
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_transport_options": transport_options(settings.broker_url),
        # filesystem://: kombu's transport with atomic message files (worker/fsbroker.py).
        "broker_transport": ("worker.fsbroker:Transport"
                             if settings.broker_url.startswith("filesystem://") else None),
        "worker_hijack_root_logger": False,
        # Task events cost three extra broker messages per task. Off by default: Flower turns
        # them on in every worker it watches (its enable_events control command), so they are
        # paid only while an operator console runs.
        "worker_send_task_events": False,
        # Logs, events (Flower) and `inspect` show argument reprs recomputed by the worker from
        # ids only: billing's intake messages would otherwise show a whole decline.
        "task_annotations": {"*": {"Request": "worker.taskrepr:SafeRequest"}},
        "timezone": "UTC",
        "beat_schedule": beat_schedule(settings),
    }


def broker_url(settings: Settings) -> str:
    """The URL kombu should see (``filesystem:///dir`` carries its folder in the options)."""
    url = settings.broker_url
    return "filesystem://" if url.startswith("filesystem://") else url


def transport_options(url: str) -> dict[str, Any]:
    """Broker transport options: the visibility timeout on Redis, folders for the embedded
    filesystem broker (``filesystem:///some/dir``: a broker that needs no server)."""
    if url.startswith("filesystem://"):
        folder = Path(url.removeprefix("filesystem://") or ".flexmit/broker")
        for sub in ("queue", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {"data_folder_in": str(folder / "queue"), "data_folder_out": str(folder / "queue"),
                "control_folder": str(folder / "control"), "store_processed": False,
                # kombu sleeps this long whenever prefetch (1) leaves it nothing to fetch.
                "polling_interval": 0.02}
    # Long enough that a task waiting on the rate limiter is never re-delivered as "lost".
    return {"visibility_timeout": 3600}


def beat_schedule(settings: Settings) -> dict[str, Any]:
    """Periodic jobs; each is harmless if two beats ever run it twice."""
    every = timedelta(seconds=settings.sweep_interval_s)
    return {
        # QUEUED/UNKNOWN orders whose message looks lost; owed FlexFactor calls (cancels).
        "sweep-due-orders": {"task": "flexmit.sweep_due", "schedule": every},
        # Verified webhook events never processed (their task message was lost).
        "sweep-webhooks": {"task": "flexmit.sweep_webhooks", "schedule": every},
        # Pushes to billing that are due (first try or a retry on the ladder).
        "sweep-pushes": {"task": "flexmit.sweep_pushes", "schedule": every},
        # Stale PENDING orders: status polls on a ladder; the final check at expiry.
        "sweep-pending": {"task": "flexmit.sweep_pending", "schedule": every},
    }


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings``; task modules are named by string (worker/ never imports
    tasks/), so a producer such as the API can send tasks without loading them."""
    app = Celery("flexmit")
    app.conf.update(celery_config(settings))
    app.conf.imports = TASK_MODULES
    return app
