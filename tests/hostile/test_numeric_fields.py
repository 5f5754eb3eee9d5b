"""Client bytes turned into numbers (Content-Length, chunk sizes) never raise
out of the parser: an over-long run of digits gets a 4xx, never a dead worker.

Before the fix, a Content-Length of 4,400 leading zeros made ``int()`` raise
ValueError in the loop: the worker died, and five of them queued at once made
the master stop the whole server as a boot-failure loop.
"""

from __future__ import annotations

import json

import pytest

from tests.hostile.kit import assert_serving, exchange, parallel
from tests.server import running, workers_of

pytestmark = pytest.mark.timeout(60)


def post(length_field: str, body: bytes) -> bytes:
    return (f"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: {length_field}\r\n"
            "Connection: close\r\n\r\n").encode() + body


def test_content_length_with_thousands_of_leading_zeros_is_read_as_its_value():
    with running("testapp:app") as srv:
        pids = workers_of(srv)
        r = exchange(srv, post("0" * 4400 + "5", b"hello"))
        assert r is not None and r.status == 200
        assert json.loads(r.body)["length"] == 5
        assert_serving(srv, pids)


def test_a_burst_of_huge_numbers_keeps_the_worker_and_the_server():
    with running("testapp:app", "--max-boot-failures", "2") as srv:
        pids = workers_of(srv)
        raws = [post("0" * 5000, b""), post("9" * 5000, b""), post("1" + "0" * 4400, b""),
                post("0" * 4300 + "1" * 19, b""), post("0" * 8000 + "1", b"x")] * 2
        statuses = [r.status if r else None for r in parallel(srv, raws)]
        assert statuses == [200, 413, 413, 413, 200] * 2
        assert_serving(srv, pids)
        assert "Traceback" not in srv.log


@pytest.mark.parametrize("size_line", [
    b"0" * 4400 + b"5",          # more than 16 hex digits, even if they are zeros
    b"f" * 17,
    b"5" + b" " * 4000 + b"!",     # trailing junk after a long run of BWS
    b"-5", b"0x5", b"+5",
])
def test_malformed_or_huge_chunk_sizes_are_400(size_line):
    with running("testapp:app") as srv:
        pids = workers_of(srv)
        raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + size_line + b"\r\nhello\r\n0\r\n\r\n")
        r = exchange(srv, raw)
        assert r is not None and r.status == 400
        assert_serving(srv, pids)
