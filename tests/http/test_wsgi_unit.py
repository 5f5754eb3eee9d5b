"""PEP 3333 environ, response framing and app handling, against a fake transport."""

from __future__ import annotations

import gc
import io
import logging
import sys
import warnings
from wsgiref.validate import validator

import pytest

from prefork.http.connection import BufferedRequest, HTTPConnection
from prefork.http.errors import ClientGone
from prefork.http.parser import Limits
from prefork.http.wsgi import (
    Exchange,
    FileWrapper,
    base_environ,
    error_response,
    http_date,
    make_environ,
    run_app,
)

PEER = ("10.0.0.7", "54321")


class FakeTransport:
    """Records what would go on the wire; can be told to fail like a dead client."""

    def __init__(self, fail_after: int | None = None):
        self.writes: list[bytes] = []
        self.sendfiles: list[tuple[int, int, int]] = []
        self.sent_files: list[bytes] = []
        self.fail_after = fail_after

    def write(self, data: bytes) -> None:
        if self.fail_after is not None and len(self.writes) >= self.fail_after:
            # What the worker's SocketWriter raises for a BrokenPipeError.
            raise ClientGone("Broken pipe")
        self.writes.append(bytes(data))

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        import os
        self.sendfiles.append((fd, offset, count))
        data = os.pread(fd, count, offset)
        self.sent_files.append(data)
        self.writes.append(data)
        return len(data)

    @property
    def wire(self) -> bytes:
        return b"".join(self.writes)


class Response:
    def __init__(self, wire: bytes):
        head, sep, body = wire.partition(b"\r\n\r\n")
        assert sep, f"no complete head in {wire!r}"
        lines = head.decode("latin-1").split("\r\n")
        self.status_line = lines[0]
        self.status = int(lines[0].split(" ")[1])
        self.headers = [tuple(line.split(": ", 1)) for line in lines[1:]]
        self.raw_body = body

    def get(self, name: str) -> str | None:
        values = self.all(name)
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def all(self, name: str) -> list[str]:
        return [v for n, v in self.headers if n.lower() == name.lower()]

    @property
    def body(self) -> bytes:
        if self.get("Transfer-Encoding") == "chunked":
            return dechunk(self.raw_body)
        return self.raw_body


def dechunk(data: bytes) -> bytes:
    out, pos = b"", 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end], 16)
        pos = end + 2
        if size == 0:
            assert data[pos:] == b"\r\n", f"bad chunked ending {data[pos:]!r}"
            return out
        out += data[pos:pos + size]
        assert data[pos + size:pos + size + 2] == b"\r\n"
        pos += size + 2


def request(raw: bytes) -> BufferedRequest:
    conn = HTTPConnection(Limits())
    conn.receive(raw)
    req = conn.next_request()
    assert req is not None
    return req


def environ_for(raw: bytes, root_path: str = "") -> dict:
    return make_environ(request(raw), base_environ("example.org", "8080", root_path), PEER)


