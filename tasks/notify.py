"""``flexmit.push`` and ``flexmit.sweep_pushes``: deliver the billing outbox (``worker.notify``)."""

from __future__ import annotations

import uuid

from tasks.base import FlexmitTask
from worker.celery import app
from worker.notify import deliver_push, send_pushes
from worker.notify import sweep_pushes as sweep_due_pushes


@app.task(name="flexmit.push", base=FlexmitTask, bind=True)
def push(self: FlexmitTask, push_pk: int, attempt: int | None = None) -> str:
    """Deliver push ``push_pk`` unless it is delivered, claimed, or ``attempt`` is stale."""
    owner = self.request.id or uuid.uuid4().hex
    outcome = deliver_push(self.runtime, int(push_pk), owner=owner,
                           attempt=None if attempt is None else int(attempt))
    if outcome.follow_up:  # stamped in the DB already; a lost message is re-sent by the sweep
        send_pushes(self.app, list(outcome.follow_up))
    return outcome.result


@app.task(name="flexmit.sweep_pushes", base=FlexmitTask, bind=True)
def sweep_pushes(self: FlexmitTask) -> int:
    """Send a ``flexmit.push`` for every due push (first tries and retries on the ladder)."""
    rt = self.runtime
    return sweep_due_pushes(rt.sessions, self.app, rt.settings)
