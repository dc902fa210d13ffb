"""FlexFactor call metrics, rate-limit wait metrics and the traceId log binding."""

from __future__ import annotations

import httpx
import pytest
import structlog
from prometheus_client import REGISTRY

from worker import attempts
from worker.flexfactor.client import AttemptRecord, FlexFactorClient
from worker.metering import MeteredLimiter, observe_attempt, record_attempt
from worker.protocols import RateLimitWaitTooLong

TRACE = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def value(name: str, **labels: str) -> float:
    """The current value of one sample (0 if it does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def rec(**kw: object) -> AttemptRecord:
    base: dict[str, object] = {"route": "/evaluate", "method": "POST", "idempotency_key": None,
                               "status_code": 200, "outcome": "ok", "latency_ms": 120.0,
                               "trace_id": None, "error_type": None}
    return AttemptRecord(**{**base, **kw})  # type: ignore[arg-type]


def test_an_attempt_counts_by_route_and_outcome_with_its_latency() -> None:
    calls = value("flexmit_flexfactor_calls_total", route="/evaluate", outcome="ok")
    count = value("flexmit_flexfactor_request_duration_seconds_count", route="/evaluate")
    fast = value("flexmit_flexfactor_request_duration_seconds_bucket", route="/evaluate",
                 le="0.25")
    observe_attempt(rec(latency_ms=120.0))
    assert value("flexmit_flexfactor_calls_total", route="/evaluate", outcome="ok") == calls + 1
    assert value("flexmit_flexfactor_request_duration_seconds_count",
                 route="/evaluate") == count + 1
    assert value("flexmit_flexfactor_request_duration_seconds_bucket", route="/evaluate",
                 le="0.25") == fast + 1


def test_a_429_and_an_error_class_are_counted() -> None:
    before = value("flexmit_flexfactor_429_total", route="/orders/{id}")
    errors = value("flexmit_flexfactor_errors_total", route="/orders/{id}",
                   error="FlexFactorRateLimited")
    observe_attempt(rec(route="/orders/{id}", method="GET", status_code=429, outcome="retry",
                        error_type="FlexFactorRateLimited"))
    assert value("flexmit_flexfactor_429_total", route="/orders/{id}") == before + 1
    assert value("flexmit_flexfactor_errors_total", route="/orders/{id}",
                 error="FlexFactorRateLimited") == errors + 1


def test_every_known_route_is_exposed_before_any_call() -> None:
    for route in ("/evaluate", "/orders/{id}", "/orders/{id}/refund", "/capture"):
        assert REGISTRY.get_sample_value("flexmit_flexfactor_calls_total",
                                         {"route": route, "outcome": "error"}) is not None
        assert REGISTRY.get_sample_value("flexmit_flexfactor_429_total",
                                          {"route": route}) is not None


def test_record_attempt_feeds_the_audit_sink_and_binds_the_trace_id() -> None:
    structlog.contextvars.clear_contextvars()
    with attempts.collecting() as sink:
        record_attempt(rec(status_code=503, outcome="retry", trace_id=TRACE,
                           error_type="FlexFactorServerError"))
    bound = structlog.contextvars.get_contextvars()
    structlog.contextvars.clear_contextvars()
    assert [a.trace_id for a in sink] == [TRACE]
    assert bound["trace_id"] == TRACE


class FakeLimiter:
    def __init__(self, waits: list[float | None]) -> None:
        self.waits = waits
        self.penalties: list[float] = []

    def acquire(self, max_wait_s: float = 30.0) -> float:
        wait = self.waits.pop(0)
        if wait is None:
            raise RateLimitWaitTooLong(max_wait_s + 1)
        return wait

    def penalize(self, retry_after_s: float) -> None:
        self.penalties.append(retry_after_s)


def test_metered_limiter_counts_the_time_waited_and_the_refusals() -> None:
    total = value("flexmit_ratelimit_wait_seconds_sum")
    count = value("flexmit_ratelimit_wait_seconds_count")
    refused = value("flexmit_ratelimit_wait_exceeded_total")
    inner = FakeLimiter([0.25, 0.0, None])
    limiter = MeteredLimiter(inner)
    assert limiter.acquire(5) == 0.25
    assert limiter.acquire(5) == 0.0
    with pytest.raises(RateLimitWaitTooLong):
        limiter.acquire(5)
    limiter.penalize(2.0)
    assert value("flexmit_ratelimit_wait_seconds_sum") == pytest.approx(total + 0.25)
    assert value("flexmit_ratelimit_wait_seconds_count") == count + 2
    assert value("flexmit_ratelimit_wait_exceeded_total") == refused + 1
    assert inner.penalties == [2.0]


def test_a_real_client_reports_429_then_success_through_the_hooks() -> None:
    """The wiring the runtime uses: client -> record_attempt -> counters."""
    replies = iter([
        httpx.Response(200, json={"accessToken": "t", "expires": 4_102_444_800_000}),
        httpx.Response(429, headers={"Retry-After": "0"},
                       json={"status": 429, "traceId": TRACE}),
        httpx.Response(503, json={"status": 503, "traceId": TRACE}),
        httpx.Response(200, json={"id": "ff-1", "status": 1}),
    ])
    transport = httpx.MockTransport(lambda request: next(replies))
    before_429 = value("flexmit_flexfactor_429_total", route="/orders/{id}")
    before_ok = value("flexmit_flexfactor_calls_total", route="/orders/{id}", outcome="ok")
    waits = value("flexmit_ratelimit_wait_seconds_count")
    client = FlexFactorClient(base_url="https://ff.test/v1", app_key="k", app_secret="s",
                              mid="m", http=httpx.Client(transport=transport),
                              limiter=MeteredLimiter(FakeLimiter([0.0, 0.0, 0.0])),
                              sleep=lambda _: None, on_attempt=record_attempt, max_attempts=3)
    structlog.contextvars.clear_contextvars()
    try:
        assert client.get_order("ff-1").id == "ff-1"  # the third try answers
    finally:
        structlog.contextvars.clear_contextvars()
    assert value("flexmit_flexfactor_429_total", route="/orders/{id}") == before_429 + 1
    assert value("flexmit_flexfactor_calls_total", route="/orders/{id}",
                 outcome="ok") == before_ok + 1
    assert value("flexmit_ratelimit_wait_seconds_count") == waits + 3
