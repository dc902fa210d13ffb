"""Store a batch of declines: one validation for every door (HTTP, CLI, queue).

Valid declines become QUEUED orders (with their audit row and suppression) in one transaction;
invalid ones are stored in ``rejected_declines`` with their per-field errors and card numbers
redacted. A known ``orderId`` answers with the existing order and creates nothing. Messages to
the workers are sent by the caller after commit (``worker.dispatch.send_evaluate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from worker.db.models import Order, RejectedDecline
from worker.intake import Accepted, Rejected, redact_pans, validate_decline
from worker.orders import State, record_event, start_suppression, utcnow
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.runtime import Runtime

CHUNK = 500  # orderIds per IN (...) lookup


@dataclass
class ItemResult:
    """One line of the per-item answer, in input order."""

    orderId: str | None
    accepted: bool
    state: str
    errors: dict[str, list[str]] = field(default_factory=dict)
    duplicate: bool = False
    order_pk: int | None = None

    def wire(self) -> dict[str, Any]:
        """The JSON shape of CONTRACT.md's ``results`` items."""
        out: dict[str, Any] = {"orderId": self.orderId, "accepted": self.accepted,
                               "state": self.state, "errors": self.errors}
        if self.duplicate:
            out["duplicate"] = True
        return out


@dataclass
class BatchOutcome:
    results: list[ItemResult]

    @property
    def new_order_pks(self) -> list[int]:
        """Orders created by this batch: these need an evaluate message after commit."""
        return [r.order_pk for r in self.results
                if r.accepted and not r.duplicate and r.order_pk is not None]


def _raw_order_id(raw: object) -> str | None:
    if isinstance(raw, dict):
        value = raw.get("orderId")
        if isinstance(value, str) and value.strip():
            return value
    return None


