"""Celery entry points for webhooks (being written)."""
