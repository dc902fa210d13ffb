"""Webhook delivery (§6): PascalCase bodies, ``text/plain``, signed with ``sign_webhook``.

A single background thread delivers from a due-time heap, so request handling never waits on
a receiver. A failed or deliberately dropped delivery (``webhook_fail_rate``) is retried after
``webhook_retry_base_s * 2**n`` with ``IsResent: true`` until ``webhook_max_tries``; a
delivered one is sent once more with ``IsResent: true`` at ``webhook_duplicate_rate``.
"""

from __future__ import annotations

import heapq
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import structlog

from worker.sandbox.config import SandboxConfig
from worker.sandbox.state import Order, SandboxState
from worker.sandbox.wire import iso_utc

log = structlog.get_logger("flexmit.sandbox")


@dataclass(order=True)
class Delivery:
    """One queued send of one event."""

    due: float
    seq: int
    payload: dict[str, Any] = field(compare=False)
    attempt: int = field(default=0, compare=False)
    duplicate: bool = field(default=False, compare=False)


def event_payload(event: str, order: Order, at: float) -> dict[str, Any]:
    """The PascalCase webhook body (§6.3); ``IsResent`` is set per send."""
    return {
        "Event": event,
        "TimeStamp": iso_utc(at),
        "EventData": None,
        "ExternalOrderId": order.merchant_order_id,
        "OrderId": order.key,
        "ConfirmationId": order.confirmation_id,
        "IsTestMode": True,
        "IsResent": False,
    }


class WebhookDispatcher:
    """Queues events (under the state lock) and delivers them from one worker thread."""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self._cond = threading.Condition(state.lock)
        self._heap: list[Delivery] = []
        self._seq = 0
        self._stop = False
        self._thread: threading.Thread | None = None
        self.recent: deque[dict[str, Any]] = deque(maxlen=500)

    def enqueue(self, event: str, order: Order, at: float) -> None:
        """Queue ``event`` for ``order`` if webhooks are on. Caller holds the state lock."""
        cfg = self.state.config
        if cfg.webhook_url and cfg.webhooks_enabled:
            self._push(Delivery(time.monotonic(), 0, event_payload(event, order, at)))

    def _push(self, delivery: Delivery) -> None:
        with self._cond:
            self._seq += 1
            delivery.seq = self._seq
            heapq.heappush(self._heap, delivery)
            self._cond.notify_all()

    def clear(self) -> None:
        """Drop every queued delivery and the recent log."""
        with self._cond:
            self._heap.clear()
            self.recent.clear()

    def start(self) -> None:
        """Start the delivery thread."""
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the delivery thread (queued deliveries are dropped)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _next(self) -> Delivery | None:
        with self._cond:
            while not self._stop:
                now = time.monotonic()
                if self._heap and self._heap[0].due <= now:
                    return heapq.heappop(self._heap)
                wait = self._heap[0].due - now if self._heap else None
                self._cond.wait(timeout=wait)
            return None

    def _run(self) -> None:
        with httpx.Client() as client:
            while (delivery := self._next()) is not None:
                try:
                    self._deliver(client, delivery)
                except Exception:  # the worker thread must survive anything a receiver does
                    log.exception("sandbox.webhook_worker_error")

    def _deliver(self, client: httpx.Client, delivery: Delivery) -> None:
        with self.state.lock:
            cfg = self.state.config
            if not (cfg.webhook_url and cfg.webhooks_enabled):
                return  # switched off meanwhile: the event is lost, as a real outage loses it
            drop = cfg.webhook_fail_rate > 0 and self.state.rng.random() < cfg.webhook_fail_rate
        resent = delivery.attempt > 0 or delivery.duplicate
        body = json.dumps({**delivery.payload, "IsResent": resent}, separators=(",", ":")).encode()
        status = None if drop else _post(client, cfg, body)
        self._record(delivery, cfg, resent, status, drop)

    def _record(
        self, delivery: Delivery, cfg: SandboxConfig, resent: bool, status: int | None, drop: bool
    ) -> None:
        ok = status is not None and 200 <= status < 300
        payload = delivery.payload
        with self.state.lock:
            ledger = self.state.ledger
            ledger.webhooks_resent += int(resent)
            self.recent.append(
                {
                    "event": payload["Event"],
                    "orderId": payload["OrderId"],
                    "isResent": resent,
                    "attempt": delivery.attempt + 1,
                    "status": status,
                    "dropped": drop,
                    "ok": ok,
                }
            )
            if ok:
                ledger.webhooks_delivered += 1
                if not delivery.duplicate and self._roll(cfg.webhook_duplicate_rate):
                    ledger.webhooks_duplicated += 1
                    self._push(Delivery(time.monotonic(), 0, payload, 0, duplicate=True))
                return
            ledger.webhooks_failed += 1
            if delivery.attempt + 1 >= cfg.webhook_max_tries:
                ledger.webhooks_abandoned += 1
                return
        delay = cfg.webhook_retry_base_s * 2**delivery.attempt
        retry = Delivery(time.monotonic() + delay, 0, payload, delivery.attempt + 1)
        self._push(retry)
        log.info("sandbox.webhook_retry", event=payload["Event"], attempt=retry.attempt + 1)

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self.state.rng.random() < rate


def _post(client: httpx.Client, cfg: SandboxConfig, body: bytes) -> int | None:
    """POST one signed body; the HTTP status, or None when the request itself failed."""
    from worker.flexfactor.signing import sign_webhook

    url = cfg.webhook_url or ""
    headers = sign_webhook(body, key_b64=cfg.webhook_key_b64, host=urlsplit(url).hostname or "")
    headers["Content-Type"] = "text/plain; charset=utf-8"
    try:
        reply = client.post(url, content=body, headers=headers, timeout=cfg.webhook_timeout_s)
        return reply.status_code
    except httpx.HTTPError as exc:
        log.info("sandbox.webhook_failed", error=type(exc).__name__)
        return None
