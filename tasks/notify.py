"""Celery entry points for notify (being written)."""
