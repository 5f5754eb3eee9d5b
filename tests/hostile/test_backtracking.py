"""Header, trailer and chunk lines full of spaces or tabs with one bad byte at
the end cost linear time: they are refused as fast as a benign malformed line
of the same size, and they do not stall the worker's loop for other clients.

Before, the field regex tried every split of the run of spaces: four such
heads of 8 KB held a one-worker server for about five seconds. Stalls are
measured as a ratio against the same traffic made benign, in the same test.
"""

from __future__ import annotations

import pytest

from tests.hostile.kit import HELLO, assert_serving, exchange, parallel, timed
from tests.server import running, workers_of

pytestmark = pytest.mark.timeout(60)

# The generous factor a hostile batch may take over the benign one.
FACTOR = 20
SLACK = 0.05   # seconds: scheduling noise on a small batch


def head_with(line: bytes) -> bytes:
    return b"GET /hello HTTP/1.1\r\nHost: x\r\n" + line + b"\r\n\r\n"


def chunked_with(size_line: bytes = b"5", trailer: bytes = b"") -> bytes:
    return (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + size_line + b"\r\nhello\r\n0\r\n" + trailer + b"\r\n")


def assert_refused_as_fast_as_benign(bad: bytes, good: bytes) -> None:
    """Four copies of ``bad`` at once are all 400, take no more than FACTOR
    times four of ``good``, and leave the same worker serving."""
    with running("testapp:app") as srv:
        pids = workers_of(srv)
        assert [r.status if r else None for r in parallel(srv, [bad] * 4)] == [400] * 4
        t_good = timed(lambda: parallel(srv, [good] * 4))
        t_bad = timed(lambda: parallel(srv, [bad] * 4))
        assert t_bad <= FACTOR * t_good + SLACK, (t_bad, t_good)
        assert_serving(srv, pids)


@pytest.mark.parametrize("hostile, benign", [
    # OWS then a control byte: the old pattern backtracked over the spaces.
    (b"X: " + b" " * 8000 + b"\x01", b"X: " + b"a" * 8000 + b"\x01"),
    (b"X:" + b"\t " * 4000 + b"\x7f", b"X:" + b"ab" * 4000 + b"\x7f"),
    (b"X-" + b"a" * 8000 + b" ", b"X-" + b"a" * 8000 + b"\x00"),
], ids=["spaces", "tabs", "name"])
def test_hostile_header_lines_cost_what_benign_ones_do(hostile, benign):
    assert_refused_as_fast_as_benign(head_with(hostile), head_with(benign))


def test_hostile_heads_do_not_stall_other_clients():
    with running("testapp:app") as srv:
        bad = head_with(b"X: " + b" " * 8000 + b"\x01")
        t_hello = timed(lambda: exchange(srv, HELLO), repeat=5)
        t_mixed = timed(lambda: parallel(srv, [bad] * 4 + [HELLO]))
        # Four refused heads and one hello, against one hello on its own.
        assert t_mixed <= FACTOR * 5 * t_hello + SLACK, (t_mixed, t_hello)


def test_hostile_trailer_lines_cost_what_benign_ones_do():
    assert_refused_as_fast_as_benign(chunked_with(trailer=b"X: " + b" " * 8000 + b"\x01\r\n"),
                                     chunked_with(trailer=b"X: " + b"a" * 8000 + b"\x01\r\n"))


def test_hostile_chunk_extensions_cost_what_benign_ones_do():
    assert_refused_as_fast_as_benign(chunked_with(b"5" + b";a" * 10 + b" " * 4000 + b"!"),
                                     chunked_with(b"5" + b";a" * 10 + b"b" * 4000 + b"!"))


def test_trailers_obey_the_header_limits():
    with running("testapp:app", "--limit-request-field-size", "1000",
                 "--limit-request-fields", "10") as srv:
        ok = exchange(srv, chunked_with(trailer=b"X-Sum: " + b"a" * 900 + b"\r\n"))
        assert ok is not None and ok.status == 200
        # A trailer line over limit_request_field_size, as a header line would be.
        long_line = exchange(srv, chunked_with(trailer=b"X-Sum: " + b"a" * 2000 + b"\r\n"))
        assert long_line is not None and long_line.status == 431
        many = b"".join(b"X-%d: v\r\n" % i for i in range(11))
        too_many = exchange(srv, chunked_with(trailer=many))
        assert too_many is not None and too_many.status == 431
