"""The HTTP API (CONTRACT.md): thin routes that verify, store, enqueue after commit, answer."""

from worker.api.app import create_app

__all__ = ["create_app"]
