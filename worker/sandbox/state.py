"""In-memory sandbox state behind ONE lock: orders, tokens, idempotency records, the ledger."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from worker.sandbox.config import SandboxConfig
from worker.sandbox.ledger import Ledger
from worker.sandbox.outcomes import Plan
from worker.sandbox.ratelimit import SlidingWindow

STATUS_NAMES = {
    0: "Draft",
    1: "Onhold",
    2: "Cancelled",
    3: "Problem",
    4: "Processing",
    5: "Capturerequired",
    6: "Returned",
    7: "Completed",
}
PENDING = {0, 4, 5}


@dataclass
class Order:
    """One FlexFactor order (keyed by ``key`` = orderSessionKey)."""

    key: str
    merchant_order_id: str
    amount: int
    currency: str
    created: float
    plan: Plan
    confirmation_id: str
    due: float  # when a pending order reaches its final status
    processing_at: float
    expiry: float | None = None
    is_mit: bool = True
    authorization: bool = False
    status: int = 0
    final: str | None = None  # completed | expired | cancelled | declined
    cancelled_by: str | None = None
    refunded: int = 0
    refunds_received: list[str] = field(default_factory=list)  # each amountToRefund, as parsed
    chargeback: bool = False
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def status_name(self) -> str:
        """``statusName``: the text form of ``status`` ("Expired" for expired orders)."""
        return "Expired" if self.final == "expired" else STATUS_NAMES.get(self.status, "Unknown")

    @property
    def pending(self) -> bool:
        """Still being worked on (Draft, Processing, Capturerequired)."""
        return self.final is None


@dataclass
class IdemRecord:
    """The first answer given for an idempotency key, and the body that produced it."""

    fingerprint: str
    status_code: int
    body: Any
    at: float


class SandboxState:
    """Everything the sandbox remembers. Callers hold ``lock`` while reading or changing it."""

    def __init__(self, config: SandboxConfig) -> None:
        self.lock = threading.RLock()
        self.config = config
        self.clock_offset = 0.0
        self.rng = random.Random(config.seed)
        self.tokens: dict[str, int] = {}
        self.card_tokens: dict[str, dict[str, Any]] = {}
        self.window = SlidingWindow()
        self.emit_hook: Callable[[str, Order, float], None] | None = None
        self.wake = threading.Condition(self.lock)
        self.reset()

    def reset(self) -> None:
        """Forget orders, idempotency records, the ledger and fault counters (not tokens)."""
        with self.lock:
            self.orders: dict[str, Order] = {}
            self.by_merchant: dict[str, list[str]] = {}
            self.idem: dict[tuple[str, str], IdemRecord] = {}
            self.ledger = Ledger()
            self.window.clear()
            self.rng = random.Random(self.config.seed)
            self.fault_remaining = [rule.times for rule in self.config.fault_rules]

    def set_config(self, config: SandboxConfig) -> None:
        """Swap the configuration at runtime; fault-rule counters restart if the rules changed."""
        with self.lock:
            if config.fault_rules != self.config.fault_rules:
                self.fault_remaining = [rule.times for rule in config.fault_rules]
            self.config = config
            self.wake.notify_all()

    def now(self) -> float:
        """Sandbox wall-clock time (epoch seconds), shifted by ``POST /_sandbox/advance-clock``."""
        return time.time() + self.clock_offset

    def emit(self, event: str, order: Order) -> None:
        """Hand a webhook event to the dispatcher (if one is attached)."""
        if self.emit_hook is not None:
            self.emit_hook(event, order, self.now())

    def order_for_merchant(self, merchant_order_id: str) -> Order | None:
        """The one order for a merchant orderId, or None."""
        keys = self.by_merchant.get(merchant_order_id)
        return self.orders[keys[0]] if keys else None

    def add_order(self, order: Order) -> None:
        """Store a new order and index it by merchant orderId."""
        self.orders[order.key] = order
        self.by_merchant.setdefault(order.merchant_order_id, []).append(order.key)
        self.wake.notify_all()

    def orders_by_status(self) -> dict[str, int]:
        """Order counts by ``statusName``."""
        counts: dict[str, int] = {}
        for order in self.orders.values():
            counts[order.status_name] = counts.get(order.status_name, 0) + 1
        return counts

    def ledger_json(self) -> dict[str, Any]:
        """The ledger snapshot."""
        per_id = {k: len(v) for k, v in self.by_merchant.items()}
        return self.ledger.snapshot(per_id, self.orders_by_status())
