"""Injected faults: random 503 / slow replies by rate, and deterministic per-order rules."""

from __future__ import annotations

from worker.sandbox.state import SandboxState


def pick_fault(state: SandboxState, route: str, label: str, merchant_order_id: str) -> str | None:
    """The fault to inject into this call ("503", "500", "slow"), or None. Hold the lock.

    Rules come first, in order, each for its ``times`` occurrences; then the random rates,
    which apply to the routes named in ``fault_routes`` only.
    """
    cfg = state.config
    for i, rule in enumerate(cfg.fault_rules):
        if state.fault_remaining[i] <= 0 or rule.route not in (route, label):
            continue
        if rule.order_id_contains in merchant_order_id:
            state.fault_remaining[i] -= 1
            return rule.fault
    if route not in cfg.fault_routes:
        return None
    if cfg.fault_503_rate and state.rng.random() < cfg.fault_503_rate:
        return "503"
    if cfg.fault_slow_rate and state.rng.random() < cfg.fault_slow_rate:
        return "slow"
    return None
