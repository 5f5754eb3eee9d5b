"""Deadlines only move for bytes of a request: empty lines before a request
do not restart the header or keep-alive timer, and a body trickled slower
than ``body_min_rate`` gets 408 even if it never pauses for ``body_timeout``.
"""

from __future__ import annotations

import time

import pytest

from tests.hostile.kit import assert_serving
from tests.server import HTTPReader, running, workers_of

pytestmark = pytest.mark.timeout(60)


def closed_after(sock, reader: HTTPReader, send_every: float, data: bytes, limit: float) -> float:
    """Send the bytes of ``data`` in turn, one piece every ``send_every``
    seconds, until the server closes (or answers); the seconds that took,
    or ``limit`` if it never did. ``data`` is a piece, or a list to cycle."""
    pieces = data if isinstance(data, list) else [data]
    start = time.monotonic()
    sock.settimeout(send_every)
    n = 0
    while time.monotonic() - start < limit:
        try:
            sock.sendall(pieces[n % len(pieces)])
            n += 1
        except (BrokenPipeError, ConnectionResetError):
            break
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        reader.buf += chunk
        if not chunk or b"\r\n\r\n" in reader.buf:
            break
    return time.monotonic() - start


def test_empty_lines_do_not_extend_the_keepalive_deadline():
    with running("testapp:app", "--keepalive", "2") as srv:
        with srv.connect() as s:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = HTTPReader(s)
            assert reader.read_response().status == 200
            # An empty line every 0.5 s: before, each one restarted the 2 s
            # keep-alive timer, so the connection was held for as long as
            # they came. Three of them (within the limit on empty lines).
            start = time.monotonic()
            s.settimeout(5)
            for _ in range(3):
                time.sleep(0.5)
                s.sendall(b"\r\n")
            assert s.recv(1) == b""
            assert time.monotonic() - start < 3.2   # 2 s + the 0.5 s sweep, not 1.5 + 2


def test_a_client_sending_only_empty_lines_is_closed_by_the_header_timeout():
    with running("testapp:app", "--header-timeout", "1") as srv:
        with srv.connect() as s:
            # A CR, then an LF 0.3 s later: an empty line every 0.6 s.
            reader = HTTPReader(s)
            took = closed_after(s, reader, 0.3, [b"\r", b"\n"], limit=10)
            assert took < 3, took
            assert reader.buf == b""        # closed quietly: no request was begun


def test_more_than_a_few_empty_lines_is_400():
    with running("testapp:app") as srv:
        pids = workers_of(srv)
        with srv.connect() as s:
            s.sendall(b"\r\n" * 4 + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            reader = HTTPReader(s)
            assert reader.read_response().status == 200
            s.sendall(b"\r\n" * 50 + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.read_response().status == 400
        assert_serving(srv, pids)


def test_a_body_trickled_below_the_minimum_rate_gets_408():
    with running("testapp:app", "--body-timeout", "1", "--body-min-rate", "100") as srv:
        pids = workers_of(srv)
        with srv.connect() as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            reader = HTTPReader(s)
            # 5 bytes every 0.2 s: never a pause of body_timeout, but 25 bytes/s.
            took = closed_after(s, reader, 0.2, b"12345", limit=15)
            assert took < 4, took   # 1 s + 25t/100 s = t at t = 1.33 s; + the sweep
            assert reader.read_response().status == 408
        assert_serving(srv, pids)


def test_a_body_at_a_fair_rate_is_not_cut():
    with running("testapp:app", "--body-timeout", "1", "--body-min-rate", "100") as srv:
        with srv.connect() as s:
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n")
            for _ in range(10):             # 100 bytes every 0.25 s: 400 bytes/s
                time.sleep(0.25)
                s.sendall(b"a" * 100)
            r = HTTPReader(s).read_response()
            assert r.status == 200 and b'"length": 1000' in r.body
