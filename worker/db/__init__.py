"""The system of record: SQLAlchemy 2 models, engine/session factories and Alembic migrations."""
