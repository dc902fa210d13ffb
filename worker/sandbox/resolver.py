"""The background resolver: moves pending orders to their final status at their due time."""

from __future__ import annotations

import threading

import structlog

from worker.sandbox.lifecycle import tick
from worker.sandbox.state import SandboxState

log = structlog.get_logger("flexmit.sandbox")
MAX_NAP_S = 0.25  # re-check at least this often (the clock can be advanced from outside)


class Resolver:
    """A daemon thread that calls ``tick`` whenever something is due."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread."""
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sandbox-resolver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it."""
        with self.state.wake:
            self._stop = True
            self.state.wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        with self.state.wake:
            while not self._stop:
                try:
                    now = self.state.now()
                    next_due = tick(self.state, now)
                except Exception:
                    log.exception("sandbox.resolver_error")
                    next_due = None
                nap = MAX_NAP_S if next_due is None else min(MAX_NAP_S, max(0.0, next_due - now))
                self.state.wake.wait(timeout=nap)