def existing_states(session: Session, order_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Known orders among ``order_ids``: ``{orderId: (pk, state)}``."""
    found: dict[str, tuple[int, str]] = {}
    unique = list(dict.fromkeys(order_ids))
    for start in range(0, len(unique), CHUNK):
        rows = session.execute(
            select(Order.order_id, Order.id, Order.state)
            .where(Order.order_id.in_(unique[start:start + CHUNK]))
        )
        found.update({oid: (pk, st) for oid, pk, st in rows})
    return found


def store_batch(session: Session, raws: Sequence[object], *, settings: Settings, source: str,
                source_ref: str | None = None, refs: Sequence[str] | None = None,
                now: datetime | None = None) -> BatchOutcome:
    """Validate and store ``raws``; flushes but does not commit (the caller owns the unit).

    ``refs`` names each item's origin (e.g. ``file.csv:17``) for the reject table; by default
    it is ``source_ref#<position>``.
    """
    now = now or utcnow()
    ids = [oid for oid in map(_raw_order_id, raws) if oid is not None]
    known = existing_states(session, ids)
    results: list[ItemResult] = []
    created: dict[str, Order] = {}
    for index, raw in enumerate(raws):
        oid = _raw_order_id(raw)
        if oid is not None and (oid in known or oid in created):
            results.append(_duplicate(oid, known, created))
            continue
        verdict = validate_decline(raw, now=now, settings=settings)
        if isinstance(verdict, Accepted):
            order = _new_order(verdict, settings, source, now)
            session.add(order)
            created[order.order_id] = order
            results.append(ItemResult(order.order_id, True, State.QUEUED))
        else:
            ref = refs[index] if refs is not None else _ref(source_ref, index)
            session.add(_reject(verdict, raw, source, ref, now))
            results.append(ItemResult(verdict.order_id, False, State.REJECTED,
                                      errors=verdict.errors))
    session.flush()
    for order in created.values():
        record_event(session, order, cause=f"intake.{source}", to_state=State.QUEUED, now=now)
        start_suppression(session, order, now)
    for result in results:
        if result.accepted and not result.duplicate and result.orderId in created:
            result.order_pk = created[result.orderId].id
    return BatchOutcome(results)


def _ref(source_ref: str | None, index: int) -> str:
    return f"{source_ref}#{index + 1}" if source_ref else f"#{index + 1}"


def _duplicate(oid: str, known: dict[str, tuple[int, str]],
               created: dict[str, Order]) -> ItemResult:
    if oid in created:
        return ItemResult(oid, True, created[oid].state, duplicate=True)
    pk, state = known[oid]
    return ItemResult(oid, True, state, duplicate=True, order_pk=pk)


def _new_order(ok: Accepted, settings: Settings, source: str, now: datetime) -> Order:
    decline = ok.decline.model_dump(by_alias=True, mode="json", exclude_none=True)
    return Order(
        order_id=decline["orderId"], state=State.QUEUED, mode=settings.flexfactor_mode,
        source=source, amount_cents=decline["amount"], currency=decline["currency"],
        refunded_cents=0, declined_at=ok.declined_at, expiry_at=ok.expiry_at, decline=decline,
        attempt_count=0, next_check_at=now, check_count=0, dispatched_at=now, dispatch_count=1,
        created_at=now, updated_at=now,
    )


def _reject(bad: Rejected, raw: object, source: str, ref: str, now: datetime) -> RejectedDecline:
    payload = bad.redacted if bad.redacted is not None else redact_pans(raw)
    oid = bad.order_id if bad.order_id is None or len(bad.order_id) <= 255 else None
    return RejectedDecline(received_at=now, source=source, source_ref=ref, order_id=oid,
                           errors=bad.errors, payload=_jsonable(payload))


def _jsonable(value: object) -> Any:
    """Whatever arrived, in a form a JSON column takes (garbage is kept as text)."""
    import json

    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)[:10_000]


def accept_declines(runtime: Runtime, raws: Sequence[object], *, source: str,
                    source_ref: str | None = None,
                    refs: Sequence[str] | None = None) -> BatchOutcome:
    """The whole intake unit: store, commit, refresh suppressions, then send messages.

    A concurrent submission of the same ``orderId`` makes the unique index fail the insert;
    the batch is then redone once, and the other submission's order answers as a duplicate.
    """
    from sqlalchemy.exc import IntegrityError

    from worker.dispatch import send_evaluate
    from worker.suppression import commit_and_refresh

    for attempt in (1, 2):
        session = runtime.sessions()
        try:
            outcome = store_batch(session, raws, settings=runtime.settings, source=source,
                                  source_ref=source_ref, refs=refs)
            commit_and_refresh(session, runtime.redis)
            break
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise
        finally:
            session.close()
    if outcome.new_order_pks:
        send_evaluate(runtime.celery, outcome.new_order_pks)
    return outcome


def accept_body(runtime: Runtime, body: object, *, source: str,
                source_ref: str | None = None) -> BatchOutcome:
    """Intake for a raw body (one decline or ``{"declines": [...]}``); a body of any other
    shape is itself stored as one reject, so nothing that arrives is ever dropped."""
    from worker.intake import parse_declines_body

    try:
        raws = parse_declines_body(body)
    except ValueError as exc:
        store_body_reject(runtime, redact_pans(body), str(exc), source, source_ref)
        return BatchOutcome([ItemResult(None, False, State.REJECTED, {"body": [str(exc)]})])
    return accept_declines(runtime, raws, source=source, source_ref=source_ref)


def store_body_reject(runtime: Runtime, payload: object, message: str, source: str,
                      source_ref: str | None = None) -> None:
    """Keep a body that is not a decline at all (bad JSON, wrong shape), redacted."""
    with runtime.sessions() as session:
        session.add(RejectedDecline(received_at=utcnow(), source=source, source_ref=source_ref,
                                    order_id=None, errors={"body": [message]},
                                    payload=_jsonable(payload)))
        session.commit()
