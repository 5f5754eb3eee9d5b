"""End-to-end: a real prefork process, raw HTTP over real sockets."""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import time

import pytest

from tests.server import HTTPReader, get, request, running


@pytest.fixture(scope="module")
def srv():
    with running("testapp:app", "--threads", "4", "--keepalive", "3",
                 "--spool-threshold", "65536", "--limit-request-body", "10000000") as s:
        yield s


_opened: list[socket.socket] = []


@pytest.fixture(autouse=True)
def _close_opened():
    yield
    while _opened:
        _opened.pop().close()


def send_and_read(srv, raw: bytes, n: int = 1, method: str = "GET"):
    """Send raw bytes on a new connection and read ``n`` responses; the socket stays
    open (for EOF checks) until the test ends."""
    s = srv.connect()
    _opened.append(s)
    s.sendall(raw)
    reader = HTTPReader(s)
    return [reader.read_response(method) for _ in range(n)], reader


# -- framing --------------------------------------------------------------

def test_list_body_gets_content_length_and_keeps_alive(srv):
    (r,), reader = send_and_read(srv, b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 200 and r.body == b"Hello, World!"
    assert r.header("content-length") == "13"
    assert r.header("connection") is None
    assert r.header("date") and r.header("server") == "prefork"


def test_generator_body_is_chunked_on_http11(srv):
    (r,), _ = send_and_read(srv, b"GET /stream?n=4 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.header("transfer-encoding") == "chunked"
    assert r.body == b"chunk 0\nchunk 1\nchunk 2\nchunk 3\n"


def test_generator_body_on_http10_is_close_delimited(srv):
    with srv.connect() as s:
        s.sendall(b"GET /stream?n=2 HTTP/1.0\r\n\r\n")
        reader = HTTPReader(s)
        r = reader.read_response()
        assert r.header("transfer-encoding") is None and r.header("content-length") is None
        assert r.header("connection") == "close"
        assert r.body == b"chunk 0\nchunk 1\n"


def test_http10_keep_alive_when_asked(srv):
    raw = b"GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"
    (r1, r2), _ = send_and_read(srv, raw + raw, n=2)
    assert r1.header("connection") == "keep-alive" and r2.body == b"Hello, World!"


def test_http10_closes_by_default(srv):
    (r,), reader = send_and_read(srv, b"GET /hello HTTP/1.0\r\n\r\n")
    assert r.header("connection") == "close"
    assert reader.at_eof()


def test_connection_close_is_honoured(srv):
    (r,), reader = send_and_read(srv, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert r.header("connection") == "close" and reader.at_eof()


def test_write_callable_then_iterable(srv):
    (r,), _ = send_and_read(srv, b"GET /write HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.body == b"written then returned"


def test_head_has_headers_but_no_body(srv):
    raw = b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
    with srv.connect() as s:
        s.sendall(raw)
        reader = HTTPReader(s)
        head = reader.read_response("HEAD")
        assert head.status == 200 and head.header("content-length") == "13"
        after = reader.read_response()
        # Had the HEAD response carried a body, it would be read as this status line.
        assert after.status == 200 and after.body == b"Hello, World!"


@pytest.mark.parametrize("code", [204, 304])
def test_204_and_304_carry_no_body(srv, code):
    raw = f"GET /status/{code} HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n".encode()
    (r, after), _ = send_and_read(srv, raw, n=2)
    assert r.status == code and r.header("content-length") is None
    assert r.header("transfer-encoding") is None
    assert after.body == b"Hello, World!"


def test_pipelined_requests_answered_in_order(srv):
    raw = b"".join(f"GET /environ?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(10))
    rs, _ = send_and_read(srv, raw, n=10)
    assert [json.loads(r.body)["QUERY_STRING"] for r in rs] == [f"i={i}" for i in range(10)]


def test_pipelined_request_split_across_packets(srv):
    with srv.connect() as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\nGET /environ?x=1 HT")
        reader = HTTPReader(s)
        assert reader.read_response().body == b"Hello, World!"
        time.sleep(0.05)
        s.sendall(b"TP/1.1\r\nHost: x\r\n\r\n")
        assert json.loads(reader.read_response().body)["QUERY_STRING"] == "x=1"


def test_next_request_arriving_in_pieces_right_after_a_response(srv):
    # The thread that answered waits a moment for the next request itself; a
    # head that is still incomplete then goes back to the loop.
    with srv.connect() as s:
        reader = HTTPReader(s)
        for i in range(5):
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.read_response().body == b"Hello, World!"
            s.sendall(f"GET /environ?i={i} HT".encode())
            time.sleep(0.05)
            s.sendall(b"TP/1.1\r\nHost: x\r\n\r\n")
            assert json.loads(reader.read_response().body)["QUERY_STRING"] == f"i={i}"


def test_malformed_request_right_after_a_response_is_rejected(srv):
    with srv.connect() as s:
        reader = HTTPReader(s)
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.read_response().status == 200
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
        r = reader.read_response()
        assert r.status == 400 and r.header("connection") == "close"
        assert reader.at_eof()
    assert get(srv, "/hello").status == 200


def test_keepalive_connection_serves_many_requests(srv):
    with srv.connect() as s:
        reader = HTTPReader(s)
        pids = set()
        for _ in range(50):
            s.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
            pids.add(reader.read_response().body)
        assert len(pids) == 1


def test_idle_keepalive_connection_is_closed_after_keepalive_seconds(srv):
    with srv.connect(timeout=10) as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = HTTPReader(s)
        reader.read_response()
        t0 = time.monotonic()
        assert reader.at_eof(timeout=8)
        assert 2.0 < time.monotonic() - t0 < 5.0   # --keepalive 3, swept twice a second


def test_sendfile_response(srv):
    (r,), _ = send_and_read(srv, b"GET /file?size=300000 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.header("content-length") == "300000"
    assert r.body == bytes(i % 251 for i in range(300000))


def test_app_content_length_shorter_body_closes_connection(srv):
    with srv.connect() as s:
        s.sendall(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        assert data.endswith(b"only ten!!")   # then EOF: the client can tell it is short


def test_app_content_length_longer_body_is_truncated(srv):
    with srv.connect() as s:
        s.sendall(b"GET /long HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = HTTPReader(s)
        r = reader.read_response()
        assert r.body == b"01234"
        assert reader.at_eof()


# -- request bodies -------------------------------------------------------

def test_content_length_body(srv):
    body = b"a=1&b=2"
    (r,), _ = send_and_read(srv, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\n" + body)
    data = json.loads(r.body)
    assert data["length"] == 7 and data["head"] == "a=1&b=2" and data["content_length"] == "7"


def test_chunked_request_body_is_decoded_with_content_length(srv):
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n")
    (r,), _ = send_and_read(srv, raw)
    data = json.loads(r.body)
    assert data["head"] == "hello world" and data["content_length"] == "11"


def test_big_body_is_spooled_and_intact(srv):
    body = bytes(range(256)) * 12000   # 3 MB, over the 64 KiB spool threshold
    raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
    with srv.connect(timeout=20) as s:
        s.sendall(raw)
        s.sendall(body)
        r = HTTPReader(s).read_response()
    assert json.loads(r.body)["sha256"] == hashlib.sha256(body).hexdigest()


def test_big_chunked_body(srv):
    pieces = [bytes([i]) * (1000 + i * 37) for i in range(200)]
    raw = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
    (r,), _ = send_and_read(srv, raw)
    assert json.loads(r.body)["sha256"] == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_expect_100_continue(srv):
    with srv.connect() as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        reader = HTTPReader(s)
        interim = reader.read_response()
        assert interim.status == 100
        s.sendall(b"hello")
        r = reader.read_response()
        assert r.status == 200 and json.loads(r.body)["head"] == "hello"


def test_expect_100_continue_on_a_pipelined_request(srv):
    with srv.connect() as s:
        s.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n"
                  b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        reader = HTTPReader(s)
        assert reader.read_response().body == b"Hello, World!"
        assert reader.read_response().status == 100
        s.sendall(b"hello")
        assert json.loads(reader.read_response().body)["head"] == "hello"


def test_expect_100_continue_over_limit_gets_413_without_100(srv):
    with srv.connect() as s:
        s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        r = HTTPReader(s).read_response()
        assert r.status == 413


def test_wsgi_input_readline_and_iteration(srv):
    body = b"line one\nline two\nline three"
    (r,), _ = send_and_read(srv, b"POST /readlines HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                            % len(body) + body)
    data = json.loads(r.body)
    assert data == {"first": "line one\n", "rest": ["line two\n", "line three"], "after": ""}


# -- environ --------------------------------------------------------------

def test_environ_contents(srv):
    (r,), _ = send_and_read(srv, b"GET /environ?a=%20b&c HTTP/1.1\r\nHost: example.org:8080\r\n"
                            b"X-Custom: one\r\nX-Custom: two\r\nX_Spoof: bad\r\nCookie: a=1\r\n"
                            b"Cookie: b=2\r\n\r\n")
    env = json.loads(r.body)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "a=%20b&c"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["HTTP_HOST"] == "example.org:8080"
    assert env["HTTP_X_CUSTOM"] == "one, two"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_X_SPOOF" not in env
    assert env["REMOTE_ADDR"] == "127.0.0.1" and env["REMOTE_PORT"].isdigit()
    assert env["SERVER_PORT"] == str(srv.port)
    assert env["wsgi.url_scheme"] == "http" and env["wsgi.input_terminated"] is True
    assert env["SCRIPT_NAME"] == ""


def test_percent_decoded_path_info_is_latin1(srv):
    (r,), _ = send_and_read(srv, b"GET /environ%2F%C3%A9 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 404   # /environ/é is not /environ: decoding happened before routing


def test_root_path_sets_script_name():
    with running("testapp:app", "--root-path", "/app") as s:
        env = json.loads(get(s, "/app/environ").body)
        assert env["SCRIPT_NAME"] == "/app" and env["PATH_INFO"] == "/environ"


# -- errors from the application -----------------------------------------

def test_app_exception_gives_500_and_worker_survives(srv):
    r = get(srv, "/error")
    assert r.status == 500 and b"boom" not in r.body
    srv.wait_for_log(r"RuntimeError: boom from the test app")
    assert get(srv, "/hello").status == 200


def test_app_exception_after_head_cuts_the_connection(srv):
    with srv.connect() as s:
        s.sendall(b"GET /error-after-start HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = HTTPReader(s)
        with pytest.raises(EOFError):
            reader.read_response()   # chunked body never terminated: truncation is visible
    assert get(srv, "/hello").status == 200


def test_header_injection_from_app_is_a_500(srv):
    r = get(srv, "/bad-header")
    assert r.status == 500
    assert r.header("injected") is None and b"Injected" not in r.raw_head


def test_app_that_never_calls_start_response_gives_500(srv):
    assert get(srv, "/no-start-response").status == 500


def test_iterable_close_is_called(srv, tmp_path):
    marker = tmp_path / "closed"
    assert get(srv, f"/closing?marker={marker}").body == b"body"
    deadline = time.monotonic() + 5
    # open("w") creates the file before close() writes it: wait for the content.
    while not (marker.exists() and marker.read_text()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert marker.read_text() == "closed"


# -- malformed requests, limits and smuggling -----------------------------

BAD_REQUESTS = {
    "bare_lf": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "obs_fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "space_before_colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "nul_in_header": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n", 400),
    "bare_cr_in_header": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400),
    "no_host_http11": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two_hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    "http2_version": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "garbage_version": (b"GET / HTTQ/1.1\r\nHost: x\r\n\r\n", 400),
    "cl_and_te": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "te_not_chunked_last": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400),
    "te_unknown_coding": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    "te_on_http10": (b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "cl_not_digits": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd", 400),
    "cl_twice": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", 400),
    "cl_list": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4, 4\r\n\r\nabcd", 400),
    "body_over_limit": (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000001\r\n\r\n", 413),
    "bad_chunk_size": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", 400),
    "chunk_too_long": (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhello\r\n0\r\n\r\n", 400),
    "expect_other": (b"GET / HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n", 417),
    "method_not_token": (b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "asterisk_with_get": (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "connect": (b"CONNECT example.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n", 501),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_malformed_request_is_rejected_and_closed(srv, name):
    raw, status = BAD_REQUESTS[name]
    with srv.connect() as s:
        s.sendall(raw + b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = HTTPReader(s)
        r = reader.read_response()
        assert r.status == status, r
        assert r.header("connection") == "close"
        # Nothing after a framing error is trusted: the smuggled request is never answered.
        assert reader.at_eof()
    assert get(srv, "/hello").status == 200


def test_request_line_over_limit_is_414(srv):
    (r,), _ = send_and_read(srv, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 414


def test_too_many_headers_is_431(srv):
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(101))
    (r,), _ = send_and_read(srv, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert r.status == 431


def test_header_line_over_limit_is_431(srv):
    (r,), _ = send_and_read(srv, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 9000 + b"\r\n\r\n")
    assert r.status == 431


def test_chunked_body_over_limit_is_413():
    with running("testapp:app", "--limit-request-body", "1000") as s:
        raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + b"400\r\n" + b"x" * 1024 + b"\r\n0\r\n\r\n")
        assert request(s, raw).status == 413


def test_limits_are_settings():
    with running("testapp:app", "--limit-request-line", "100", "--limit-request-fields", "3",
                 "--limit-request-field-size", "64") as s:
        assert request(s, b"GET /" + b"a" * 120 + b" HTTP/1.1\r\nHost: x\r\n\r\n").status == 414
        assert request(s, b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n").status == 431
        assert request(s, b"GET / HTTP/1.1\r\nHost: x\r\nA: " + b"1" * 70 + b"\r\n\r\n").status == 431
        assert request(s, b"GET /hello HTTP/1.1\r\nHost: x\r\nA: 1\r\n\r\n").status == 200


# -- slow clients and timeouts --------------------------------------------

def test_slowloris_is_cut_off_by_header_timeout():
    with running("testapp:app", "--header-timeout", "1") as s:
        with s.connect(timeout=10) as c:
            t0 = time.monotonic()
            got = b""
            for byte in b"GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: ":
                try:
                    c.sendall(bytes([byte]))
                except OSError:
                    break
                time.sleep(0.1)
                c.setblocking(False)
                try:
                    got += c.recv(4096)
                except BlockingIOError:
                    pass
                finally:
                    c.setblocking(True)
                if got:
                    break
            c.settimeout(5)
            try:
                while chunk := c.recv(4096):
                    got += chunk
            except ConnectionResetError:
                pass
            elapsed = time.monotonic() - t0
        assert got.startswith(b"HTTP/1.1 408"), got
        assert elapsed < 3.5
        assert get(s, "/hello").status == 200


def test_connection_that_sends_nothing_is_closed():
    with running("testapp:app", "--header-timeout", "1") as s:
        with s.connect(timeout=10) as c:
            t0 = time.monotonic()
            assert HTTPReader(c).at_eof(timeout=5)
            assert time.monotonic() - t0 < 3


def test_slow_client_does_not_hold_a_thread():
    # One thread only: a client dribbling its head must not block another client.
    with running("testapp:app", "--threads", "1", "--header-timeout", "10") as s:
        with s.connect() as slow:
            slow.sendall(b"GET /hello HTTP/1.1\r\nHo")
            t0 = time.monotonic()
            assert get(s, "/hello").status == 200
            assert time.monotonic() - t0 < 1
            slow.sendall(b"st: x\r\n\r\n")
            assert HTTPReader(slow).read_response().status == 200


def test_stops_accepting_when_all_threads_busy_and_resumes():
    with running("testapp:app", "--threads", "1") as s:
        busy = s.connect()
        busy.sendall(b"GET /sleep?s=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        # The kernel still completes the handshake (backlog). The worker leaves
        # the connection there for another worker for a moment, then queues it
        # behind the busy thread: either way the answer comes after the sleep.
        t0 = time.monotonic()
        r = get(s, "/hello")
        waited = time.monotonic() - t0
        assert r.status == 200 and waited > 0.8
        assert HTTPReader(busy).read_response().body == b"slept"
        busy.close()


def test_client_that_stops_reading_is_dropped_after_write_timeout():
    with running("testapp:app", "--write-timeout", "1", "--threads", "1") as s:
        c = s.connect()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(b"GET /file?size=50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        # Never read: the one thread must come free after the write timeout.
        t0 = time.monotonic()
        r = get(s, "/hello")
        assert r.status == 200 and time.monotonic() - t0 < 6
        c.close()


# -- stopping ---------------------------------------------------------------

def test_sigterm_finishes_in_flight_request_then_exits():
    with running("testapp:app") as s:
        c = s.connect()
        c.sendall(b"GET /sleep?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        s.signal(signal.SIGTERM)
        r = HTTPReader(c).read_response()
        assert r.status == 200 and r.body == b"slept"
        assert r.header("connection") == "close"
        assert s.proc.wait(5) == 0
        c.close()


def test_sigterm_closes_idle_keepalive_connections_at_once():
    with running("testapp:app", "--keepalive", "30") as s:
        c = s.connect()
        c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = HTTPReader(c)
        reader.read_response()
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        assert reader.at_eof(timeout=5)
        c.close()           # as an HTTP client does on EOF: the server's linger ends
        assert s.proc.wait(5) == 0 and time.monotonic() - t0 < 2


def test_sigint_stops_fast():
    with running("testapp:app") as s:
        c = s.connect()
        c.sendall(b"GET /sleep?s=10 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        s.signal(signal.SIGINT)
        s.proc.wait(5)
        assert time.monotonic() - t0 < 2
        c.close()


def test_many_concurrent_clients_all_served(srv):
    socks = [srv.connect() for _ in range(200)]
    try:
        for i, c in enumerate(socks):
            c.sendall(f"GET /environ?i={i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        for i, c in enumerate(socks):
            r = HTTPReader(c).read_response()
            assert json.loads(r.body)["QUERY_STRING"] == f"i={i}"
    finally:
        for c in socks:
            c.close()


def test_oserror_raised_by_the_app_is_a_500_not_a_dropped_connection():
    with running("testapp:control") as s:
        r = get(s, "/db-down")
        assert r.status == 500
        s.wait_for_log(r"ConnectionRefusedError: \[Errno 111\] the database is down")
        assert get(s, "/hello").status == 200
