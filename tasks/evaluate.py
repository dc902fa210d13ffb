"""``flexmit.evaluate``: send a batch of orders to FlexFactor (the message carries only ids)."""

from __future__ import annotations

import uuid

from tasks.base import FlexmitTask
from worker.cancel import run_pending_action
from worker.celery import app
from worker.evaluate import evaluate_orders


@app.task(name="flexmit.evaluate", base=FlexmitTask, bind=True)
def evaluate(self: FlexmitTask, order_pks: int | list[int]) -> dict[int, str]:
    """Evaluate the orders ``order_pks`` (one id or a list) that nobody else already has;
    returns the new state of each order this task claimed."""
    owner = self.request.id or uuid.uuid4().hex
    pks = [order_pks] if isinstance(order_pks, int) else order_pks
    return evaluate_orders(self.runtime, [int(pk) for pk in pks], owner=owner)


@app.task(name="flexmit.remote_action", base=FlexmitTask, bind=True)
def remote_action(self: FlexmitTask, order_pk: int) -> bool:
    """Make the FlexFactor call an order still owes (a cancel after paid-elsewhere)."""
    owner = self.request.id or uuid.uuid4().hex
    return run_pending_action(self.runtime, int(order_pk), owner=owner)
