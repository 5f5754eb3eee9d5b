"""Thousands of open connections do not starve a fresh request.

The tight number (< 10 ms) is measured by bench/, not here: this test only
checks the behaviour with a bound loose enough for a busy CI machine.
"""

from __future__ import annotations

import resource
import time

import pytest
from server import HTTPReader, get, running


def _room_for(n: int) -> bool:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
        except (ValueError, OSError):
            return False
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= n


@pytest.mark.timeout(120)
def test_idle_and_silent_connections_do_not_starve_a_fresh_request():
    if not _room_for(2300):
        pytest.skip("this test process may not open 2300 files (ulimit -n)")
    with running("testapp:app", "--threads", "4", "--keepalive", "60",
                 "--header-timeout", "60", "--backlog", "4096") as s:
        idle, silent = [], []
        try:
            for _ in range(1000):
                c = s.connect()
                c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
                idle.append((c, HTTPReader(c)))
            for _c, reader in idle:
                assert reader.read_response().status == 200
            silent = [s.connect() for _ in range(1000)]
            time.sleep(0.5)
            worst = 0.0
            for _ in range(20):
                t0 = time.monotonic()
                assert get(s, "/hello").status == 200
                worst = max(worst, time.monotonic() - t0)
            assert worst < 0.5, f"a fresh request took {worst * 1000:.0f} ms"
            # The idle connections are still usable.
            c, reader = idle[0]
            c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.read_response().body == b"Hello, World!"
        finally:
            for c, _ in idle:
                c.close()
            for c in silent:
                c.close()
