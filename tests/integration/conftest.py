"""Fixtures of the sandbox's own tests: a module defines ``base_url`` (its running sandbox)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from worker.sandbox.testing import api_client, control_client


@pytest.fixture
def control(base_url: str) -> Iterator[httpx.Client]:
    """The sandbox's control routes, reset first; its config restored after the test."""
    with control_client(base_url) as ctl:
        yield ctl


@pytest.fixture
def api(base_url: str, control: httpx.Client) -> Iterator[httpx.Client]:
    """The sandbox's API with a fresh bearer token."""
    with api_client(base_url) as client:
        yield client
