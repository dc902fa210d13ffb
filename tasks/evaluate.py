"""``flexmit.evaluate``: send one order to FlexFactor (the message carries only its id)."""

from __future__ import annotations

import uuid

from tasks.base import FlexmitTask
from worker.cancel import run_pending_action
from worker.celery import app
from worker.evaluate import evaluate_order


@app.task(name="flexmit.evaluate", base=FlexmitTask, bind=True)
def evaluate(self: FlexmitTask, order_pk: int) -> str | None:
    """Evaluate order ``order_pk`` unless someone else already has it."""
    owner = self.request.id or uuid.uuid4().hex
    return evaluate_order(self.runtime, int(order_pk), owner=owner)


@app.task(name="flexmit.remote_action", base=FlexmitTask, bind=True)
def remote_action(self: FlexmitTask, order_pk: int) -> bool:
    """Make the FlexFactor call an order still owes (a cancel after paid-elsewhere)."""
    owner = self.request.id or uuid.uuid4().hex
    return run_pending_action(self.runtime, int(order_pk), owner=owner)
