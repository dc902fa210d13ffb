"""Gauges read from the database when ``/metrics`` is scraped: orders by state, and how long
the oldest QUEUED / UNKNOWN / PENDING order has been in that state.

The database is the truth, so these are never kept in memory: every API replica reports the
same numbers. The queries are one GROUP BY over the (state, next_check_at) index and one
``ORDER BY updated_at LIMIT 1`` per watched state (``updated_at`` is set on every transition).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import structlog
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from worker.opsview import counts_by_state, oldest
from worker.orders import State, utcnow

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

log = structlog.get_logger(__name__)
AGED_STATES = (State.QUEUED, State.UNKNOWN, State.PENDING)


class OrdersCollector(Collector):
    """``flexmit_orders{state}``, ``flexmit_order_oldest_age_seconds{state}``, and
    ``flexmit_metrics_db_up`` (0 when the database did not answer this scrape)."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self._sessions = sessions

    def collect(self) -> Iterator[Metric]:
        """Read the numbers now (a failed read yields ``flexmit_metrics_db_up 0`` only)."""
        up = GaugeMetricFamily("flexmit_metrics_db_up",
                               "1 if the database answered the metrics queries of this scrape")
        try:
            counts, ages = self._read()
        except SQLAlchemyError as exc:
            log.warning("metrics.db_unavailable", error=type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        orders = GaugeMetricFamily("flexmit_orders", "Orders by state (from the database)",
                                   labels=["state"])
        for state in State:  # every state, zeros included: dashboards need no "absent" logic
            orders.add_metric([state.value], counts.get(state.value, 0))
        yield orders
        age = GaugeMetricFamily(
            "flexmit_order_oldest_age_seconds",
            "Seconds the oldest order in this state has been in it (0 when there is none)",
            labels=["state"])
        for state in AGED_STATES:
            age.add_metric([state.value], ages[state])
        yield age

    def _read(self) -> tuple[dict[str, int], dict[State, float]]:
        now = utcnow()
        with self._sessions() as session:
            counts = counts_by_state(session)
            ages = {}
            for state in AGED_STATES:
                since = oldest(session, state) if counts.get(state.value) else None
                ages[state] = max(0.0, (now - since).total_seconds()) if since else 0.0
        return counts, ages
