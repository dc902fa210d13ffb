"""``flexmit.intake.declines``: billing publishes declines straight onto the queue.

Message: Celery task ``flexmit.intake.declines`` on queue ``flexmit`` with ONE positional
argument, JSON: a decline object or ``{"declines": [...]}`` (the same format as
``POST /v1/declines``). Invalid items are stored as rejects with their errors, never dropped.
"""

from __future__ import annotations

from typing import Any

from tasks.base import FlexmitTask
from worker.celery import app
from worker.intake_store import accept_body


@app.task(name="flexmit.intake.declines", base=FlexmitTask, bind=True)
def intake_declines(self: FlexmitTask, body: Any) -> dict[str, Any]:
    """Validate and store the declines in ``body``; returns the per-item results."""
    ref = f"task:{self.request.id}"
    outcome = accept_body(self.runtime, body, source="queue", source_ref=ref)
    return {"results": [r.wire() for r in outcome.results]}
