"""The base task: log context (task id, order id) on every line, the process runtime at hand."""

from __future__ import annotations

from typing import Any

import structlog
from celery import Task

from worker.heartbeat import stamp_from_task
from worker.runtime import Runtime, get_runtime


class FlexmitTask(Task):
    """Binds the task id into every log line; business errors are logged, never re-raised
    into an infinite redelivery loop (the database row and the sweep carry the retry)."""

    abstract = True

    @property
    def runtime(self) -> Runtime:
        return get_runtime()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(task_id=self.request.id, task=self.name)
        if not self.request.is_eager:
            # A task started: this node consumes (liveness, worker/heartbeat.py).
            stamp_from_task(self.request.hostname)
        try:
            return super().__call__(*args, **kwargs)
        finally:
            structlog.contextvars.clear_contextvars()