def run(app, raw: bytes = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", transport=None, must_close=None):
    transport = transport if transport is not None else FakeTransport()
    req = request(raw)
    environ = make_environ(req, base_environ("example.org", "8080"), PEER)
    exchange = Exchange(transport, req.head.method, req.head.version, req.head.keep_alive, must_close)
    keep = run_app(app, environ, exchange)
    return keep, transport, exchange


def simple_app(body=(b"hello",), status="200 OK", headers=None):
    def app(environ, start_response):
        start_response(status, list(headers) if headers is not None
                       else [("Content-Type", "text/plain")])
        return body
    return app


def gen_app(*pieces, status="200 OK", headers=None):
    def app(environ, start_response):
        start_response(status, list(headers) if headers is not None
                       else [("Content-Type", "text/plain")])
        yield from pieces
    return app


class ClosingIterable:
    def __init__(self, pieces, fail_at: int | None = None):
        self.pieces = pieces
        self.fail_at = fail_at
        self.closed = 0

    def __iter__(self):
        for i, piece in enumerate(self.pieces):
            if i == self.fail_at:
                raise RuntimeError("app failed mid-body")
            yield piece

    def close(self):
        self.closed += 1


HTTP10 = b"GET / HTTP/1.0\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"


# --- environ ----------------------------------------------------------------

def test_environ_has_the_pep3333_keys_with_their_types():
    env = environ_for(b"POST /p?q=1 HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
                      b"Content-Length: 3\r\n\r\nabc")
    for key in ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
                "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
                "REMOTE_ADDR", "HTTP_HOST"):
        assert type(env[key]) is str, key
    assert env["REQUEST_METHOD"] == "POST"
    assert env["SERVER_NAME"] == "example.org"
    assert env["SERVER_PORT"] == "8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "10.0.0.7"
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "3"
    assert env["HTTP_HOST"] == "h"
    assert "HTTP_CONTENT_TYPE" not in env and "HTTP_CONTENT_LENGTH" not in env
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.input"].read() == b"abc"
    assert hasattr(env["wsgi.errors"], "write")
    for key in ("wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once"):
        assert type(env[key]) is bool, key
    assert env["wsgi.file_wrapper"] is FileWrapper
    assert all(type(k) is str for k in env)


def test_path_info_is_percent_decoded_as_latin1():
    env = environ_for(b"GET /caf%C3%A9/a%2Fb%20c HTTP/1.1\r\nHost: a\r\n\r\n")
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9/a/b c"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/caf\u00e9/a/b c"


