"""HTTPConnection: request assembly, pipelining, body spooling and 100-continue."""

from __future__ import annotations

import io
import os
import stat

import pytest

from prefork.http import connection as connection_mod
from prefork.http.connection import BodyBuffer, BufferedRequest, HTTPConnection
from prefork.http.errors import BadRequest, BodyTooLarge, RequestError
from prefork.http.parser import Limits

GET = b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n"
POST_CL = b"POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
POST_CHUNKED = (b"POST /three HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-T: v\r\n\r\n")
EXPECT = (b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n"
          b"Expect: 100-continue\r\n\r\n")


def drain(conn: HTTPConnection) -> list[BufferedRequest]:
    out = []
    while (req := conn.next_request()) is not None:
        out.append(req)
    return out


def feed(conn: HTTPConnection, pieces) -> list[BufferedRequest]:
    """Feed pieces the way the worker does: receive, then drain complete requests."""
    out: list[BufferedRequest] = []
    for piece in pieces:
        conn.receive(piece)
        out += drain(conn)
    return out


def summary(reqs: list[BufferedRequest]) -> list[tuple[str, str, bytes, int]]:
    return [(r.head.method, r.head.path, r.body.read(), r.body_length) for r in reqs]


EXPECTED_THREE = [("GET", "/one", b"", 0), ("POST", "/two", b"hello world", 11),
                  ("POST", "/three", b"hello world", 11)]


def test_pipelined_requests_come_out_in_order_from_one_receive():
    conn = HTTPConnection(Limits())
    conn.receive(GET + POST_CL + POST_CHUNKED + GET.replace(b"/one", b"/four"))
    reqs = drain(conn)
    assert summary(reqs) == EXPECTED_THREE + [("GET", "/four", b"", 0)]
    assert conn.idle
    assert not conn.waiting_for_body


def test_pipelined_request_after_a_partial_body_is_kept_for_later():
    conn = HTTPConnection(Limits())
    conn.receive(POST_CL[:-3])
    assert conn.next_request() is None
    conn.receive(POST_CL[-3:] + GET)
    assert summary(drain(conn)) == [("POST", "/two", b"hello world", 11), ("GET", "/one", b"", 0)]


def test_bytes_received_before_next_request_is_called_keep_their_order():
    conn = HTTPConnection(Limits())
    conn.receive(POST_CHUNKED[:-5])
    assert conn.next_request() is None
    conn.receive(POST_CHUNKED[-5:])         # completes the body ...
    conn.receive(GET)                        # ... and more arrives before the drain
    assert summary(drain(conn)) == [("POST", "/three", b"hello world", 11),
                                    ("GET", "/one", b"", 0)]


@pytest.mark.parametrize("raw", [GET, POST_CL, POST_CHUNKED], ids=["get", "length", "chunked"])
def test_request_split_at_every_byte_boundary_parses_the_same(raw):
    whole = summary(feed(HTTPConnection(Limits()), [raw]))
    for i in range(len(raw) + 1):
        got = summary(feed(HTTPConnection(Limits()), [raw[:i], raw[i:]]))
        assert got == whole, f"split at {i}"


def test_pipeline_split_at_every_byte_boundary_parses_the_same():
    raw = GET + POST_CL + POST_CHUNKED
    for i in range(len(raw) + 1):
        got = summary(feed(HTTPConnection(Limits()), [raw[:i], raw[i:]]))
        assert got == EXPECTED_THREE, f"split at {i}"


def test_pipeline_fed_one_byte_at_a_time_parses_the_same():
    raw = GET + POST_CL + POST_CHUNKED
    conn = HTTPConnection(Limits(), spool_threshold=4)
    got = summary(feed(conn, [raw[i:i + 1] for i in range(len(raw))]))
    assert got == EXPECTED_THREE
    assert conn.idle


