"""The synchronous FlexFactor HTTP client: exact wire shapes, brief retries, shared token.

Retries here last seconds (fact sheet §8, docs/architecture.md): 429, 502/503/504 and failed
connections; a timeout or a 500 only on replay-safe routes. A 401 renews the token once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import quote

import httpx
import pydantic
import structlog

from worker.flexfactor import wire
from worker.flexfactor.errors import (
    FlexFactorAuthError,
    FlexFactorError,
    FlexFactorRateLimited,
    error_from_response,
    error_from_transport,
    is_business_failure,
    response_body,
)
from worker.flexfactor.retry import backoff, should_retry
from worker.flexfactor.tokens import InMemoryTokenCache, TokenProvider
from worker.money import cents_to_dollars
from worker.protocols import CachedToken, RateLimiter, TokenCache

if TYPE_CHECKING:
    from pydantic import SecretStr

log = structlog.get_logger(__name__)
M = TypeVar("M", bound=pydantic.BaseModel)


class ClientSettings(Protocol):
    """The part of ``worker.settings.Settings`` the client reads."""

    @property
    def flexfactor_base_url(self) -> str: ...
    @property
    def flexfactor_app_key(self) -> SecretStr | None: ...
    @property
    def flexfactor_app_secret(self) -> SecretStr | None: ...
    @property
    def flexfactor_mid(self) -> str | None: ...
    @property
    def flexfactor_site_id(self) -> str | None: ...
    @property
    def flexfactor_tokenization_key(self) -> SecretStr | None: ...
    @property
    def flexfactor_timeout_s(self) -> float: ...
    @property
    def rate_max_wait_s(self) -> float: ...


@dataclass(frozen=True)
class AttemptRecord:
    """One HTTP attempt, for metrics and the audit trail (no bodies, no tokens)."""

    route: str  # the path template, e.g. "/orders/{id}/refund"
    method: str
    idempotency_key: str | None
    status_code: int | None
    outcome: str  # "ok" | "retry" | "renew" (401, token renewed) | "error" (raised)
    latency_ms: float
    trace_id: str | None
    error_type: str | None
    attempt: int = 1


@dataclass(frozen=True)
class _Call:
    method: str
    route: str
    path: str
    replay_safe: bool
    body: Callable[[], dict[str, Any]] | None = None  # called per attempt (fresh keys)
    params: Sequence[tuple[str, str]] | None = None
    auth: bool = True  # False only for /oauth2/token: no bearer, not rate limited
    business: bool = False  # a 200 with success:false / FAILED raises FlexFactorBusinessError


class FlexFactorClient:
    """FlexFactor merchant API (sync httpx). Thread-safe if the injected pieces are."""

    def __init__(
        self,
        *,
        base_url: str,
        app_key: str,
        app_secret: str,
        mid: str,
        site_id: str | None = None,
        tokenization_key: str | None = None,
        http: httpx.Client | None = None,
        token_cache: TokenCache | None = None,
        limiter: RateLimiter | None = None,
        timeout_s: float = 10.0,
        max_attempts: int = 3,
        rate_max_wait_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        on_attempt: Callable[[AttemptRecord], None] | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._app_key, self._app_secret = app_key, app_secret
        self.mid, self.site_id, self._tokenization_key = mid, site_id, tokenization_key
        self._owns_http = http is None
        self._http = http if http is not None else httpx.Client()
        self._limiter = limiter
        self._timeout = httpx.Timeout(timeout_s)
        self._max_attempts = max(1, max_attempts)
        self._rate_max_wait_s = rate_max_wait_s
        self._sleep = sleep
        self._on_attempt = on_attempt
        cache = token_cache if token_cache is not None else InMemoryTokenCache()
        self.tokens = TokenProvider(self.fetch_token, cache, clock=clock)

    @classmethod
    def from_settings(
        cls,
        settings: ClientSettings,
        *,
        http: httpx.Client | None = None,
        token_cache: TokenCache | None = None,
        limiter: RateLimiter | None = None,
        on_attempt: Callable[[AttemptRecord], None] | None = None,
    ) -> FlexFactorClient:
        """A client configured from Settings; raises ValueError if a credential is missing."""
        key, secret = settings.flexfactor_app_key, settings.flexfactor_app_secret
        if key is None or secret is None or not settings.flexfactor_mid:
            raise ValueError("FLEXFACTOR_APP_KEY, _APP_SECRET and _MID are required")
        tok = settings.flexfactor_tokenization_key
        return cls(
            base_url=settings.flexfactor_base_url,
            app_key=key.get_secret_value(),
            app_secret=secret.get_secret_value(),
            mid=settings.flexfactor_mid,
            site_id=settings.flexfactor_site_id,
            tokenization_key=tok.get_secret_value() if tok is not None else None,
            http=http,
            token_cache=token_cache,
            limiter=limiter,
            timeout_s=settings.flexfactor_timeout_s,
            rate_max_wait_s=settings.rate_max_wait_s,
            on_attempt=on_attempt,
        )

    # --- endpoints ------------------------------------------------------------------------

    def fetch_token(self) -> CachedToken:
        """POST /oauth2/token: a new access token (bad credentials raise FlexFactorAuthError)."""
        req = wire.TokenRequest(app_key=self._app_key, app_secret=self._app_secret)
        call = _Call("POST", "/oauth2/token", "/oauth2/token", True, req.to_wire, auth=False)
        resp = self._parse(wire.TokenResponse, self._request(call), call)
        return CachedToken(access_token=resp.access_token, expires_ms=resp.expires)

    def tokenize(self, req: wire.TokenizeRequest) -> wire.TokenizeResponse:
        """POST /tokenize: vault a card; ``.token`` goes into ``paymentMethod.cardNumber``."""
        if not self._tokenization_key:
            raise ValueError("tokenize needs a tokenization key (FLEXFACTOR_TOKENIZATION_KEY)")
        params = [("mid", self.mid), ("environment", self._tokenization_key)]
        call = _Call("POST", "/tokenize", "/tokenize", False, req.to_wire, params=params)
        return self._parse(wire.TokenizeResponse, self._request(call), call)

    def evaluate(self, req: wire.EvaluateRequest) -> wire.EvaluateResponse:
        """POST /evaluate with a fresh idempotencyKey per attempt; orderId is the caller's."""
        fill = {"mid": req.mid or self.mid, "site_id": req.site_id or self.site_id}
        base = req.model_copy(update=fill)

        def body() -> dict[str, Any]:
            return base.model_copy(update={"idempotency_key": str(uuid.uuid4())}).to_wire()

        call = _Call("POST", "/evaluate", "/evaluate", False, body)
        return self._parse(wire.EvaluateResponse, self._request(call), call)

    def get_order(self, order_session_key: str) -> wire.OrderDetails:
        """GET /orders/{id}: the order's current status (FlexFactorNotFound if unknown)."""
        call = _Call("GET", "/orders/{id}", f"/orders/{_seg(order_session_key)}", True)
        return self._parse(wire.OrderDetails, self._request(call), call)

    def list_orders(
        self,
        *,
        query: str | None = None,
        status: Sequence[int] | int | None = None,
        page_number: int = 1,
        page_size: int = 10,
        from_: datetime | None = None,
        to: datetime | None = None,
    ) -> wire.OrderPage:
        """GET /orders: one page of orders, optionally filtered."""
        params = [("mid", self.mid), ("pageNumber", str(page_number)), ("pageSize", str(page_size))]
        params += [("query", query)] if query else []
        statuses = [status] if isinstance(status, int) else list(status or [])
        params += [("status", str(int(s))) for s in statuses]
        params += [(k, v.isoformat()) for k, v in (("from", from_), ("to", to)) if v is not None]
        call = _Call("GET", "/orders", "/orders", True, params=params)
        return self._parse(wire.OrderPage, self._request(call), call)

    def refund(
        self, order_session_key: str, amount_cents: int, *, message: str | None = None
    ) -> wire.RefundResponse:
        """POST /orders/{id}/refund; the one place cents become dollars (1999 -> 19.99)."""
        dollars = cents_to_dollars(amount_cents)  # TypeError for a non-int
        if dollars <= 0:
            raise ValueError("amount_cents must be positive")
        req = wire.RefundRequest(amount_to_refund=dollars, refund_message=message)
        path = f"/orders/{_seg(order_session_key)}/refund"
        call = _Call("POST", "/orders/{id}/refund", path, False, req.to_wire, business=True)
        return self._parse(wire.RefundResponse, self._request(call), call)

    def cancel(self, order_session_key: str, *, idempotency_key: str | None = None) -> None:
        """POST /orders/{id}/cancel: void a rescue not yet captured (one key for all attempts)."""
        path = f"/orders/{_seg(order_session_key)}/cancel"
        self._cancel("/orders/{id}/cancel", path, idempotency_key)

    def external_cancel(
        self, merchant_order_id: str, *, idempotency_key: str | None = None
    ) -> None:
        """POST /orders/{your orderId}/external-cancel: cancel without the FlexFactor id."""
        path = f"/orders/{_seg(merchant_order_id)}/external-cancel"
        self._cancel("/orders/{external-order-id}/external-cancel", path, idempotency_key)

    def capture(self, order_id: str, amount_cents: int, currency: str) -> wire.CaptureResponse:
        """POST /capture (cents) for an order in CAPTUREREQUIRED; FAILED raises a business error."""

        def body() -> dict[str, Any]:
            key = str(uuid.uuid4())
            req = wire.CaptureRequest(
                idempotency_key=key, order_id=order_id, amount=amount_cents, currency=currency
            )
            return req.to_wire()

        call = _Call("POST", "/capture", "/capture", False, body, business=True)
        return self._parse(wire.CaptureResponse, self._request(call), call)

    def outcome(self, order_session_key: str) -> wire.OutcomeResponse:
        """POST /outcome (deprecated by FlexFactor in favour of get_order)."""
        req = wire.OutcomeRequest(order_session_key=order_session_key)
        call = _Call("POST", "/outcome", "/outcome", True, req.to_wire)
        return self._parse(wire.OutcomeResponse, self._request(call), call)

    def close(self) -> None:
        """Close the HTTP client if this object created it."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> FlexFactorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- machinery ------------------------------------------------------------------------

    def _cancel(self, route: str, path: str, idempotency_key: str | None) -> None:
        body = wire.CancelRequest(idempotency_key=idempotency_key or str(uuid.uuid4())).to_wire()
        self._request(_Call("POST", route, path, True, lambda: body, business=True))

    def _request(self, call: _Call) -> Any:
        attempt, renewed = 1, False
        while True:
            token = self.tokens.get() if call.auth else None
            body = call.body() if call.body is not None else None
            resp, error, ms = self._attempt(call, token, body)
            if error is None:
                self._record(call, body, resp, None, "ok", ms, attempt)
                return response_body(resp) if resp is not None else None
            if not renewed and token and _is_401(error):
                renewed = True
                self._record(call, body, resp, error, "renew", ms, attempt)
                self.tokens.renew(token)
                continue
            safe = call.replay_safe
            if not should_retry(
                error, attempt=attempt, max_attempts=self._max_attempts, replay_safe=safe
            ):
                self._record(call, body, resp, error, "error", ms, attempt)
                raise error
            self._record(call, body, resp, error, "retry", ms, attempt)
            self._sleep(self._delay(error, attempt))
            attempt += 1

    def _attempt(
        self, call: _Call, token: str | None, body: dict[str, Any] | None
    ) -> tuple[httpx.Response | None, FlexFactorError | None, float]:
        if call.auth and self._limiter is not None:
            self._limiter.acquire(self._rate_max_wait_s)
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        content = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body).encode()
        started = time.perf_counter()
        try:
            resp = self._http.request(
                call.method,
                self._base_url + call.path,
                content=content,
                headers=headers,
                params=list(call.params or []),
                timeout=self._timeout,
            )
        except httpx.TransportError as exc:
            return None, error_from_transport(exc, f"{call.method} {call.route}"), _ms(started)
        ms = _ms(started)
        if resp.status_code >= 400 or (call.business and is_business_failure(response_body(resp))):
            return resp, error_from_response(resp), ms
        return resp, None, ms

    def _delay(self, error: FlexFactorError, attempt: int) -> float:
        if not isinstance(error, FlexFactorRateLimited):
            return backoff(attempt, None)
        wait = backoff(attempt, error.retry_after_s)
        if self._limiter is not None:
            self._limiter.penalize(wait)  # every process holds off, not only this one
        return wait

    def _record(
        self,
        call: _Call,
        body: dict[str, Any] | None,
        resp: httpx.Response | None,
        error: FlexFactorError | None,
        outcome: str,
        latency_ms: float,
        attempt: int,
    ) -> None:
        key = body.get("idempotencyKey") if body else None
        record = AttemptRecord(
            route=call.route,
            method=call.method,
            idempotency_key=key if isinstance(key, str) else None,
            status_code=resp.status_code if resp is not None else None,
            outcome=outcome,
            latency_ms=round(latency_ms, 2),
            trace_id=error.trace_id if error is not None else None,
            error_type=type(error).__name__ if error is not None else None,
            attempt=attempt,
        )
        level = log.info if outcome == "ok" else log.warning
        level("flexfactor.http", **vars(record))
        if self._on_attempt is not None:
            self._on_attempt(record)

    def _parse(self, model: type[M], data: Any, call: _Call) -> M:
        try:
            return model.model_validate(data if data is not None else {})
        except pydantic.ValidationError as exc:
            # Name the fields only: the pydantic message would quote the (sensitive) input.
            locs = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            msg = f"FlexFactor {call.method} {call.route}: unexpected response shape ({locs})"
            raise FlexFactorError(msg, status_code=200) from None


def _is_401(error: FlexFactorError) -> bool:
    return isinstance(error, FlexFactorAuthError) and error.status_code == 401


def _seg(value: str) -> str:
    return quote(value, safe="")


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


__all__ = ["AttemptRecord", "FlexFactorClient"]
