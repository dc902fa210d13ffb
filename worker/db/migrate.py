"""Run Alembic programmatically: ``flexmit migrate`` and the test fixtures use this."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from worker.db.session import normalize_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    """An Alembic config pointing at our migrations and the given database."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", normalize_url(database_url).replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema at ``database_url`` to ``revision`` (default: the latest)."""
    command.upgrade(alembic_config(database_url), revision)


def pending_revision(database_url: str) -> str | None:
    """None when the schema at ``database_url`` is at the latest revision, else a sentence
    saying what to do (an empty database, or one a release behind)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from worker.db.session import make_engine

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
    if current == head:
        return None
    found = f"at revision {current}" if current else "empty"
    return f"the database schema is {found}, not {head}: run `flexmit migrate` first"