def test_incomplete_head_returns_none_and_is_not_idle():
    conn = HTTPConnection(Limits())
    assert conn.idle
    conn.receive(GET[:10])
    assert conn.next_request() is None
    assert not conn.idle
    assert not conn.waiting_for_body


def test_content_length_body_is_read_in_full():
    conn = HTTPConnection(Limits())
    conn.receive(POST_CL[:-11])
    assert conn.next_request() is None
    assert conn.waiting_for_body
    for b in b"hello worl":
        conn.receive(bytes([b]))
        assert conn.next_request() is None
    conn.receive(b"d")
    req = conn.next_request()
    assert req is not None
    assert req.body.read() == b"hello world"
    assert req.body_length == 11
    assert req.head.content_length == 11


def test_chunked_body_is_decoded():
    conn = HTTPConnection(Limits())
    conn.receive(POST_CHUNKED)
    req = conn.next_request()
    assert req is not None
    assert req.head.chunked
    assert req.body.read() == b"hello world"
    assert req.body_length == 11


def test_request_without_body_gets_an_empty_body():
    conn = HTTPConnection(Limits())
    conn.receive(GET)
    req = conn.next_request()
    assert req.body.read() == b""
    assert req.body_length == 0


def test_body_never_contains_bytes_past_its_end():
    conn = HTTPConnection(Limits(), spool_threshold=4)
    conn.receive(POST_CL[:-4])
    conn.next_request()
    conn.receive(POST_CL[-4:] + b"GET /next")
    req = conn.next_request()
    assert req.body.read() == b"hello world"
    assert req.body.read() == b""
    assert conn.buf == b"GET /next"


def _spooled_assertions(body, content: bytes) -> None:
    assert not isinstance(body, io.BytesIO)
    fd = body.fileno()
    assert stat.S_ISREG(os.fstat(fd).st_mode)
    assert body.tell() == 0
    assert body.read() == content


def test_content_length_body_over_the_spool_threshold_goes_to_a_temp_file(tmp_path):
    body = bytes(range(256)) * 40
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
    conn = HTTPConnection(Limits(), spool_threshold=1000, tmpdir=str(tmp_path))
    reqs = feed(conn, [raw] + [body[i:i + 700] for i in range(0, len(body), 700)])
    assert len(reqs) == 1
    _spooled_assertions(reqs[0].body, body)
    assert reqs[0].body_length == len(body)
    reqs[0].body.close()


def test_chunked_body_over_the_spool_threshold_goes_to_a_temp_file():
    data = os.urandom(5000)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + 333]), data[i:i + 333])
                      for i in range(0, len(data), 333))
    raw = (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
           + chunks + b"0\r\n\r\n")
    conn = HTTPConnection(Limits(), spool_threshold=1024)
    reqs = feed(conn, [raw[i:i + 512] for i in range(0, len(raw), 512)])
    assert len(reqs) == 1
    _spooled_assertions(reqs[0].body, data)
    assert reqs[0].body_length == len(data)
    reqs[0].body.close()


def test_body_over_the_spool_threshold_arriving_with_its_head_is_spooled():
    # The setting's contract: "Request bodies larger than this many bytes are
    # buffered in a temporary file instead of memory" -- however they arrive.
    body = b"x" * 5000
    raw = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5000\r\n\r\n" + body
    conn = HTTPConnection(Limits(), spool_threshold=1024)
    conn.receive(raw)
    req = conn.next_request()
    _spooled_assertions(req.body, body)


def test_body_under_the_spool_threshold_stays_in_memory():
    conn = HTTPConnection(Limits(), spool_threshold=1024)
    conn.receive(POST_CL[:-5])
    conn.next_request()
    conn.receive(POST_CL[-5:])
    req = conn.next_request()
    assert isinstance(req.body, io.BytesIO)
    assert req.body.read() == b"hello world"


