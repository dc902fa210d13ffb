"""``flexmit.poll`` and ``flexmit.sweep_pending``: status polls of managed PENDING orders."""

from __future__ import annotations

import uuid

from tasks.base import FlexmitTask
from worker.celery import app
from worker.reconcile import poll_order
from worker.reconcile import sweep_pending as sweep_pending_orders


@app.task(name="flexmit.poll", base=FlexmitTask, bind=True)
def poll(self: FlexmitTask, order_pk: int) -> str | None:
    """Ask FlexFactor for order ``order_pk``'s status if it is still due and nobody else is."""
    owner = self.request.id or uuid.uuid4().hex
    return poll_order(self.runtime, int(order_pk), owner=owner)


@app.task(name="flexmit.sweep_pending", base=FlexmitTask, bind=True)
def sweep_pending(self: FlexmitTask) -> int:
    """Send one poll per due PENDING order (beat; harmless when two beats run it)."""
    return sweep_pending_orders(self.runtime)
