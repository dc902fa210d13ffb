"""``GET /dashboard``: the operators' status page, checked over HTTP and in headless Chromium."""

from __future__ import annotations

import base64
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from tests.ops_helpers import Batch, db_figures, mixed_batch
from tests.pipeline import running_stack
from tests.webhooks_helpers import serving
from worker.api import create_app
from worker.db.models import Order
from worker.orders import State
from worker.runtime import Runtime

TOKEN = "test-intake-token-0123456789"
BASIC = {"Authorization": "Basic " + base64.b64encode(f"ops:{TOKEN}".encode()).decode()}
EVIL = "<script>alert(1)</script>"
FUNNEL_KEYS = ("received", "rejected", "accepted", "sent", "approved", "expired")
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def _prepare(rt: Runtime, prefix: str) -> Batch:
    """The mixed batch, with markup in the FAILED order's error (it must show as text)."""
    batch = mixed_batch(rt, prefix)
    with rt.sessions() as session:
        session.execute(update(Order).where(Order.order_id == batch.ids["failed"])
                        .values(last_error={"error": EVIL, "traceId": "t-1"}))
        session.commit()
    return batch


def test_dashboard_needs_the_token_and_agrees_with_the_database(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        batch = _prepare(stack.runtime, "dash")
        expected = db_figures(stack.runtime)
        wrong = {"Authorization": "Basic " + base64.b64encode(b"ops:nope").decode()}
        with TestClient(create_app(stack.settings, stack.runtime)) as client:
            anonymous = client.get("/dashboard")
            bad = client.get("/dashboard", headers=wrong)
            page = client.get("/dashboard", headers=BASIC)
            bearer = client.get("/dashboard", headers={"Authorization": f"Bearer {TOKEN}"})
            data = client.get("/dashboard/data", headers=BASIC).json()
    assert anonymous.status_code == 401 and bad.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Basic ")  # the browser prompts
    assert page.status_code == 200 and bearer.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert EVIL not in page.text and "&lt;script&gt;" in page.text
    assert data["by_state"] == expected["by_state"]
    assert {k: data["funnel"][k] for k in FUNNEL_KEYS} == {k: expected[k] for k in FUNNEL_KEYS}
    assert data["funnel"]["rescued_cents"] == expected["rescued_cents"] == 2194
    assert data["oldest"]["PENDING"]["orderId"] == batch.ids["pending"]
    assert [f["orderId"] for f in data["failures"]] == [batch.ids["failed"]]


class Page(HTMLParser):
    """What a dumped DOM shows: ``tables[id][data-key]`` cell texts, texts by element id,
    the failure rows, and whether any script element exists."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, dict[str, str]] = {}
        self.texts: dict[str, str] = {}
        self.failure_rows: list[list[str]] = []
        self.scripts = 0
        self._table: str | None = None
        self._key: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._id: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        self.scripts += tag == "script"
        if tag == "table":
            self._table = attr.get("id")
        elif tag == "tr":
            self._key, self._row = attr.get("data-key"), []
        elif tag == "td":
            self._cell = []
        if tag in ("strong", "p") and attr.get("id"):
            self._id = attr["id"]
            self.texts[self._id] = ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._id is not None:
            self.texts[self._id] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None and self._row is not None:
            text = "".join(self._cell).strip()
            self._row.append(text)
            if self._table and self._key:
                self.tables.setdefault(self._table, {})[self._key] = text
            self._cell = None
        elif tag == "tr" and self._table == "failures" and self._row:
            self.failure_rows.append(self._row)
        elif tag in ("strong", "p"):
            self._id = None
        elif tag == "table":
            self._table = None


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no Chromium binary on PATH (looked for {', '.join(BROWSERS)})")


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}"]
    return subprocess.run([binary, *flags, *args], capture_output=True, text=True, timeout=90,
                          check=False)


def test_dashboard_in_headless_chromium_shows_the_database_numbers(
        database_url: str, shared_urls: tuple[str, str], tmp_path: Path) -> None:
    binary = _browser()
    with running_stack(database_url, shared_urls, tmp_path) as stack:
        batch = _prepare(stack.runtime, "web")
        expected = db_figures(stack.runtime)
        with serving(create_app(stack.settings, stack.runtime)) as base:
            host = base.removeprefix("http://")
            dom = _chromium(binary, tmp_path / "p1", "--dump-dom",
                            f"http://ops:{TOKEN}@{host}/dashboard")
            refused = _chromium(binary, tmp_path / "p2", "--dump-dom", f"{base}/dashboard")
            shot = tmp_path / "dashboard.png"
            _chromium(binary, tmp_path / "p3", "--window-size=1280,900", f"--screenshot={shot}",
                      f"http://ops:{TOKEN}@{host}/dashboard")
    page = Page()
    page.feed(dom.stdout)
    assert page.tables, f"no dashboard in the DOM: {dom.stdout[:300]!r} {dom.stderr[-300:]!r}"
    shown_states = {k: int(v) for k, v in page.tables["by-state"].items()}
    assert shown_states == {**{s.value: expected["by_state"].get(s, 0) for s in State},
                            "total": expected["accepted"]}
    shown_funnel = {k: int(page.tables["funnel"][k]) for k in FUNNEL_KEYS}
    assert shown_funnel == {k: expected[k] for k in FUNNEL_KEYS}
    assert page.texts["rescued"] == "21.94 USD" and page.texts["rescue-rate"] == "40.0%"
    assert batch.ids["pending"] in page.tables["oldest"]["PENDING"]
    assert page.scripts == 0  # the error text below is shown, never run
    assert [(row[0], row[1]) for row in page.failure_rows] == [(batch.ids["failed"], "FAILED")]
    assert EVIL in page.failure_rows[0][-1]
    assert "Amount rescued" not in refused.stdout  # no credentials, no page
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
