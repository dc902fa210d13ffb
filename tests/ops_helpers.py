"""Helpers for the operator CLI and dashboard tests: a mixed batch and its figures, from SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import func, select

from tests.factories import REMOVE, make_valid_decline
from worker.cli import main
from worker.db.models import Attempt, Order, RejectedDecline
from worker.evaluate import evaluate_order
from worker.intake_store import accept_declines
from worker.orders import as_utc
from worker.runtime import Runtime, reset_runtime
from worker.settings import Settings, get_settings

# Sandbox outcomes by cents (worker/sandbox/outcomes.py); > 20000 cents is a sandbox 400.
PLAN = {"approve-1": 1099, "approve-2": 1095, "decline": 1090, "pending": 1010,
        "failed": 25000, "unsent": 1050}


@dataclass
class Batch:
    """A submitted mixed batch: orderIds by plan, the rejected orderIds, the day received."""

    ids: dict[str, str]
    rejected: list[str]
    day: date


def mixed_batch(rt: Runtime, prefix: str) -> Batch:
    """Accept six declines and two invalid ones; evaluate all but ``unsent`` at the sandbox."""
    declines = [make_valid_decline(orderId=f"{prefix}-{name}", amount=cents,
                                   **{"subscription.price": cents})
                for name, cents in PLAN.items()]
    bad = [make_valid_decline(orderId=f"{prefix}-bad-token", **{"card.token": REMOVE}),
           make_valid_decline(orderId=f"{prefix}-bad-amount", amount=19.99)]
    outcome = accept_declines(rt, declines + bad, source="http")
    pks = dict(zip(PLAN, outcome.new_order_pks, strict=True))
    for name, pk in pks.items():
        if name != "unsent":
            assert evaluate_order(rt, pk, owner="test") is not None
    with rt.sessions() as session:
        created = session.scalar(select(func.min(Order.created_at)))
    assert created is not None
    day = as_utc(created).astimezone(rt.settings.tz).date()
    return Batch({n: f"{prefix}-{n}" for n in PLAN}, [d["orderId"] for d in bad], day)


def db_figures(rt: Runtime) -> dict[str, Any]:
    """The funnel computed independently with plain SQL over the whole (one-day) database."""
    rescued = ("APPROVED", "PARTIALLY_REFUNDED", "REFUNDED", "CHARGEBACK")
    with rt.sessions() as session:
        rows = session.execute(select(Order.state, func.count()).group_by(Order.state))
        states = {state: n for state, n in rows}
        rejected = session.scalar(select(func.count()).select_from(RejectedDecline))
        sent = session.scalar(select(func.count(func.distinct(Attempt.order_pk)))
                              .where(Attempt.route == "/evaluate"))
        cents = session.scalar(select(func.coalesce(func.sum(Order.amount_cents), 0))
                               .where(Order.state.in_(rescued)))
    accepted = sum(states.values())
    approved = sum(states.get(s, 0) for s in rescued)
    return {"by_state": states, "accepted": accepted, "rejected": rejected,
            "received": accepted + int(rejected or 0), "sent": sent, "approved": approved,
            "expired": states.get("EXPIRED", 0), "rescued_cents": int(cents or 0),
            "rescue_rate": round(approved / sent, 4) if sent else 0.0}


def flexmit(settings: Settings, *args: str) -> Result:
    """Run ``flexmit ARGS`` in this process with ``settings`` as its environment."""
    get_settings.cache_clear()
    reset_runtime()
    env = {**settings.to_env(), "COLUMNS": "200"}  # rich tables: no folding in the test
    try:
        return CliRunner().invoke(main, list(args), env=env)
    finally:
        reset_runtime()  # the command's runtime was built from the env just used
        get_settings.cache_clear()
