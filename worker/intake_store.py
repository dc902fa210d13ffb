"""Store a batch of declines: one validation for every door (HTTP, CLI, queue).

Valid declines become QUEUED orders (with their audit row and suppression) in one transaction;
invalid ones are stored in ``rejected_declines`` with their per-field errors and card numbers
redacted. A known ``orderId`` answers with the existing order and creates nothing. Rows are
written with multi-row INSERTs (a 100,000-row file is dominated by storage otherwise). Messages
to the workers are sent by the caller after commit (``worker.dispatch.send_evaluate``), only for
the orders the dispatch window lets through; the sweep sends the rest as it drains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import String, any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from worker.db.bulk import insert_returning_ids, insert_rows
from worker.db.models import Order, RejectedDecline
from worker.dispatch import window_room
from worker.intake import Accepted, Rejected, is_order_id, redact_pans, validate_decline
from worker.orders import State, record_events_bulk, start_suppressions_bulk, utcnow
from worker.settings import Settings

if TYPE_CHECKING:
    from worker.runtime import Runtime

CHUNK = 500  # orderIds per IN (...) lookup
PG_CHUNK = 10_000  # orderIds per = ANY(array) lookup on PostgreSQL


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
    # New orders stamped dispatched by this batch: they get an evaluate message after commit.
    # The others wait, undispatched, for the sweep to top up the dispatch window.
    dispatch_pks: list[int] = field(default_factory=list)

    @property
    def new_order_pks(self) -> list[int]:
        """Orders created by this batch: these need an evaluate message after commit."""
        return [r.order_pk for r in self.results
                if r.accepted and not r.duplicate and r.order_pk is not None]


@dataclass(frozen=True)
class Prepared:
    """An accepted decline validated ahead of storing (possibly in a helper process): its
    contract JSON and UTC instants. Cheap to pickle, unlike the pydantic model."""

    decline: dict[str, Any]
    expiry_at: datetime
    declined_at: datetime


Verdict = Accepted | Prepared | Rejected


def prepare(raw: object, *, now: datetime, settings: Settings) -> Prepared | Rejected:
    """``validate_decline`` with an accepted decline already dumped to its contract JSON."""
    verdict = validate_decline(raw, now=now, settings=settings)
    if isinstance(verdict, Rejected):
        return verdict
    return Prepared(_dump(verdict), verdict.expiry_at, verdict.declined_at)


def _dump(ok: Accepted) -> dict[str, Any]:
    return ok.decline.model_dump(by_alias=True, mode="json", exclude_none=True)


def _raw_order_id(raw: object) -> str | None:
    if isinstance(raw, dict):
        value = raw.get("orderId")
        if isinstance(value, str) and is_order_id(value):
            return value
    return None


def existing_states(session: Session, order_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
    """Known orders among ``order_ids``: ``{orderId: (pk, state)}``."""
    found: dict[str, tuple[int, str]] = {}
    unique = list(dict.fromkeys(order_ids))
    postgres = session.get_bind().dialect.name == "postgresql"
    size = PG_CHUNK if postgres else CHUNK
    for start in range(0, len(unique), size):
        part = unique[start:start + size]
        # PostgreSQL: one array parameter (= ANY) instead of thousands of IN (...) parameters,
        # whose statement text alone costs more to build and parse than the lookup.
        cond = (Order.order_id == any_(bindparam("ids", part, type_=ARRAY(String(64))))
                if postgres else Order.order_id.in_(part))
        rows = session.execute(select(Order.order_id, Order.id, Order.state).where(cond))
        found.update({oid: (pk, st) for oid, pk, st in rows})
    return found


def store_batch(session: Session, raws: Sequence[object], *, settings: Settings, source: str,
                source_ref: str | None = None, refs: Sequence[str] | None = None,
                now: datetime | None = None,
                verdicts: Sequence[Verdict] | None = None) -> BatchOutcome:
    """Validate and store ``raws``; writes but does not commit (the caller owns the unit).

    ``refs`` names each item's origin (e.g. ``file.csv:17``) for the reject table; by default
    it is ``source_ref#<position>``. ``verdicts``, when given, are the items' validation as of
    ``now``, done beforehand. New orders are stamped dispatched (and listed in
    ``dispatch_pks``) only while the dispatch window has room; the sweep sends the others.
    """
    now = now or utcnow()
    ids = [oid for oid in map(_raw_order_id, raws) if oid is not None]
    known = existing_states(session, ids)
    results: list[ItemResult] = []
    fresh: dict[str, dict[str, Any]] = {}  # orderId -> its orders row, in input order
    rejects: list[dict[str, Any]] = []
    for index, raw in enumerate(raws):
        oid = _raw_order_id(raw)
        if oid is not None and (oid in known or oid in fresh):
            results.append(_duplicate(oid, known))
            continue
        verdict = (verdicts[index] if verdicts is not None
                   else validate_decline(raw, now=now, settings=settings))
        if not isinstance(verdict, Rejected):
            row = _order_row(verdict, settings, source, now)
            fresh[row["order_id"]] = row
            results.append(ItemResult(row["order_id"], True, State.QUEUED))
        else:
            ref = refs[index] if refs is not None else _ref(source_ref, index)
            rejects.append(_reject_row(verdict, raw, source, ref, now))
            results.append(ItemResult(verdict.order_id, False, State.REJECTED,
                                      errors=verdict.errors))
    pks, dispatch = _insert_orders(session, list(fresh.values()), settings, source, now)
    if rejects:
        insert_rows(session, RejectedDecline, rejects)
    for result in results:
        if result.accepted and not result.duplicate and result.orderId in pks:
            result.order_pk = pks[result.orderId]
    return BatchOutcome(results, dispatch_pks=dispatch)


def _insert_orders(session: Session, rows: list[dict[str, Any]], settings: Settings,
                   source: str, now: datetime) -> tuple[dict[str, int], list[int]]:
    """Bulk-insert the new orders with their audit rows and suppressions.

    Returns ``{orderId: pk}`` and the pks stamped dispatched (the first ones, up to the room
    left in the dispatch window): multi-row INSERTs, not one ORM object per row.
    """
    if not rows:
        return {}, []
    room = window_room(session, settings, now)
    for row in rows[:room]:
        row["dispatched_at"], row["dispatch_count"] = now, 1
    ordered = insert_returning_ids(session, Order, rows)
    pks = {row["order_id"]: pk for row, pk in zip(rows, ordered, strict=True)}
    record_events_bulk(session, ordered, cause=f"intake.{source}", to_state=State.QUEUED,
                       now=now)
    start_suppressions_bulk(session, [(pks[r["order_id"]], r["order_id"], r["expiry_at"])
                                      for r in rows], now)
    return pks, ordered[:room]


def _ref(source_ref: str | None, index: int) -> str:
    return f"{source_ref}#{index + 1}" if source_ref else f"#{index + 1}"


def _duplicate(oid: str, known: dict[str, tuple[int, str]]) -> ItemResult:
    if oid not in known:  # repeated within this batch: the first one is the order
        return ItemResult(oid, True, State.QUEUED, duplicate=True)
    pk, state = known[oid]
    return ItemResult(oid, True, state, duplicate=True, order_pk=pk)


def _order_row(ok: Accepted | Prepared, settings: Settings, source: str,
               now: datetime) -> dict[str, Any]:
    decline = ok.decline if isinstance(ok, Prepared) else _dump(ok)
    return {
        "order_id": decline["orderId"], "state": State.QUEUED.value,
        "mode": settings.flexfactor_mode, "source": source, "amount_cents": decline["amount"],
        "currency": decline["currency"], "refunded_cents": 0, "declined_at": ok.declined_at,
        "expiry_at": ok.expiry_at, "decline": decline, "attempt_count": 0,
        "next_check_at": now, "check_count": 0, "dispatched_at": None, "dispatch_count": 0,
        "created_at": now, "updated_at": now,
    }


def _reject_row(bad: Rejected, raw: object, source: str, ref: str,
                now: datetime) -> dict[str, Any]:
    payload = bad.redacted if bad.redacted is not None else redact_pans(raw)
    oid = bad.order_id if bad.order_id is None or len(bad.order_id) <= 255 else None
    return {"received_at": now, "source": source, "source_ref": ref, "order_id": oid,
            "errors": bad.errors, "payload": _jsonable(payload)}


def _jsonable(value: object) -> Any:
    """Whatever arrived, in a form a JSON column takes (garbage is kept as text)."""
    import json

    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return repr(value)[:10_000]


def accept_declines(runtime: Runtime, raws: Sequence[object], *, source: str,
                    source_ref: str | None = None, refs: Sequence[str] | None = None,
                    now: datetime | None = None,
                    verdicts: Sequence[Verdict] | None = None) -> BatchOutcome:
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
                                  source_ref=source_ref, refs=refs, now=now,
                                  verdicts=verdicts)
            commit_and_refresh(session, runtime.redis)
            break
        except IntegrityError:
            session.rollback()
            if attempt == 2:
                raise
        finally:
            session.close()
    if outcome.dispatch_pks:
        send_evaluate(runtime.celery, outcome.dispatch_pks, batch=runtime.settings.evaluate_batch)
    count_outcome(outcome, source)
    return outcome


def count_outcome(outcome: BatchOutcome, source: str) -> None:
    """Intake metrics, the same for every door (HTTP, CLI, queue)."""
    from worker.metrics import DECLINES_ACCEPTED, DECLINES_DUPLICATE, DECLINES_REJECTED

    for result in outcome.results:
        if result.duplicate:
            DECLINES_DUPLICATE.labels(source).inc()
        elif result.accepted:
            DECLINES_ACCEPTED.labels(source).inc()
        else:
            for field in result.errors:
                DECLINES_REJECTED.labels(source, field.split(".")[0]).inc()



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
