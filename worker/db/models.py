"""Tables: orders, outbound attempts, the audit trail, rejected intake items, suppressions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql.elements import ColumnElement

# BIGINT on PostgreSQL, INTEGER on SQLite (where only INTEGER PRIMARY KEY autoincrements).
BigId = BigInteger().with_variant(Integer, "sqlite")
Json = JSON()
UtcDateTime = DateTime(timezone=True)

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


_PENDING = text("state = 'PENDING'")
_RESEND = text("state IN ('QUEUED', 'UNKNOWN')")
_QUEUED = text("state = 'QUEUED'")


class Order(Base):
    """One merchant charge handed to FlexFactor; ``order_id`` is the merchant's id."""

    __tablename__ = "orders"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    state: Mapped[str] = mapped_column(String(24))
    mode: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    refunded_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    declined_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expiry_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # The validated decline (vault token, never a card number): what /evaluate is built from.
    decline: Mapped[dict[str, Any]] = mapped_column(Json)
    order_session_key: Mapped[str | None] = mapped_column(String(64), index=True)
    ff_status: Mapped[str | None] = mapped_column(String(32))
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    # When a sweep should next look at this order (re-send, re-check); NULL = nothing due.
    next_check_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    check_count: Mapped[int] = mapped_column(Integer, default=0)
    dispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    dispatch_count: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    claim_owner: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[dict[str, Any] | None] = mapped_column(Json)
    # A FlexFactor call still owed for this order (e.g. "cancel" after paid-elsewhere); the
    # sweep sends it when ``next_check_at`` is due and nobody holds the claim.
    pending_action: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)

    __table_args__ = (
        Index("ix_orders_state_next_check_at", "state", "next_check_at"),
        Index("ix_orders_updated_at", "updated_at"),
        # Partial indexes for the sweeps: each reads only the few rows in its state, in
        # next_check_at order, and stops at its batch limit however large the table grows.
        # PostgreSQL: covering, so the stale-PENDING sweep is an index-only scan in
        # next_check_at order that stops at its LIMIT (a bitmap scan would read every due row).
        Index("ix_orders_pending_due", "next_check_at", "id", postgresql_where=_PENDING,
              sqlite_where=_PENDING,
              postgresql_include=["mode", "claimed_until", "dispatched_at"]),
        Index("ix_orders_resend_due", "next_check_at", postgresql_where=_RESEND,
              sqlite_where=_RESEND),
        Index("ix_orders_queued_dispatched", "dispatched_at", postgresql_where=_QUEUED,
              sqlite_where=_QUEUED),
    )


class Attempt(Base):
    """One outbound FlexFactor request made for an order."""

    __tablename__ = "attempts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    route: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    latency_ms: Mapped[float | None] = mapped_column()
    http_status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(32))
    ff_status: Mapped[str | None] = mapped_column(String(32))
    trace_id: Mapped[str | None] = mapped_column(String(128))
    error_type: Mapped[str | None] = mapped_column(String(64))
    field_errors: Mapped[dict[str, Any] | None] = mapped_column(Json)


class OrderEvent(Base):
    """The audit trail: every state change (and notable non-change) with its cause."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str | None] = mapped_column(String(24))
    cause: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(Json)


class RejectedDecline(Base):
    """A decline refused at intake: kept with its per-field errors, card numbers redacted."""

    __tablename__ = "rejected_declines"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    source: Mapped[str] = mapped_column(String(16))
    source_ref: Mapped[str | None] = mapped_column(String(255))
    order_id: Mapped[str | None] = mapped_column(String(255), index=True)
    errors: Mapped[dict[str, Any]] = mapped_column(Json)
    payload: Mapped[Any] = mapped_column(Json)


class Suppression(Base):
    """Billing must not retry this charge itself until ``until`` unless ``lifted_at`` is set."""

    __tablename__ = "suppressions"

    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id"), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(64), unique=True)
    since: Mapped[datetime] = mapped_column(UtcDateTime)
    until: Mapped[datetime] = mapped_column(UtcDateTime)
    lifted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    reason: Mapped[str] = mapped_column(String(64))


class WebhookEvent(Base):
    """One delivery to ``POST /v1/flexfactor/webhooks``: kept whether verified or not."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    verified: Mapped[bool] = mapped_column(Boolean)
    reject_reason: Mapped[str | None] = mapped_column(String(32))
    nonce: Mapped[str | None] = mapped_column(String(64))
    event: Mapped[str | None] = mapped_column(String(64))
    ff_order_id: Mapped[str | None] = mapped_column(String(64), index=True)
    external_order_id: Mapped[str | None] = mapped_column(String(255))
    confirmation_id: Mapped[str | None] = mapped_column(String(64))
    is_resent: Mapped[bool | None] = mapped_column(Boolean)
    # The event's identity (FlexFactor OrderId + Event + ConfirmationId): a re-delivery has the
    # same key, so the unique index makes processing happen once.
    dedupe_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    body: Mapped[str] = mapped_column(Text)
    order_pk: Mapped[int | None] = mapped_column(ForeignKey("orders.id"))
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    outcome: Mapped[str | None] = mapped_column(String(64))
    dispatched_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (Index("ix_webhook_events_unprocessed", "processed_at", "verified"),)


class BillingPush(Base):
    """Outbox of pushes to billing: written in the transaction of the state change it reports."""

    __tablename__ = "billing_pushes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)  # billing dedupes on it
    order_pk: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(255))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    claim_owner: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_billing_pushes_due", "delivered_at", "next_attempt_at"),)


def state_is(*states: str) -> ColumnElement[bool]:
    """``orders.state`` equal to / in constant ``states``, written as SQL literals: a bound
    parameter would keep PostgreSQL's cached generic plans from using the partial indexes."""
    from worker.orders import State  # the state machine imports these models

    literals: list[ColumnElement[str]] = [literal_column(f"'{State(s).value}'") for s in states]
    if len(literals) == 1:
        return Order.state == literals[0]
    return Order.state.in_(literals)
