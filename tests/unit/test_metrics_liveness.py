"""Heartbeat stamps and ``flexmit health worker`` (exit 0 live, 1 not)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from worker import heartbeat
from worker.cli import main


def run_health(directory: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["health", "worker", "--dir", str(directory), *args])
    return result.exit_code, result.output


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_fresh_stamp_passes_and_a_stale_one_fails(tmp_path: Path) -> None:
    heartbeat.stamp("w1@host", "heartbeat", main_pid=os.getpid(), directory=tmp_path)
    assert run_health(tmp_path, "--max-age", "5")[0] == 0
    old = time.time() - 30
    heartbeat.stamp("w1@host", "heartbeat", now=old, directory=tmp_path)
    code, output = run_health(tmp_path, "--max-age", "5")
    assert code == 1
    assert "w1@host: NOT LIVE" in output and "limit 5s" in output


def test_no_stamp_at_all_fails(tmp_path: Path) -> None:
    code, output = run_health(tmp_path / "empty")
    assert code == 1 and "no heartbeat stamp" in output


def test_node_is_chosen_by_full_name_or_by_the_part_before_the_at(tmp_path: Path) -> None:
    heartbeat.stamp("w1@a", "heartbeat", main_pid=os.getpid(), directory=tmp_path)
    heartbeat.stamp("w2@a", "heartbeat", now=time.time() - 300, directory=tmp_path)
    assert run_health(tmp_path, "--node", "w1")[0] == 0
    assert run_health(tmp_path, "--node", "w1@a")[0] == 0
    assert run_health(tmp_path, "--node", "w2")[0] == 1
    assert run_health(tmp_path, "--node", "w3")[0] == 1  # never seen: not live
    assert run_health(tmp_path)[0] == 1  # every node here must be live


def test_a_node_whose_main_process_is_gone_fails_at_once(tmp_path: Path) -> None:
    heartbeat.stamp("w1@host", "start", main_pid=dead_pid(), directory=tmp_path)
    code, output = run_health(tmp_path, "--max-age", "600")
    assert code == 1 and "is gone" in output


def test_child_stamps_keep_the_main_pid(tmp_path: Path) -> None:
    heartbeat.stamp("w1@host", "start", main_pid=4242, directory=tmp_path)
    heartbeat.stamp("w1@host", "heartbeat", directory=tmp_path)
    found = heartbeat.read_stamp(heartbeat.stamp_path("w1@host", tmp_path))
    assert found is not None and (found.pid, found.source) == (4242, "heartbeat")


def test_defaults_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(heartbeat.ENV_MAX_AGE, raising=False)
    monkeypatch.delenv(heartbeat.ENV_INTERVAL, raising=False)
    assert heartbeat.max_age_s() == 60 and heartbeat.interval_s() == 10
    monkeypatch.setenv(heartbeat.ENV_MAX_AGE, "5")
    monkeypatch.setenv(heartbeat.ENV_DIR, str(tmp_path))
    heartbeat.stamp("w9@x", "heartbeat", now=time.time() - 6)
    assert run_health(tmp_path)[0] == 1  # 6 s old against FLEXMIT_HEARTBEAT_MAX_AGE_S=5
    # The queue name ends with the node: the file broker matches queues by name suffix.
    assert heartbeat.queue_name("w9@x") == "flexmit.hb.w9@x"
    assert not heartbeat.queue_name("w9@x").endswith(".flexmit")
