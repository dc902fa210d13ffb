"""Helpers for tests that talk to the sandbox over HTTP: bodies, a webhook receiver, polling."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

import httpx

from worker.sandbox.config import DEFAULT_MID

T = TypeVar("T")


def evaluate_body(order_id: str, amount: int = 1999, **overrides: Any) -> dict[str, Any]:
    """A complete, valid Managed-MIT /evaluate body (fact sheet §3 minimum plus expiry)."""
    body: dict[str, Any] = {
        "isDeclined": True,
        "isMIT": True,
        "mid": DEFAULT_MID,
        "orderId": order_id,
        "idempotencyKey": str(uuid.uuid4()),
        "expiryDateUtc": "2099-01-01T00:00:00Z",
        "transaction": {
            "id": f"psp-{order_id}",
            "amount": amount,
            "currency": "USD",
            "timestampUtc": "2026-11-25T08:15:00Z",
            "responseCode": "05",
            "avsResultCode": "Y",
            "cvvResultCode": "M",
        },
        "payer": {"email": "ada@example.com"},
        "billingInformation": {
            "firstName": "Ada",
            "lastName": "Lovelace",
            "country": "US",
            "countryCode": "US",
            "addressLine1": "1 Main St",
            "city": "Austin",
            "state": "TX",
            "zipCode": "78701",
        },
        "paymentMethod": {
            "cardNumber": "tok_test",
            "token": True,
            "expirationMonth": 12,
            "expirationYear": 2030,
        },
    }
    body.update(overrides)
    return body


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, every: float = 0.02,
             what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


CREDENTIALS = {"AppKey": "sandbox-key", "AppSecret": "sandbox-secret"}


@contextmanager
def control_client(base_url: str) -> Iterator[httpx.Client]:
    """A client of the sandbox's ``/_sandbox`` routes, reset first; its config restored after."""
    with httpx.Client(base_url=base_url.removesuffix("/v1") + "/_sandbox") as ctl:
        ctl.post("/reset")
        original = ctl.get("/config").json()
        yield ctl
        ctl.post("/config", json=original)


@contextmanager
def api_client(base_url: str) -> Iterator[httpx.Client]:
    """A client of the sandbox's API with a fresh bearer token (default credentials)."""
    token = httpx.post(f"{base_url}/oauth2/token", json=CREDENTIALS).json()["accessToken"]
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"}) as client:
        yield client


@dataclass
class Received:
    """One request the webhook receiver got."""

    headers: dict[str, str]
    body: bytes
    status: int


@dataclass
class WebhookReceiver:
    """A tiny threaded HTTP server that records webhook deliveries and answers scripted codes."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many deliveries first
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _answer(self, headers: dict[str, str], body: bytes) -> int:
        with self.lock:
            status = 500 if self.fail_first > 0 else 200
            self.fail_first -= int(self.fail_first > 0)
            self.received.append(Received(headers, body, status))
            return status

    def snapshot(self) -> list[Received]:
        """A copy of what has arrived so far."""
        with self.lock:
            return list(self.received)


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """Run a ``WebhookReceiver`` on a free local port for the duration of the block."""
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            self.send_response(receiver._answer(headers, body))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/webhooks/flexfactor"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
