"""``flexmit.webhook`` and ``flexmit.sweep_webhooks``: apply stored FlexFactor webhook events."""

from __future__ import annotations

from tasks.base import FlexmitTask
from worker.celery import app
from worker.webhooks import process_webhook_event, sweep_unprocessed


@app.task(name="flexmit.webhook", base=FlexmitTask, bind=True)
def webhook(self: FlexmitTask, event_pk: int) -> str:
    """Apply webhook event ``event_pk`` to its order, once (a repeat finds it claimed)."""
    return process_webhook_event(self.runtime, int(event_pk))


@app.task(name="flexmit.sweep_webhooks", base=FlexmitTask, bind=True)
def sweep_webhooks(self: FlexmitTask) -> int:
    """Re-send the task for verified events a lost message left unprocessed."""
    return sweep_unprocessed(self.runtime)
