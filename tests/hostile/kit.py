"""Shared pieces of the hostile tests: a one-worker server whose worker must
survive, and raw exchanges timed against a normal request in the same test.

Each test here plays an attacker from outside, over real sockets, against a
real ``prefork start``. "The worker survived" is checked by its pid: a worker
that died and was respawned has a new one.
"""

from __future__ import annotations

import socket
import statistics
import time
from collections.abc import Callable

from tests.server import HTTPReader, Response, ServerProcess, workers_of

HELLO = b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def exchange(srv: ServerProcess, raw: bytes, timeout: float = 10.0) -> Response | None:
    """Send ``raw`` on a fresh connection; the response, or None if the server
    closed without one."""
    with socket.create_connection((srv.host, srv.port), timeout=timeout) as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            return HTTPReader(s).read_response()
        except (EOFError, ConnectionResetError) as e:
            if isinstance(e, EOFError) and "got b''" not in str(e):
                raise AssertionError(f"truncated response: {e}") from None
            return None


def assert_serving(srv: ServerProcess, pids: list[int]) -> None:
    """The same worker is still there and answers a normal request."""
    r = exchange(srv, HELLO)
    assert r is not None and r.status == 200 and r.body == b"Hello, World!"
    assert workers_of(srv) == pids, f"the worker was replaced:\n{srv.log[-3000:]}"


def timed(fn: Callable[[], object], repeat: int = 3) -> float:
    """Median wall time of ``fn`` over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def parallel(srv: ServerProcess, raws: list[bytes], timeout: float = 30.0) -> list[Response | None]:
    """Send every request on its own connection at once, then read them all."""
    socks = [socket.create_connection((srv.host, srv.port), timeout=timeout) for _ in raws]
    try:
        for s, raw in zip(socks, raws, strict=True):
            s.sendall(raw)
        out: list[Response | None] = []
        for s in socks:
            try:
                out.append(HTTPReader(s).read_response())
            except (EOFError, ConnectionResetError):
                out.append(None)
        return out
    finally:
        for s in socks:
            s.close()
