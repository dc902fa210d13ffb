"""Celery entry points for reconcile (being written)."""