def test_raw_utf8_path_bytes_arrive_as_latin1():
    env = environ_for("GET /caf\u00e9 HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    assert env["PATH_INFO"] == "/caf\u00c3\u00a9"


def test_query_string_is_raw():
    env = environ_for(b"GET /p?a=%20b&c=d+e&&%zz HTTP/1.1\r\nHost: a\r\n\r\n")
    assert env["QUERY_STRING"] == "a=%20b&c=d+e&&%zz"
    assert env["PATH_INFO"] == "/p"


def test_query_string_is_empty_without_query():
    assert environ_for(b"GET /p HTTP/1.1\r\nHost: a\r\n\r\n")["QUERY_STRING"] == ""


@pytest.mark.parametrize("root_path, target, script_name, path_info", [
    ("/app", "/app/x/y", "/app", "/x/y"),
    ("/app/", "/app/x", "/app", "/x"),
    ("/app", "/app", "/app", ""),
    ("/app", "/apple", "/app", "/apple"),
    ("", "/app/x", "", "/app/x"),
    ("/a b", "/a%20b/x", "/a b", "/x"),
])
def test_script_name_comes_from_root_path_and_is_stripped(root_path, target, script_name,
                                                          path_info):
    env = environ_for(b"GET " + target.encode() + b" HTTP/1.1\r\nHost: a\r\n\r\n", root_path)
    assert env["SCRIPT_NAME"] == script_name
    assert env["PATH_INFO"] == path_info


def test_headers_with_underscore_are_dropped():
    env = environ_for(b"GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\n"
                      b"X-Forwarded-For: 1.2.3.4\r\nX_Only: v\r\n\r\n")
    assert env["HTTP_X_FORWARDED_FOR"] == "1.2.3.4"
    assert "HTTP_X_ONLY" not in env
    assert "6.6.6.6" not in env.values()


def test_duplicate_headers_are_joined():
    env = environ_for(b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a/b\r\nX-Y: 1\r\naccept: c/d\r\n"
                      b"Cookie: a=1\r\nCookie: b=2\r\n\r\n")
    assert env["HTTP_ACCEPT"] == "a/b, c/d"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_Y"] == "1"


def test_chunked_request_gets_content_length_of_decoded_body():
    env = environ_for(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    assert env["CONTENT_LENGTH"] == "11"
    assert "HTTP_TRANSFER_ENCODING" not in env
    assert env["wsgi.input"].read() == b"hello world"


def test_request_without_body_headers_has_no_content_length():
    env = environ_for(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert "CONTENT_LENGTH" not in env or env["CONTENT_LENGTH"] in ("", "0")


def test_absolute_form_authority_is_the_host_the_app_sees():
    # RFC 9112 §3.2.2: the server MUST ignore Host and use the target's authority.
    env = environ_for(b"GET http://a.example/p HTTP/1.1\r\nHost: b.example\r\n\r\n")
    assert env["PATH_INFO"] == "/p"
    assert env["HTTP_HOST"] == "a.example"


def test_wsgi_input_supports_read_readline_readlines_and_iteration():
    env = environ_for(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n"
                      b"one\ntwo\nthreeGET / HTTP/1.1\r\n")
    inp = env["wsgi.input"]
    assert inp.readline() == b"one\n"
    assert inp.readline(2) == b"tw"
    # Twelve bytes of body: the input ends there, never in the next request.
    assert inp.readlines() == [b"o\n", b"thre"]
    assert inp.read() == b""
    inp.seek(0)
    assert list(inp) == [b"one\n", b"two\n", b"thre"]


# --- framing ----------------------------------------------------------------

def test_list_body_gets_content_length_in_one_write():
    keep, t, _ = run(simple_app([b"hello ", b"world"]))
    assert keep is True
    assert len(t.writes) == 1
    r = Response(t.wire)
    assert r.status_line == "HTTP/1.1 200 OK"
    assert r.get("Content-Length") == "11"
    assert r.get("Transfer-Encoding") is None
    assert r.body == b"hello world"


def test_tuple_body_gets_content_length():
    keep, t, _ = run(simple_app((b"a", b"bc")))
    r = Response(t.wire)
    assert r.get("Content-Length") == "3"
    assert r.body == b"abc"


def test_date_and_server_headers_are_added_once():
    _, t, _ = run(simple_app())
    r = Response(t.wire)
    assert r.get("Date") == http_date()
    assert r.get("Server") == "prefork"
    _, t, _ = run(simple_app(headers=[("Server", "mine"), ("Date", "Thu, 01 Jan 1970 00:00:00 GMT")]))
    r = Response(t.wire)
    assert r.get("Server") == "mine"
    assert r.get("Date") == "Thu, 01 Jan 1970 00:00:00 GMT"


def test_generator_body_is_chunked_on_http11():
    keep, t, _ = run(gen_app(b"hello ", b"", b"world"))
    assert keep is True
    r = Response(t.wire)
    assert r.get("Transfer-Encoding") == "chunked"
    assert r.get("Content-Length") is None
    assert r.raw_body.endswith(b"0\r\n\r\n")
    assert r.body == b"hello world"


def test_generator_body_is_close_delimited_on_http10():
    keep, t, _ = run(gen_app(b"hello ", b"world"), HTTP10)
    assert keep is False
    r = Response(t.wire)
    assert r.get("Transfer-Encoding") is None
    assert r.get("Content-Length") is None
    assert r.get("Connection") == "close"
    assert r.raw_body == b"hello world"


def test_http10_keep_alive_with_known_length_stays_open():
    keep, t, _ = run(simple_app(), b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert keep is True
    r = Response(t.wire)
    assert r.get("Connection") == "keep-alive"
    assert r.get("Content-Length") == "5"


def test_http10_without_keep_alive_closes():
    keep, t, _ = run(simple_app(), HTTP10)
    assert keep is False
    assert Response(t.wire).get("Connection") == "close"


def test_client_connection_close_is_answered_with_close():
    keep, t, _ = run(simple_app(), b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert keep is False
    assert Response(t.wire).get("Connection") == "close"


@pytest.mark.parametrize("app", [simple_app([b"hello"]), gen_app(b"hello", b"world")],
                         ids=["list", "generator"])
def test_head_response_has_no_body(app):
    keep, t, _ = run(app, HEAD)
    assert keep is True
    r = Response(t.wire)
    assert r.raw_body == b""
    assert r.get("Transfer-Encoding") is None


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
@pytest.mark.parametrize("app_kind", ["list", "generator"])
def test_204_and_304_have_no_body(status, app_kind):
    app = simple_app([b"oops"], status) if app_kind == "list" else gen_app(b"oops", status=status)
    keep, t, _ = run(app)
    assert keep is True
    r = Response(t.wire)
    assert r.status == int(status[:3])
    assert r.raw_body == b""
    assert r.get("Content-Length") is None
    assert r.get("Transfer-Encoding") is None


def test_304_on_http10_keep_alive_keeps_the_connection():
    keep, t, _ = run(gen_app(status="304 Not Modified"),
                     b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert keep is True


def test_app_content_length_is_honoured_without_chunking():
    keep, t, _ = run(gen_app(b"hel", b"lo", headers=[("Content-Length", "5")]))
    assert keep is True
    r = Response(t.wire)
    assert r.get("Content-Length") == "5"
    assert r.get("Transfer-Encoding") is None
    assert r.raw_body == b"hello"


@pytest.mark.parametrize("app_kind", ["list", "generator"])
def test_body_longer_than_app_content_length_is_truncated_and_closes(app_kind):
    headers = [("Content-Length", "4")]
    app = (simple_app([b"hello", b" world"], headers=headers) if app_kind == "list"
           else gen_app(b"hel", b"lo wo", b"rld", headers=headers))
    keep, t, _ = run(app)
    assert keep is False
    r = Response(t.wire)
    assert r.get("Content-Length") == "4"
    assert r.raw_body == b"hell"


@pytest.mark.parametrize("app_kind", ["list", "generator"])
def test_body_shorter_than_app_content_length_closes(app_kind):
    headers = [("Content-Length", "10")]
    app = (simple_app([b"short"], headers=headers) if app_kind == "list"
           else gen_app(b"sho", b"rt", headers=headers))
    keep, t, _ = run(app)
    assert keep is False
    assert Response(t.wire).raw_body == b"short"


def test_hop_by_hop_headers_from_the_app_are_dropped():
    keep, t, _ = run(simple_app(headers=[("Transfer-Encoding", "chunked"), ("Keep-Alive", "5"),
                                         ("Upgrade", "h2c"), ("X-Ok", "1")]))
    r = Response(t.wire)
    assert r.get("Transfer-Encoding") is None
    assert r.get("Keep-Alive") is None
    assert r.get("Upgrade") is None
    assert r.get("X-Ok") == "1"
    assert r.body == b"hello"
    assert keep is True


def test_app_connection_close_is_honoured():
    keep, t, _ = run(simple_app(headers=[("Connection", "close")]))
    assert keep is False
    assert Response(t.wire).all("Connection") == ["close"]


def test_stopping_server_closes_the_connection():
    keep, t, _ = run(simple_app(), must_close=lambda: True)
    assert keep is False
    assert Response(t.wire).get("Connection") == "close"


def test_a_server_not_stopping_keeps_the_connection():
    keep, t, _ = run(simple_app(), must_close=lambda: False)
    assert keep is True
    assert Response(t.wire).get("Connection") is None


def test_write_callable_goes_out_before_the_iterable():
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first ")
        write(bytearray(b"second "))
        return [b"third"]
    keep, t, _ = run(app)
    r = Response(t.wire)
    assert r.body == b"first second third"
    assert keep is True


def test_large_list_body_is_sent_whole():
    body = b"x" * (600 * 1024)
    _, t, _ = run(simple_app([body]))
    r = Response(t.wire)
    assert r.get("Content-Length") == str(len(body))
    assert r.body == body


# --- header validation and app errors ---------------------------------------

@pytest.mark.parametrize("headers", [
    [("X-Evil", "a\r\nSet-Cookie: pwned=1")],
    [("X-Evil", "a\nSet-Cookie: pwned=1")],
    [("X-Evil", "a\rSet-Cookie: pwned=1")],
    [("X-Evil\r\nSet-Cookie", "pwned=1")],
    [("X-Evil", "a\x00b")],
    [("X Evil", "v")],
])
def test_cr_lf_in_a_response_header_gives_500_and_no_injected_header(headers, caplog):
    keep, t, _ = run(simple_app(headers=headers))
    r = Response(t.wire)
    assert r.status == 500
    assert b"pwned" not in t.wire
    assert r.get("Set-Cookie") is None
    assert r.get("X-Evil") is None
    assert r.body == b"Internal Server Error\n"
    assert any(rec.exc_info for rec in caplog.records)


def test_cr_lf_in_status_gives_500():
    keep, t, _ = run(simple_app(status="200 OK\r\nSet-Cookie: pwned=1"))
    assert Response(t.wire).status == 500
    assert b"pwned" not in t.wire


@pytest.mark.parametrize("status", ["200", "OK 200", "2000 OK", "099 Low", b"200 OK"])
def test_invalid_status_gives_500(status):
    if status == "200":
        # A bare code is accepted: nothing after it needs checking.
        assert Response(run(simple_app(status=status))[1].wire).status == 200
        return
    assert Response(run(simple_app(status=status))[1].wire).status == 500


@pytest.mark.parametrize("headers", [(("A", "b"),), [["A", "b"]], [("A", 1)], [("A",)],
                                     [("A", "b", "c")], [(b"A", "b")]])
def test_malformed_header_list_gives_500(headers):
    def app(environ, start_response):
        start_response("200 OK", headers)
        return [b"x"]
    assert Response(run(app)[1].wire).status == 500


def test_invalid_app_content_length_gives_500():
    for value in ("abc", "-1", "1 2"):
        _, t, _ = run(simple_app(headers=[("Content-Length", value)]))
        assert Response(t.wire).status == 500
    _, t, _ = run(simple_app(headers=[("Content-Length", "5"), ("Content-Length", "5")]))
    assert Response(t.wire).status == 500


def test_start_response_twice_without_exc_info_is_an_error():
    ex = Exchange(FakeTransport(), "GET", "HTTP/1.1", True)
    ex.start_response("200 OK", [])
    with pytest.raises(AssertionError):
        ex.start_response("404 Not Found", [])

    def app(environ, start_response):
        start_response("200 OK", [])
        start_response("201 Created", [])
        return [b"x"]
    keep, t, _ = run(app)
    assert Response(t.wire).status == 500


def test_exc_info_before_the_head_is_sent_replaces_the_response():
    def app(environ, start_response):
        start_response("200 OK", [("X-First", "1")])
        try:
            raise ValueError("boom")
        except ValueError:
            start_response("503 Service Unavailable", [("X-Second", "2")], sys.exc_info())
        return [b"sorry"]
    keep, t, _ = run(app)
    r = Response(t.wire)
    assert r.status == 503
    assert r.get("X-First") is None
    assert r.get("X-Second") == "2"
    assert r.body == b"sorry"
    assert keep is True


def test_exc_info_after_the_head_is_sent_reraises_it():
    ex = Exchange(FakeTransport(), "GET", "HTTP/1.1", True)
    write = ex.start_response("200 OK", [])
    write(b"partial")
    try:
        raise KeyError("original")
    except KeyError:
        info = sys.exc_info()
    with pytest.raises(KeyError, match="original"):
        ex.start_response("500 Internal Server Error", [], info)


def test_exc_info_after_head_sent_cuts_the_connection_without_a_second_head():
    def app(environ, start_response):
        write = start_response("200 OK", [])
        write(b"partial")
        try:
            raise KeyError("late")
        except KeyError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"never"]
    keep, t, _ = run(app)
    assert keep is False
    assert t.wire.count(b"HTTP/1.1") == 1
    assert b"never" not in t.wire
    assert not t.wire.endswith(b"0\r\n\r\n")    # no clean chunked end for a broken body


def test_app_exception_before_start_response_gives_500_and_logs(caplog):
    def app(environ, start_response):
        raise RuntimeError("kaboom")
    with caplog.at_level(logging.ERROR, logger="prefork.error"):
        keep, t, _ = run(app)
    r = Response(t.wire)
    assert r.status == 500
    assert r.get("Content-Length") == str(len(r.body))
    assert keep is True
    assert any(rec.exc_info and "kaboom" in str(rec.exc_info[1]) for rec in caplog.records)


def test_app_raising_oserror_gets_500(caplog):
    # An OSError from application code (a refused database connection, a
    # missing file) is an application error, not a dead client.
    def app(environ, start_response):
        raise ConnectionRefusedError(111, "Connection refused")
    with caplog.at_level(logging.ERROR, logger="prefork.error"):
        keep, t, _ = run(app)
    assert Response(t.wire).status == 500


def test_app_returning_without_start_response_gives_500():
    assert Response(run(lambda e, s: [b"x"])[1].wire).status == 500
    assert Response(run(lambda e, s: [])[1].wire).status == 500
    assert Response(run(lambda e, s: iter([b"x"]))[1].wire).status == 500


def test_str_body_piece_gives_500():
    assert Response(run(simple_app(["text"]))[1].wire).status == 500
    assert Response(run(gen_app("text"))[1].wire).status == 500


def test_exception_mid_body_cuts_the_connection():
    it = ClosingIterable([b"one", b"two", b"three"], fail_at=2)
    keep, t, _ = run(simple_app(it))
    assert keep is False
    assert it.closed == 1
    assert t.wire.count(b"HTTP/1.1 ") == 1
    assert not t.wire.endswith(b"0\r\n\r\n")


# --- close() ----------------------------------------------------------------

def test_close_is_called_on_success():
    it = ClosingIterable([b"a", b"b"])
    keep, t, _ = run(simple_app(it))
    assert it.closed == 1
    assert Response(t.wire).body == b"ab"


def test_close_is_called_when_the_client_is_gone():
    it = ClosingIterable([b"a", b"b", b"c"])
    t = FakeTransport(fail_after=1)
    with pytest.raises(ClientGone):
        run(simple_app(it), transport=t)
    assert it.closed == 1


def test_close_is_called_when_the_transport_fails_on_the_head():
    it = ClosingIterable([b"a"])
    t = FakeTransport(fail_after=0)
    with pytest.raises(ClientGone):
        run(simple_app(it), transport=t)
    assert it.closed == 1


def test_client_gone_marks_the_exchange_not_reusable():
    t = FakeTransport(fail_after=0)
    req = request(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    ex = Exchange(t, "GET", "HTTP/1.1", True)
    with pytest.raises(ClientGone):
        run_app(simple_app(), make_environ(req, base_environ("h", "1"), PEER), ex)
    assert ex.keep_alive is False


def test_close_is_called_on_head_requests_that_stop_early():
    it = ClosingIterable([b"a", b"b"])
    run(simple_app(it), HEAD)
    assert it.closed == 1


def test_close_raising_is_logged_and_does_not_break_the_response(caplog):
    class BadClose(ClosingIterable):
        def close(self):
            raise RuntimeError("close failed")
    keep, t, _ = run(simple_app(BadClose([b"ok"])))
    assert Response(t.wire).body == b"ok"
    assert any("close failed" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)


# --- file_wrapper -----------------------------------------------------------

def test_file_wrapper_uses_sendfile_for_a_real_file(tmp_path):
    path = tmp_path / "data.bin"
    content = bytes(range(256)) * 100
    path.write_bytes(content)
    opened = []

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        f = open(path, "rb")  # noqa: SIM115 - the server closes it through the wrapper
        opened.append(f)
        return environ["wsgi.file_wrapper"](f, 8192)

    keep, t, _ = run(app)
    assert keep is True
    assert len(t.sendfiles) == 1
    fd, offset, count = t.sendfiles[0]
    assert (offset, count) == (0, len(content))
    r = Response(t.wire)
    assert r.get("Content-Length") == str(len(content))
    assert r.get("Transfer-Encoding") is None
    assert r.raw_body == content
    assert opened[0].closed


def test_file_wrapper_sends_from_the_current_position(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"0123456789")

    def app(environ, start_response):
        start_response("200 OK", [])
        f = open(path, "rb")  # noqa: SIM115
        f.seek(4)
        return FileWrapper(f)

    _, t, _ = run(app)
    assert t.sendfiles[0][1:] == (4, 6)
    r = Response(t.wire)
    assert r.get("Content-Length") == "6"
    assert r.raw_body == b"456789"


def test_file_wrapper_respects_a_smaller_app_content_length(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"0123456789")

    def app(environ, start_response):
        start_response("200 OK", [("Content-Length", "3")])
        return FileWrapper(open(path, "rb"))  # noqa: SIM115

    keep, t, _ = run(app)
    assert t.sendfiles[0][2] == 3
    assert Response(t.wire).raw_body == b"012"


def test_file_wrapper_on_head_sends_no_file(tmp_path):
    path = tmp_path / "data.txt"
    path.write_bytes(b"0123456789")

    def app(environ, start_response):
        start_response("200 OK", [])
        return FileWrapper(open(path, "rb"))  # noqa: SIM115

    keep, t, _ = run(app, HEAD)
    assert t.sendfiles == []
    r = Response(t.wire)
    assert r.raw_body == b""
    assert r.get("Content-Length") == "10"
    assert keep is True


def test_file_wrapper_falls_back_to_iteration_for_bytesio():
    data = io.BytesIO(b"abcdefghij")

    def app(environ, start_response):
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](data, 3)

    keep, t, _ = run(app)
    assert t.sendfiles == []
    r = Response(t.wire)
    assert r.body == b"abcdefghij"
    assert data.closed
    assert keep is True


def test_file_wrapper_iterates_in_blocks():
    assert list(FileWrapper(io.BytesIO(b"abcdefg"), 3)) == [b"abc", b"def", b"g"]


# --- error_response -----------------------------------------------------------

def test_error_response_is_a_complete_response_that_closes():
    raw = error_response(431, "Request Header Fields Too Large", "too many headers")
    r = Response(raw)
    assert r.status_line == "HTTP/1.1 431 Request Header Fields Too Large"
    assert r.get("Connection") == "close"
    assert r.get("Content-Length") == str(len(r.raw_body))
    assert b"too many headers" in r.raw_body
    assert r.get("Date") and r.get("Server") == "prefork"


def test_error_response_can_keep_the_connection():
    assert Response(error_response(400, "Bad Request", "x", close=False)).get("Connection") is None


def test_error_response_detail_cannot_inject_headers():
    raw = error_response(400, "Bad Request", "evil\r\nSet-Cookie: x=1")
    head = raw.partition(b"\r\n\r\n")[0]
    assert b"Set-Cookie" not in head


# --- wsgiref.validate ---------------------------------------------------------

def _validated_run(app, raw):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keep, t, ex = run(validator(app), raw)
        gc.collect()
    return keep, Response(t.wire)


def test_validator_is_silent_for_a_list_app(caplog):
    keep, r = _validated_run(simple_app([b"hello"]), b"GET /x?y=1 HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.status == 200, caplog.text
    assert r.body == b"hello"
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]


def test_validator_is_silent_for_an_app_reading_the_body(caplog):
    seen = []

    def app(environ, start_response):
        inp = environ["wsgi.input"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        seen.append(inp.readline())
        seen.append(inp.read(length - len(seen[0])))
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(length))])
        return [seen[0] + seen[1]]

    keep, r = _validated_run(app, b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
                                  b"Content-Length: 9\r\n\r\nab\ncdefgh")
    assert r.status == 200, caplog.text
    assert seen == [b"ab\n", b"cdefgh"]
    assert r.body == b"ab\ncdefgh"


def test_validator_is_silent_for_a_generator_app_with_write(caplog):
    def app(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"w")
        yield b"g1"
        yield b"g2"

    keep, r = _validated_run(app, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
    assert r.status == 200, caplog.text
    assert r.body == b"wg1g2"


def test_validator_is_silent_for_head_and_chunked_request(caplog):
    keep, r = _validated_run(simple_app([b"x"]), HEAD)
    assert r.status == 200, caplog.text
    keep, r = _validated_run(
        simple_app([b"x"]),
        b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
    assert r.status == 200, caplog.text
