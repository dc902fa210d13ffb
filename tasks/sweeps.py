"""Periodic jobs run by the one beat; each is harmless when run twice."""

from __future__ import annotations

from tasks.base import FlexmitTask
from worker.celery import app
from worker.dispatch import sweep_due as sweep_due_orders


@app.task(name="flexmit.sweep_due", base=FlexmitTask, bind=True)
def sweep_due(self: FlexmitTask) -> int:
    """Re-send evaluate messages for due orders whose message looks lost."""
    rt = self.runtime
    return sweep_due_orders(rt.sessions, self.app, rt.settings)
