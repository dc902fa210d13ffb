"""SandboxConfig: every knob of the simulator, one typed object with usable defaults."""

from __future__ import annotations

import base64
from typing import Literal

from pydantic import BaseModel, Field

DEFAULT_MID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
# 64 bytes, base64: the same shape as a portal "subscriber key" (88 base64 characters).
DEFAULT_WEBHOOK_KEY_B64 = base64.b64encode(bytes(range(64))).decode("ascii")

FaultKind = Literal["503", "slow", "500"]


class FaultRule(BaseModel):
    """Fail the next ``times`` calls of ``route`` whose merchant orderId contains a substring.

    ``route`` is a short route name (``evaluate``, ``refund``, ``cancel``, ``external-cancel``,
    ``capture``, ``order``, ``orders``, ``outcome``, ``tokenize``) or a ledger label such as
    ``"POST /v1/evaluate"``.
    """

    route: str = "evaluate"
    order_id_contains: str = ""
    fault: FaultKind = "503"
    times: int = Field(default=1, ge=0)


class SandboxConfig(BaseModel):
    """How the sandbox behaves. ``SandboxConfig()`` is a sensible, deterministic default."""

    model_config = {"extra": "forbid"}

    app_key: str = "sandbox-key"
    app_secret: str = "sandbox-secret"  # noqa: S105 - the sandbox's own public default
    mid: str = DEFAULT_MID
    tokenization_key: str = "sandbox-tokenization-key"
    mode: Literal["managed", "sync"] = "managed"
    token_ttl_s: float = Field(default=600.0, gt=0)
    rate_limit: float = Field(default=50.0, ge=0)  # accepted requests per 1 s window; 0 = off

    webhook_url: str | None = None
    webhook_key_b64: str = DEFAULT_WEBHOOK_KEY_B64
    webhooks_enabled: bool = True
    webhook_fail_rate: float = Field(default=0.0, ge=0, le=1)
    webhook_duplicate_rate: float = Field(default=0.0, ge=0, le=1)
    webhook_max_tries: int = Field(default=6, ge=1)
    webhook_retry_base_s: float = Field(default=0.5, ge=0)
    webhook_timeout_s: float = Field(default=5.0, gt=0)

    resolve_after_s: float = Field(default=2.0, ge=0)
    resolve_jitter_s: float = Field(default=0.0, ge=0)
    capture_window_s: float = Field(default=3600.0, gt=0)  # auto-void of an authorization
    expired_status_code: int = 2  # FlexFactor's int for EXPIRED is NOT FOUND (§7.2)

    fault_503_rate: float = Field(default=0.0, ge=0, le=1)
    fault_slow_rate: float = Field(default=0.0, ge=0, le=1)
    slow_reply_s: float = Field(default=3.0, ge=0)
    fault_routes: list[str] = Field(default_factory=lambda: ["evaluate"])
    fault_rules: list[FaultRule] = Field(default_factory=list)

    seed: int = 1234
    strict_transaction_fields: bool = False
