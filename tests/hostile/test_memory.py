"""What a client can make a worker hold in memory is bounded: every
connection's partial head and in-memory body is charged to the worker's
``limit_buffer_memory``; past it, bodies spool to disk at once and partial
heads get 503. Feeding a head or a chunked body in small pieces costs linear
time and no per-piece memory overhead.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from pathlib import Path

import pytest

from prefork.http.connection import HTTPConnection
from prefork.http.parser import Limits
from tests.hostile.kit import HELLO, assert_serving, exchange
from tests.server import HTTPReader, running, wait_until, workers_of

pytestmark = pytest.mark.timeout(60)


def spool_files(pid: int, folder: Path) -> int:
    """Open files of ``pid`` inside ``folder`` (spooled bodies, unlinked or not)."""
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(folder)):
                n += 1
        except OSError:
            pass
    return n


def test_slow_bodies_past_the_memory_limit_spool_to_disk(tmp_path):
    with running("testapp:app", "--limit-buffer-memory", str(1024 * 1024),
                 "--tmp-upload-dir", str(tmp_path)) as srv:
        (pid,) = workers_of(srv)
        socks = []
        for _ in range(40):
            s = srv.connect()
            # 200 KB of a 400 KB body: below spool_threshold (512 KiB), so
            # each would stay in memory: 8 MB held, against a 1 MiB limit.
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 400000\r\n\r\n"
                      + b"b" * 200000)
            socks.append(s)
        # About five fit in memory; the rest went to disk.
        wait_until(lambda: spool_files(pid, tmp_path) >= 34, timeout=15)
        assert exchange(srv, HELLO).status == 200
        for s in socks:
            s.sendall(b"b" * 200000)
        for s in socks:
            r = HTTPReader(s).read_response()
            assert r.status == 200
            assert json.loads(r.body)["sha256"] == hashlib.sha256(b"b" * 400000).hexdigest()
            s.close()
        wait_until(lambda: spool_files(pid, tmp_path) == 0, timeout=10)
        assert_serving(srv, [pid])


def test_partial_heads_past_the_memory_limit_get_503():
    with running("testapp:app", "--limit-buffer-memory", "300000") as srv:
        pids = workers_of(srv)
        lines = b"".join(b"X-%d: %s\r\n" % (i, b"v" * 8000) for i in range(25))   # 200 KB
        a = srv.connect()
        a.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n" + lines)
        time.sleep(0.3)
        with srv.connect() as b:
            b.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n" + lines)
            r = HTTPReader(b).read_response()
            assert r.status == 503
        # A request that arrives whole is served all the same ...
        assert exchange(srv, HELLO).status == 200
        # ... and the first client, once the second is gone, may finish its head.
        a.sendall(b"\r\n")
        r = HTTPReader(a).read_response()
        assert r.status == 200
        a.close()
        assert_serving(srv, pids)


def test_small_partial_heads_get_through_until_the_limit_is_overrun():
    # A browser's head split over two TCP segments is a small partial head:
    # it is refused only past twice the limit, large ones past the limit.
    with running("testapp:app", "--limit-buffer-memory", "100000") as srv:
        line = b"X-Pad: " + b"p" * 990 + b"\r\n"
        part = b"GET /hello HTTP/1.1\r\nHost: x\r\n" + line * 15          # ~15 KB each
        small = []
        for _ in range(8):                          # 120 KB: over the limit, not twice
            s = srv.connect()
            s.sendall(part)
            small.append(s)
            time.sleep(0.05)
        with srv.connect() as big:
            big.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n" + line * 20)   # 20 KB
            assert HTTPReader(big).read_response().status == 503
        for s in small:
            s.sendall(b"\r\n")
            assert HTTPReader(s).read_response().status == 200
            s.close()


def test_a_head_fed_in_small_pieces_costs_linear_time():
    # 1584 pieces of 125 bytes (a head of ~200 KB) against 1584 pieces of 9
    # bytes: the same number of calls, so a linear parser takes about as long
    # for both; one that rescans or recopies the whole buffer per piece takes
    # tens of times as long for the first.
    first = b"GET / HTTP/1.1\r\nHost: x\r\n"
    line = b"X-Pad: " + b"p" * 1991 + b"\r\n"

    def feed(pieces: list[bytes]) -> float:
        conn = HTTPConnection(Limits())
        conn.receive(first)
        t0 = time.perf_counter()
        for piece in pieces:
            conn.receive(piece)
            assert conn.next_request() is None
        return time.perf_counter() - t0

    big = [line[i:i + 125] for _ in range(99) for i in range(0, 2000, 125)]
    small = [b"Xabcdefgh"] * len(big)
    t_big = min(feed(big) for _ in range(3))
    t_small = min(feed(small) for _ in range(3))
    assert t_big < 5 * t_small, (t_big, t_small)


def test_a_chunked_body_of_one_byte_chunks_holds_no_per_chunk_memory():
    conn = HTTPConnection(Limits(), spool_threshold=1 << 20)
    conn.receive(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert conn.next_request() is None
    one = b"1\r\nx\r\n" * 10000
    for _ in range(10):
        conn.receive(one)
        assert conn.next_request() is None
    body = conn._body
    assert body is not None and body.in_memory == 100000
    # One buffer, not 100,000 bytes objects (~33 bytes each plus a pointer).
    assert sys.getsizeof(body._mem) < 2 * 100000
