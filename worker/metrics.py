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
PUSHES_SENT = Counter(
    "flexmit_billing_pushes_sent_total", "Pushes to billing that billing answered with a 2xx"
)
PUSHES_FAILED = Counter(
    "flexmit_billing_pushes_failed_total",
    "Push tries billing did not answer with a 2xx (retried on the ladder)", ["reason"],
)

# FlexFactor webhooks (counted where they arrive: the API process that /metrics reports on).
WEBHOOKS_RECEIVED = Counter(
    "flexmit_webhooks_received_total", "Deliveries to POST /v1/flexfactor/webhooks"
)
WEBHOOKS_VERIFIED = Counter(
    "flexmit_webhooks_verified_total", "Deliveries whose signature, date and nonce checked out"
)
WEBHOOKS_REJECTED = Counter(
    "flexmit_webhooks_rejected_total", "Deliveries refused with 401, by reason", ["reason"]
)
WEBHOOKS_DUPLICATE = Counter(
    "flexmit_webhooks_duplicate_total", "Verified deliveries of an event already received"
)
WEBHOOKS_MALFORMED = Counter(
    "flexmit_webhooks_malformed_total", "Verified deliveries whose body is not a usable event"
)
WEBHOOK_EVENTS = Counter(
    "flexmit_webhook_events_total",
    "Verified, first-time events by name (names outside the fact sheet count as 'other')",
    ["event"],
)
WEBHOOKS_UNKNOWN_ORDER = Counter(
    "flexmit_webhooks_unknown_order_total", "Verified events naming no order flexmit knows"
)

# Reconciliation polls of PENDING orders (counted in the worker process that polls).
RECONCILE_POLLS = Counter(
    "flexmit_reconcile_polls_total",
    "GET /orders/{id} status polls of PENDING orders, by what they found", ["outcome"],
)
RECONCILE_DISAGREEMENTS = Counter(
    "flexmit_reconcile_disagreements_total",
    "A final state already applied (by a webhook) that FlexFactor's answer contradicts",
    ["current", "reported"],
)
