"""Multi-row inserts for bulk intake: ``COPY`` on PostgreSQL, ``executemany`` elsewhere.

A 100,000-row daily file spends most of its time storing rows when each is an ORM object; even
SQLAlchemy's multi-row ``INSERT ... VALUES`` pays for building and parsing huge statements on
the client. ``COPY`` streams the rows in the session's own transaction (one unit of work, as
before). Ids for rows the caller must refer to are drawn from the table's sequence first.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import JSON, Table, insert, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


def _table(model: Any) -> Table:
    return model.__table__


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def insert_rows(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys: column names) into ``model``'s table."""
    if not rows:
        return
    session.flush()  # pending ORM rows first: these inserts bypass the unit of work
    if _is_postgres(session):
        _copy(session, _table(model), rows)
    else:
        session.execute(insert(_table(model)), rows)


def insert_returning_ids(session: Session, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` and return their new primary keys, in the order of ``rows``."""
    if not rows:
        return []
    table = _table(model)
    session.flush()
    if not _is_postgres(session):
        stmt = insert(table).returning(table.c.id, sort_by_parameter_order=True)
        return list(session.execute(stmt, rows).scalars())
    ids = list(session.scalars(
        text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
        {"t": table.name, "n": len(rows)},
    ))
    _copy(session, table, [{"id": pk, **row} for pk, row in zip(ids, rows, strict=True)])
    return [int(pk) for pk in ids]


def _copy(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    import psycopg

    names = list(rows[0])
    # JSON columns travel as JSON text (None as JSON null, as SQLAlchemy's JSON type does).
    as_json = [isinstance(table.c[name].type, JSON) for name in names]
    statement = f"COPY {table.name} ({', '.join(names)}) FROM STDIN"
    cursor = session.connection().connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        with cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([json.dumps(row[n]) if j else row[n]
                                for n, j in zip(names, as_json, strict=True)])
    except psycopg.IntegrityError as exc:  # e.g. a concurrent insert of the same orderId
        raise IntegrityError(statement, None, exc) from exc
    finally:
        cursor.close()
