"""waybill/process.py: the one start / wait-until-ready / stop used by make run, fixtures and benchmarks."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from waybill import process

PY = sys.executable


def test_wait_until_returns_the_condition_value_once_true() -> None:
    calls = iter([0, None, "ready"])
    assert process.wait_until(lambda: next(calls), timeout=5, what="x", interval=0.001) == "ready"


def test_wait_until_fails_fast_when_the_child_exits() -> None:
    child = process.start([PY, "-c", "import sys; sys.exit(3)"])
    child.wait()
    with pytest.raises(process.ChildExited, match="exited with 3: last words"):
        process.wait_until(
            lambda: False, timeout=30, what="x", child=child, describe_exit=lambda: "last words"
        )


def test_wait_until_gives_up_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(process.NotReady, match="waiting for nothing"):
        process.wait_until(lambda: False, timeout=0.2, what="nothing", interval=0.01)
    assert time.monotonic() - started < 5


def test_stop_kills_a_child_that_ignores_the_signal() -> None:
    code = "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"
    child = process.start([PY, "-c", code], output=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "up"  # the handler is in place
    assert process.stop(child, grace=0.3) == -signal.SIGKILL
    assert process.stop(child) == -signal.SIGKILL  # idempotent


def test_stop_all_lets_children_exit_cleanly() -> None:
    children = [process.start([PY, "-c", "import time; time.sleep(60)"]) for _ in range(3)]
    process.stop_all(children, grace=10)
    assert [c.returncode for c in children] == [-signal.SIGTERM] * 3
