"""Several worker processes behind one port (`python -m gateway --workers N`).

The supervisor (the process started) binds, per worker, one API and one admin socket with
SO_REUSEPORT (the kernel spreads new connections over them), then forks the workers. Each worker is
a whole gateway: its own event loop, pool, schema cache and LISTEN connection, so `NOTIFY pgrst`
reaches every one. Nothing is exec'd: the workers inherit the database URL and the JWT secret in
memory, never through argv or a new environment.

- /ready answers 200 only once every worker has loaded its schema cache (a shared byte per worker),
  so a client that waited for /ready is never served by a worker still starting.
- SIGINT/SIGTERM to the supervisor: forwarded to every worker as SIGTERM; each drains and stops; the
  supervisor exits when all have, SIGKILLing any still alive after the grace period.
- A worker that exits on its own stops the others and the supervisor (exit 1): the one process a
  supervisor such as `waybill run` watches tells the truth about the service.
- A supervisor killed outright (SIGKILL) takes its workers with it (PR_SET_PDEATHSIG): no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

from waybill import log

WORKERS_ENV = "WAYBILL_GATEWAY_WORKERS"
STOP_GRACE_SECONDS = 15
_PR_SET_PDEATHSIG = 1


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def bind(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on the same address (SO_REUSEPORT); port 0 picks one for all."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(addr)
            addr = sock.getsockname()  # the port chosen by the first bind, for the others
            sock.listen(2048)
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


class ReadyBoard:
    """One shared byte per worker (anonymous shared memory, made before the fork): 1 once ready."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._mem = mmap.mmap(-1, count)

    def mark(self, index: int) -> None:
        self._mem[index] = 1

    def all_ready(self) -> bool:
        return self._mem[: self.count] == b"\x01" * self.count


def _die_with_parent(parent: int) -> None:
    """SIGTERM this worker when the supervisor dies, however it dies (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the supervisor died before prctl took effect
        os._exit(0)


def supervise(
    count: int,
    api: list[socket.socket],
    admin: list[socket.socket],
    run_worker: Callable[[int, socket.socket, socket.socket, ReadyBoard], int],
) -> int:
    """Fork `count` workers (worker i serves api[i] and admin[i]); wait for them; the exit code."""
    logger = log.get_logger()
    board = ReadyBoard(count)
    parent = os.getpid()
    children: dict[int, int] = {}
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with_parent(parent)
                for i, sock in enumerate(api + admin):
                    if i not in (index, count + index):
                        sock.close()
                code = run_worker(index, api[index], admin[index], board)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:  # noqa: BLE001 - reported, then the worker exits
                logger.exception("gateway_server_failed", worker=index)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = index
    for sock in api + admin:  # the workers hold them; a dead worker's share goes to the others
        sock.close()

    stopping = False
    failed = False

    def stop_all(sig: int = signal.SIGTERM) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            stop_all()
            signal.alarm(STOP_GRACE_SECONDS)

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        stop_all(signal.SIGKILL)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_alarm)
    logger.info("gateway_workers_started", workers=count, pids=sorted(children))
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        index = children.pop(pid, None)
        if index is None:
            continue
        code = os.waitstatus_to_exitcode(status)
        if not stopping:
            logger.error("gateway_worker_exited", worker=index, pid=pid, exit_code=code)
            failed = True
            on_signal(signal.SIGTERM, None)
        elif code not in (0, -signal.SIGTERM):  # SIGTERM before its loop took over: still a clean stop
            failed = True
    signal.alarm(0)
    return 1 if failed else 0