def test_body_buffer_spools_once_past_threshold():
    buf = BodyBuffer(threshold=10)
    buf.write(b"0123456789")
    assert not buf.spooled
    buf.write(b"")
    assert not buf.spooled
    buf.write(b"a")
    assert buf.spooled
    buf.write(b"bc")
    f = buf.finish()
    assert f.read() == b"0123456789abc"
    assert buf.size == 13
    buf.discard()
    assert f.closed


def test_continue_needed_when_expect_and_no_body_bytes_yet():
    conn = HTTPConnection(Limits())
    conn.receive(EXPECT)
    assert conn.next_request() is None
    assert conn.continue_needed
    conn.receive(b"da")
    assert conn.next_request() is None
    assert not conn.continue_needed
    conn.receive(b"ta")
    req = conn.next_request()
    assert req.body.read() == b"data"
    assert not conn.continue_needed


def test_continue_not_needed_when_body_bytes_came_with_the_head():
    conn = HTTPConnection(Limits())
    conn.receive(EXPECT + b"d")
    assert conn.next_request() is None
    assert conn.waiting_for_body
    assert not conn.continue_needed


def test_continue_needed_for_chunked_body_with_expect():
    conn = HTTPConnection(Limits())
    conn.receive(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    assert conn.next_request() is None
    assert conn.continue_needed


def test_continue_not_needed_without_expect():
    conn = HTTPConnection(Limits())
    conn.receive(POST_CL[:-11])
    assert conn.next_request() is None
    assert conn.waiting_for_body
    assert not conn.continue_needed


def test_continue_not_needed_when_there_is_no_body():
    conn = HTTPConnection(Limits())
    conn.receive(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n"
                 b"Expect: 100-continue\r\n\r\n")
    assert conn.next_request() is not None
    assert not conn.continue_needed


def test_continue_not_needed_on_http10():
    conn = HTTPConnection(Limits())
    conn.receive(b"POST / HTTP/1.0\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
    assert conn.next_request() is None
    assert not conn.continue_needed


def test_close_discards_the_half_received_request_and_its_temp_file(monkeypatch):
    made = []
    real = connection_mod.tempfile.TemporaryFile

    def recording(*args, **kwargs):
        f = real(*args, **kwargs)
        made.append(f)
        return f

    monkeypatch.setattr(connection_mod.tempfile, "TemporaryFile", recording)
    conn = HTTPConnection(Limits(), spool_threshold=8)
    conn.receive(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + b"x" * 50)
    assert conn.next_request() is None
    assert len(made) == 1 and not made[0].closed
    conn.close()
    assert made[0].closed
    assert conn.idle
    assert not conn.waiting_for_body
    assert conn.buf == b""
    # The connection starts afresh: the rest of the old body is not a request.
    conn.receive(GET)
    assert conn.next_request().head.path == "/one"


def test_close_drops_buffered_pipelined_bytes():
    conn = HTTPConnection(Limits())
    conn.receive(GET + b"GET /half")
    conn.next_request()
    conn.close()
    assert conn.idle
    assert conn.next_request() is None


def test_protocol_errors_surface_from_next_request():
    conn = HTTPConnection(Limits())
    conn.receive(GET + b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n")
    assert conn.next_request().head.path == "/one"
    with pytest.raises(BadRequest):
        conn.next_request()


def test_chunked_error_in_a_later_receive_surfaces():
    conn = HTTPConnection(Limits())
    conn.receive(POST_CHUNKED[:POST_CHUNKED.index(b"\r\n\r\n") + 4])
    assert conn.next_request() is None
    assert conn.waiting_for_body
    with pytest.raises(RequestError) as err:
        conn.receive(b"zz\r\n")
        conn.next_request()
    assert err.value.status == 400


def test_chunked_body_over_limit_across_receives_is_413():
    conn = HTTPConnection(Limits(body=8))
    conn.receive(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    assert conn.next_request() is None
    with pytest.raises(BodyTooLarge):
        conn.receive(b"4\r\n")
