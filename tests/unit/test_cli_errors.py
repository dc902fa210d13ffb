"""A new user who forgot `flexmit migrate`, or whose database is down, gets a sentence."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from worker.cli import main
from worker.runtime import reset_runtime
from worker.settings import get_settings


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    values = {"FLEXMIT_DATABASE_URL": f"sqlite:///{tmp_path / 'never-migrated.db'}",
              "FLEXMIT_INTAKE_TOKEN": "test-intake-token-0123456789"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    reset_runtime()
    yield values
    get_settings.cache_clear()
    reset_runtime()


def test_commands_on_an_unmigrated_database_say_to_migrate(env: dict[str, str],
                                                           tmp_path: Path) -> None:
    batch = tmp_path / "b.csv"
    batch.write_text("orderId,amount\nx,1\n")
    for args in (["status"], ["submit", str(batch)], ["api", "--port", "1"]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 1, result.output
        assert "run `flexmit migrate` first" in result.output
        assert "Traceback" not in result.output


def test_after_migrate_the_same_command_works(env: dict[str, str]) -> None:
    assert CliRunner().invoke(main, ["migrate"]).exit_code == 0
    result = CliRunner().invoke(main, ["status"])
    assert result.exit_code == 0, result.output


def test_an_unreachable_database_is_named_not_traced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXMIT_DATABASE_URL", "postgresql://nobody@127.0.0.1:1/none")
    get_settings.cache_clear()
    reset_runtime()
    try:
        result = CliRunner().invoke(main, ["status"])
    finally:
        get_settings.cache_clear()
        reset_runtime()
    assert result.exit_code == 1
    assert "the database is not usable" in result.output


def test_a_bad_setting_is_named_with_its_rule_never_its_value(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEXMIT_EVALUATE_BATCH", "0")
    monkeypatch.setenv("FLEXFACTOR_RATE_LIMIT", "-7.25")
    get_settings.cache_clear()
    reset_runtime()
    try:
        result = CliRunner().invoke(main, ["status"])
    finally:
        get_settings.cache_clear()
        reset_runtime()
    assert result.exit_code == 1
    assert "invalid settings" in result.output and "Traceback" not in result.output
    assert "FLEXMIT_EVALUATE_BATCH: Input should be greater than or equal to 1" in result.output
    assert "FLEXFACTOR_RATE_LIMIT" in result.output and "-7.25" not in result.output
