"""Celery task entry points: thin wrappers that take ids and call domain functions in ``worker``."""
