"""The ledger: what callers did to the sandbox, for tests and benchmarks (``GET /_sandbox/ledger``).

Mutated only under the sandbox state's lock.
"""

from __future__ import annotations

from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Ledger:
    """Counters; ``snapshot()`` turns them into the ledger JSON."""

    calls: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    evaluate_calls: Counter[str] = field(default_factory=Counter)
    validation_errors: Counter[str] = field(default_factory=Counter)
    rate_limited_429: int = 0
    max_accepted_in_any_second: int = 0
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    webhooks_resent: int = 0
    webhooks_abandoned: int = 0
    webhooks_duplicated: int = 0
    accepted_window: deque[float] = field(default_factory=deque)

    def count_call(self, route: str, status: int) -> None:
        """One answered request on ``route`` (a label like ``POST /v1/evaluate``)."""
        self.calls[route]["total"] += 1
        self.calls[route][str(status)] += 1

    def count_accepted(self, now: float) -> None:
        """One rate-limited-route request let through; track the busiest 1 s window."""
        window = self.accepted_window
        window.append(now)
        while window and window[0] <= now - 1.0:
            window.popleft()
        self.max_accepted_in_any_second = max(self.max_accepted_in_any_second, len(window))

    def snapshot(
        self, orders_per_order_id: dict[str, int], by_status: dict[str, int]
    ) -> dict[str, Any]:
        """The ledger JSON (see the module docstring of ``worker.sandbox.routes.control``)."""
        retried = {k: v for k, v in self.evaluate_calls.items() if v > 1}
        return {
            "calls": {route: dict(codes) for route, codes in sorted(self.calls.items())},
            "calls_total": sum(codes["total"] for codes in self.calls.values()),
            "distinct_orders": len(orders_per_order_id),
            "evaluate_calls_total": sum(self.evaluate_calls.values()),
            "evaluate_calls_per_order_id": retried,
            "evaluate_order_ids_with_retries": len(retried),
            "flexfactor_orders_per_order_id_max": max(orders_per_order_id.values(), default=0),
            "rate_limited_429": self.rate_limited_429,
            "max_accepted_in_any_second": self.max_accepted_in_any_second,
            "validation_errors_by_field": dict(self.validation_errors),
            "webhooks_delivered": self.webhooks_delivered,
            "webhooks_failed": self.webhooks_failed,
            "webhooks_resent": self.webhooks_resent,
            "webhooks_abandoned": self.webhooks_abandoned,
            "webhooks_duplicated": self.webhooks_duplicated,
            "orders_by_status": by_status,
        }
