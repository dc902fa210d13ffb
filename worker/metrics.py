"""Prometheus metrics (served at ``/metrics`` by the API)."""

from __future__ import annotations

from prometheus_client import Counter

DECLINES_ACCEPTED = Counter(
    "flexmit_declines_accepted_total", "Declines accepted at intake", ["source"]
)
DECLINES_REJECTED = Counter(
    "flexmit_declines_rejected_total", "Declines rejected at intake, by field in error",
    ["source", "field"],
)
DECLINES_DUPLICATE = Counter(
    "flexmit_declines_duplicate_total", "Declines whose orderId was already known", ["source"]
)
