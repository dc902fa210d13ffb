"""Prometheus metrics (served at ``/metrics`` by the API; worker processes by their exporter).

Which process counts what, and how worker children share one exporter, is in
docs/observability.md. Label sets that are small and known up front are created at import
(``_precreate``), so every series exists, at zero, from the first scrape: ``rate()`` and
"absent" alerts then behave from the start.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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

# FlexFactor calls (counted where the client runs: worker processes, scripts, tests).
FLEXFACTOR_ROUTES = (
    "/oauth2/token", "/tokenize", "/evaluate", "/orders/{id}", "/orders",
    "/orders/{id}/refund", "/orders/{id}/cancel", "/orders/{external-order-id}/external-cancel",
    "/capture", "/outcome",
)
FLEXFACTOR_OUTCOMES = ("ok", "retry", "renew", "error")  # AttemptRecord.outcome
FLEXFACTOR_CALLS = Counter(
    "flexmit_flexfactor_calls_total",
    "HTTP attempts to FlexFactor by route template and outcome (ok, retry, renew, error)",
    ["route", "outcome"],
)
FLEXFACTOR_ERRORS = Counter(
    "flexmit_flexfactor_errors_total",
    "Failed FlexFactor attempts by route and error class (FlexFactorTimeout, ...)",
    ["route", "error"],
)
FLEXFACTOR_LATENCY = Histogram(
    "flexmit_flexfactor_request_duration_seconds",
    "Time from sending a FlexFactor request to its answer (or failure), by route",
    ["route"], buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
FLEXFACTOR_429 = Counter(
    "flexmit_flexfactor_429_total", "FlexFactor answers 429 Too Many Requests, by route",
    ["route"],
)
RATE_LIMIT_WAIT = Histogram(
    "flexmit_ratelimit_wait_seconds",
    "Time a request waited for the shared FlexFactor rate limit (_sum = total time waited)",
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RATE_LIMIT_GAVE_UP = Counter(
    "flexmit_ratelimit_wait_exceeded_total",
    "Requests not sent because the rate-limit wait would exceed FLEXMIT_RATE_MAX_WAIT_S",
)
# The newest heartbeat a worker node consumed (its exporter); "max" across pool children.
WORKER_HEARTBEAT = Gauge(
    "flexmit_worker_last_heartbeat_timestamp_seconds",
    "Unix time of the last heartbeat message this worker consumed", multiprocess_mode="max",
)


def _precreate() -> None:
    for route in FLEXFACTOR_ROUTES:
        FLEXFACTOR_LATENCY.labels(route)
        FLEXFACTOR_429.labels(route)
        for outcome in FLEXFACTOR_OUTCOMES:
            FLEXFACTOR_CALLS.labels(route, outcome)
    # Only the HTTP door counts declines so far (worker/api/declines.py).
    DECLINES_ACCEPTED.labels("http")
    DECLINES_DUPLICATE.labels("http")
    for reason in ("network", "http"):
        PUSHES_FAILED.labels(reason)


_precreate()
