"""Child processes: start one, wait until it is ready, stop it. One home for what `make run`, the
test fixtures and the benchmarks all do with the HTTP front (and later the dispatcher).

- `start` runs a command (argv never holds a secret: pass those in `env`).
- `wait_until` polls a condition with a deadline (never a bare sleep), failing early if the child died.
- `http_ok` is the usual readiness condition: a URL answers 200.
- `stop` asks politely (SIGTERM, or SIGINT for a foreground program), then kills after a grace period.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

import httpx

T = TypeVar("T")


class ChildExited(RuntimeError):
    """The child exited while we were waiting for it to be ready."""


class NotReady(RuntimeError):
    """The condition did not hold before the deadline (or the wait was cancelled)."""


def start(
    args: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    output: IO[Any] | int | None = None,
    **popen: Any,
) -> subprocess.Popen:
    """Start `args`; `output` receives stdout and stderr together (a file, PIPE, or inherited if None)."""
    if output is not None:
        popen.setdefault("stdout", output)
        popen.setdefault("stderr", subprocess.STDOUT)
    return subprocess.Popen(list(args), env=dict(env) if env is not None else None, cwd=cwd, **popen)


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float,
    what: str,
    child: subprocess.Popen | None = None,
    interval: float = 0.05,
    cancel: threading.Event | None = None,
    describe_exit: Callable[[], str] | None = None,
) -> T:
    """Poll `condition` until it returns something truthy (returned) or `timeout` seconds pass.

    Raises ChildExited if `child` exits first (`describe_exit` may add e.g. the tail of its log),
    NotReady at the deadline or when `cancel` is set (both RuntimeErrors: the CLI reports them).
    """
    deadline = time.monotonic() + timeout
    while True:
        if child is not None and child.poll() is not None:
            extra = f": {describe_exit()}" if describe_exit else ""
            raise ChildExited(f"{what}: the process exited with {child.returncode}{extra}")
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline or (cancel is not None and cancel.is_set()):
            raise NotReady(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_ok(url: str) -> Callable[[], bool]:
    """A readiness condition: GET `url` answers 200 (connection errors count as not yet)."""

    def check() -> bool:
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def stop(child: subprocess.Popen, *, grace: float = 15.0, sig: int = signal.SIGTERM) -> int:
    """Send `sig`, wait up to `grace` seconds, then SIGKILL. Returns the exit code. Idempotent."""
    if child.poll() is None:
        child.send_signal(sig)
        try:
            return child.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            child.kill()
    return child.wait()


def stop_all(children: Sequence[subprocess.Popen], *, grace: float = 10.0) -> None:
    """Stop several children at once: signal them all first, then wait for each (so the grace
    periods overlap instead of adding up)."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    for child in children:
        stop(child, grace=grace)
