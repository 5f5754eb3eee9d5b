"""End-to-end: the Django and Flask examples (examples/) served by a real prefork.

Each test speaks raw HTTP/1.1 over a loopback socket and asserts on what a
client sees: status, framing headers, content types and bodies. The apps are
also run once in-process under ``wsgiref.validate`` so that a failure here can
be told apart from a bug in the apps themselves.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import wsgiref.util
import wsgiref.validate
from pathlib import Path
from urllib.parse import urlencode

import pytest

from tests.server import LISTEN_RE, ROOT, HTTPReader, Response, get, multipart, request, running

EXAMPLES = ROOT / "examples"
DJANGO_DIR = EXAMPLES / "django_site"
FLASK_DIR = EXAMPLES / "flask_app"

UPLOAD = os.urandom(3 * 1024 * 1024 + 17)  # 3 MB and a bit: spooled, several reads
UPLOAD_SHA = hashlib.sha256(UPLOAD).hexdigest()
DOWNLOAD = os.urandom(2 * 1024 * 1024 + 5)  # big enough for sendfile to loop
NON_ASCII_FILE_BODY = "summer: été\n".encode()


def _pythonpath(*dirs: Path) -> str:
    return os.pathsep.join(str(d) for d in (*dirs, ROOT))


# -- raw HTTP helpers -------------------------------------------------------

def connect(srv) -> tuple[socket.socket, HTTPReader]:
    s = srv.connect(timeout=20)
    return s, HTTPReader(s)


def head_bytes(method: str, path: str, headers: dict[str, str] | None = None,
               close: bool = True) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(srv, path: str, body: bytes, content_type: str,
         headers: dict[str, str] | None = None) -> Response:
    h = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
    return request(srv, head_bytes("POST", path, h) + body)


def chunked(body: bytes, sizes=(1, 100, 4096, 65536, 300_000)) -> bytes:
    """``body`` as a chunked message body, in chunks of varying (cycling) sizes."""
    out, i, n = [], 0, 0
    while i < len(body):
        size = sizes[n % len(sizes)]
        piece = body[i:i + size]
        out.append(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
        i += size
        n += 1
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def send_chunked_upload(srv, path: str, body: bytes) -> Response:
    raw = head_bytes("POST", path, {"Content-Type": "application/octet-stream",
                                    "Transfer-Encoding": "chunked"})
    s, reader = connect(srv)
    with s:
        s.sendall(raw)
        payload = chunked(body)
        # Send in slices with pauses, so the body does not arrive in one read.
        step = len(payload) // 4 + 1
        for off in range(0, len(payload), step):
            s.sendall(payload[off:off + step])
            time.sleep(0.02)
        return reader.read_response()


def assert_length_framed(r: Response) -> None:
    assert r.header("content-length") == str(len(r.body)), r
    assert r.header("transfer-encoding") is None, r


def assert_chunked(r: Response) -> None:
    """A body of unknown length on HTTP/1.1 must come chunked (HTTPReader de-chunked it)."""
    assert (r.header("transfer-encoding") or "").lower() == "chunked", r
    assert r.header("content-length") is None, r
    assert r.raw_head.startswith(b"HTTP/1.1 "), r.raw_head


def json_of(r: Response) -> dict:
    assert (r.header("content-type") or "").startswith("application/json"), r
    return json.loads(r.body)


def run_validated(app, path: str, method: str = "GET", body: bytes = b"",
                  content_type: str = "", extra: dict | None = None) -> tuple[str, dict, bytes]:
    """Run ``app`` in-process for one request under wsgiref.validate."""
    environ: dict = {"REQUEST_METHOD": method, "SERVER_NAME": "test", "SERVER_PORT": "80",
                     "SCRIPT_NAME": "",
                     "HTTP_HOST": "test", "wsgi.input": io.BytesIO(body)}
    path, _, query = path.partition("?")
    environ["PATH_INFO"], environ["QUERY_STRING"] = path, query
    if body:
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["CONTENT_TYPE"] = content_type
    environ.update(extra or {})
    wsgiref.util.setup_testing_defaults(environ)
    seen: dict = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)
        return lambda data: None

    with warnings.catch_warnings():
        # wsgiref.validate reports some problems as WSGIWarning: make them errors.
        warnings.simplefilter("error", wsgiref.validate.WSGIWarning)
        result = wsgiref.validate.validator(app)(environ, start_response)
        try:
            out = b"".join(result)
        finally:
            result.close()
    return seen["status"], seen["headers"], out


# ===========================================================================
# Django
# ===========================================================================

@pytest.fixture(scope="module")
def download_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("downloads")
    (d / "big.bin").write_bytes(DOWNLOAD)
    (d / "été.txt").write_bytes(NON_ASCII_FILE_BODY)
    return d


@pytest.fixture(scope="module")
def django_env(download_dir, tmp_path_factory) -> dict[str, str]:
    return {
        "PYTHONPATH": _pythonpath(DJANGO_DIR),
        "DJANGO_SETTINGS_MODULE": "mysite.settings",
        "MYSITE_DATA_DIR": str(tmp_path_factory.mktemp("mysite-data")),
        "MYSITE_DOWNLOAD_DIR": str(download_dir),
    }


@pytest.fixture(scope="module")
def dj(django_env):
    with running("mysite.wsgi:application", "--workers", "2", "--threads", "4",
                 env=django_env) as srv:
        yield srv


def test_django_app_is_valid_wsgi(django_env, monkeypatch):
    """The Django site itself passes wsgiref.validate (in this process)."""
    for key, value in django_env.items():
        if key != "PYTHONPATH":
            monkeypatch.setenv(key, value)
    monkeypatch.syspath_prepend(str(DJANGO_DIR))
    from mysite.wsgi import application

    status, headers, body = run_validated(application, "/")
    assert status == "200 OK" and b"<h1>prefork + Django</h1>" in body
    status, headers, body = run_validated(application, "/upload/sha256/", "POST", b"abc" * 1000,
                                          "application/octet-stream")
    assert status == "200 OK"
    assert json.loads(body)["sha256"] == hashlib.sha256(b"abc" * 1000).hexdigest()
    status, headers, body = run_validated(application, "/stream/?n=3")
    assert status == "200 OK" and body == b"line 0\nline 1\nline 2\n"


def test_django_template_page(dj):
    r = get(dj, "/")
    assert r.status == 200, r
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert_length_framed(r)
    html = r.body.decode()
    assert "<title>prefork + Django</title>" in html
    assert "<h1>prefork + Django</h1>" in html
    assert "rendered by a Django template for a GET request" in html
    assert "<li>1. templates</li>" in html and "<li>6. streaming</li>" in html
    assert "Served by prefork/" in html  # SERVER_SOFTWARE, through the template
    # The default middleware did its job.
    assert r.header("x-frame-options") == "DENY"
    assert r.header("x-content-type-options") == "nosniff"
    assert any(c.strip().startswith("csrftoken=") for c in r.header_list("set-cookie"))
    assert r.header("server") == "prefork" and r.header("date")


def test_django_head_has_headers_but_no_body(dj):
    s, reader = connect(dj)
    with s:
        s.sendall(head_bytes("HEAD", "/", close=False) + head_bytes("GET", "/api/info/"))
        h = reader.read_response("HEAD")
        g = reader.read_response()
    assert h.status == 200 and h.body == b""
    assert h.header("content-type") == "text/html; charset=utf-8"
    # The next response starts right where HEAD's head ended: no stray body bytes.
    assert g.status == 200 and json_of(g)["path"] == "/api/info/"


def test_django_head_on_file_and_stream_sends_no_body(dj):
    """HEAD on a FileResponse (file_wrapper) and on a StreamingHttpResponse: the
    head only, and the connection stays in step."""
    s, reader = connect(dj)
    with s:
        s.sendall(head_bytes("HEAD", "/download/big.bin", close=False))
        f = reader.read_response("HEAD")
        s.sendall(head_bytes("HEAD", "/stream/?n=3", close=False))
        st = reader.read_response("HEAD")
        s.sendall(head_bytes("GET", "/api/info/?after=head"))
        g = reader.read_response()
    assert f.status == 200 and f.header("content-length") == str(len(DOWNLOAD))
    assert st.status == 200
    assert g.status == 200 and json_of(g)["query"] == {"after": ["head"]}, g


def test_django_json_view_sees_query_and_headers(dj):
    r = get(dj, "/api/info/?a=1&a=2&q=caf%C3%A9+au+lait",
            "User-Agent: e2e-client/1.0\r\nX-Request-Id: abc-123\r\n")
    assert r.status == 200, r
    assert r.header("content-type") == "application/json"
    assert_length_framed(r)
    data = json_of(r)
    assert data["method"] == "GET" and data["path"] == "/api/info/"
    assert data["query"] == {"a": ["1", "2"], "q": ["café au lait"]}
    assert data["full_path"] == "/api/info/?a=1&a=2&q=caf%C3%A9+au+lait"
    assert data["host"] == "test" and data["scheme"] == "http"
    assert data["user_agent"] == "e2e-client/1.0" and data["request_id"] == "abc-123"
    assert data["remote_addr"] == "127.0.0.1"
    assert data["server_software"].startswith("prefork/")


def test_django_non_ascii_path(dj):
    """PATH_INFO holds the UTF-8 bytes as latin-1 (PEP 3333); Django turns them back
    into "été.txt", which names a real file."""
    r = get(dj, "/download/%C3%A9t%C3%A9.txt")
    assert r.status == 200, r
    assert r.body == NON_ASCII_FILE_BODY


def test_django_append_slash_redirect(dj):
    r = get(dj, "/api/info?x=1")
    assert r.status == 301, r
    assert r.header("location") == "/api/info/?x=1"


def test_django_disallowed_host_is_400(dj):
    r = request(dj, b"GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n")
    assert r.status == 400, r


def test_django_unknown_url_is_404(dj):
    r = get(dj, "/no/such/page/")
    assert r.status == 404, r
    assert b"Not Found" in r.body
    assert_length_framed(r)


def test_django_csrf_form_flow(dj):
    """GET the form (token in cookie and page), POST it back; without the token: 403."""
    page = get(dj, "/contact/")
    assert page.status == 200, page
    cookie = next(c for c in page.header_list("set-cookie") if c.strip().startswith("csrftoken="))
    token_cookie = cookie.strip().split(";", 1)[0]
    m = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.body)
    assert m, page.body
    form = {"csrfmiddlewaretoken": m.group(1).decode(), "name": "<b>Ann</b>",
            "email": "ann@example.com", "message": "Hello!\r\nSecond line, é."}
    body = urlencode(form).encode()
    r = post(dj, "/contact/", body, "application/x-www-form-urlencoded",
             {"Cookie": token_cookie})
    assert r.status == 200, r
    assert b"Thank you, &lt;b&gt;Ann&lt;/b&gt;!" in r.body  # autoescaped
    assert b"We will answer ann@example.com soon." in r.body

    # Invalid data with a good token: the form comes back with a 400.
    bad = urlencode({**form, "email": "not-an-email"}).encode()
    r = post(dj, "/contact/", bad, "application/x-www-form-urlencoded", {"Cookie": token_cookie})
    assert r.status == 400, r
    assert b"Enter a valid email address." in r.body

    # No token at all: CsrfViewMiddleware refuses.
    r = post(dj, "/contact/", urlencode({"name": "x"}).encode(),
             "application/x-www-form-urlencoded")
    assert r.status == 403, r


def test_django_csrf_exempt_urlencoded_form(dj):
    body = urlencode([("tag", "a"), ("tag", "b"), ("text", "x=y&z €")]).encode()
    r = post(dj, "/api/form/", body, "application/x-www-form-urlencoded")
    assert r.status == 200, r
    assert json_of(r) == {"fields": {"tag": ["a", "b"], "text": ["x=y&z €"]}, "files": {}}


def test_django_multipart_upload(dj):
    data = os.urandom(700_000)
    body, ctype = multipart({"title": "report"}, {"doc": ("report.bin", data,
                                                          "application/octet-stream")})
    r = post(dj, "/api/form/", body, ctype)
    assert r.status == 200, r
    out = json_of(r)
    assert out["fields"] == {"title": ["report"]}
    assert out["files"]["doc"] == {"filename": "report.bin", "size": len(data),
                                   "sha256": hashlib.sha256(data).hexdigest(),
                                   "content_type": "application/octet-stream"}


def test_django_get_on_post_only_view_is_405(dj):
    r = get(dj, "/api/form/")
    assert r.status == 405, r
    assert r.header("allow") == "POST"


def test_django_upload_sha256_content_length(dj):
    r = post(dj, "/upload/sha256/", UPLOAD, "application/octet-stream")
    assert r.status == 200, r
    data = json_of(r)
    assert data["length"] == len(UPLOAD) and data["sha256"] == UPLOAD_SHA


def test_django_upload_sha256_chunked(dj):
    """Django reads CONTENT_LENGTH bytes only: the server must de-chunk and set it."""
    r = send_chunked_upload(dj, "/upload/sha256/", UPLOAD)
    assert r.status == 200, r
    data = json_of(r)
    assert data["length"] == len(UPLOAD) and data["sha256"] == UPLOAD_SHA
    assert data["content_length"] == str(len(UPLOAD))


def test_django_upload_with_expect_100_continue(dj):
    body = UPLOAD[:200_000]
    s, reader = connect(dj)
    with s:
        s.sendall(head_bytes("POST", "/upload/sha256/", {
            "Content-Type": "application/octet-stream", "Content-Length": str(len(body)),
            "Expect": "100-continue"}))
        interim = reader.read_response()
        assert interim.status == 100, interim
        s.sendall(body)
        r = reader.read_response()
    assert r.status == 200, r
    assert json_of(r)["sha256"] == hashlib.sha256(body).hexdigest()


def test_django_file_download(dj):
    # The shipped readme is not in the test's download dir: served from there it 404s.
    assert get(dj, "/download/readme.txt").status == 404
    r = get(dj, "/download/big.bin")
    assert r.status == 200, r
    assert_length_framed(r)
    assert r.header("content-length") == str(len(DOWNLOAD))
    assert r.header("content-disposition") == 'attachment; filename="big.bin"'
    assert r.header("content-type") == "application/octet-stream"
    assert r.body == DOWNLOAD


def test_django_file_download_default_dir():
    """With no MYSITE_DOWNLOAD_DIR the view sends the file shipped in the repo."""
    env = {"PYTHONPATH": _pythonpath(DJANGO_DIR), "DJANGO_SETTINGS_MODULE": "mysite.settings"}
    with running("mysite.wsgi:application", "--workers", "1", env=env) as srv:
        r = get(srv, "/download/readme.txt")
    expected = (DJANGO_DIR / "mysite" / "files" / "readme.txt").read_bytes()
    assert r.status == 200, r
    assert r.header("content-type", "").startswith("text/plain")
    assert r.header("content-length") == str(len(expected))
    assert r.body == expected


def test_django_download_then_keepalive_request(dj):
    """After a sendfile'd body the connection is still in step for the next request."""
    s, reader = connect(dj)
    with s:
        s.sendall(head_bytes("GET", "/download/big.bin", close=False))
        r1 = reader.read_response()
        s.sendall(head_bytes("GET", "/api/info/?after=download"))
        r2 = reader.read_response()
    assert r1.status == 200 and r1.body == DOWNLOAD
    assert r2.status == 200 and json_of(r2)["query"] == {"after": ["download"]}


def test_django_streaming_response_is_chunked(dj):
    r = get(dj, "/stream/?n=50&delay=0.002")
    assert r.status == 200, r
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert_chunked(r)
    assert r.body == "".join(f"line {i}\n" for i in range(50)).encode()


def test_django_stream_arrives_while_it_is_produced(dj):
    """The first line of a slow stream reaches the client before the last is made."""
    s, reader = connect(dj)
    with s:
        start = time.monotonic()
        s.sendall(head_bytes("GET", "/stream/?n=4&delay=0.5"))
        buf = b""
        while b"line 0\n" not in buf:
            chunk = s.recv(65536)
            assert chunk, buf
            buf += chunk
        first = time.monotonic() - start
        while chunk := s.recv(65536):
            buf += chunk
        total = time.monotonic() - start
    assert first < 1.0, f"first line after {first:.2f}s: the body was buffered"
    assert total >= 1.4
    assert b"line 3\n" in buf and buf.endswith(b"0\r\n\r\n")


def test_django_client_leaving_mid_download_harms_nothing(dj):
    for _ in range(3):
        s, reader = connect(dj)
        s.sendall(head_bytes("GET", "/download/big.bin", close=False))
        assert s.recv(4096).startswith(b"HTTP/1.1 200 ")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST with most of the file unsent
    for _ in range(4):
        r = get(dj, "/download/big.bin")
        assert r.status == 200 and r.body == DOWNLOAD


def test_django_concurrent_clients(dj):
    """More clients at once than the server has threads: everyone is answered."""
    from concurrent.futures import ThreadPoolExecutor

    def client(i: int) -> list[str]:
        out = []
        s, reader = connect(dj)
        with s:
            for j in range(3):
                s.sendall(head_bytes("GET", f"/stream/?n=3&delay=0.01&c={i}-{j}", close=j == 2))
                out.append(reader.read_response().body.decode())
        body = urlencode({"i": str(i)}).encode()
        r = post(dj, "/api/form/", body, "application/x-www-form-urlencoded")
        out.append(json_of(r)["fields"]["i"][0])
        return out

    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(client, range(24)))
    for i, res in enumerate(results):
        assert res == ["line 0\nline 1\nline 2\n"] * 3 + [str(i)]


def test_django_streaming_on_http10_is_close_delimited(dj):
    s, reader = connect(dj)
    with s:
        s.sendall(b"GET /stream/?n=3 HTTP/1.0\r\nHost: test\r\n\r\n")
        r = reader.read_response()
        assert reader.at_eof()
    assert r.status == 200, r
    assert r.header("transfer-encoding") is None
    assert r.body == b"line 0\nline 1\nline 2\n"


def test_django_session_cookie_counter(dj):
    r1 = get(dj, "/counter/")
    assert r1.status == 200 and json_of(r1) == {"visits": 1}
    cookie = next(c for c in r1.header_list("set-cookie") if c.strip().startswith("sessionid="))
    r2 = get(dj, "/counter/", f"Cookie: {cookie.strip().split(';', 1)[0]}\r\n")
    assert r2.status == 200 and json_of(r2) == {"visits": 2}


def test_django_keepalive_several_requests_one_connection(dj):
    s, reader = connect(dj)
    with s:
        results = []
        for i in range(5):
            s.sendall(head_bytes("GET", f"/api/info/?i={i}", close=False))
            results.append(reader.read_response())
        s.sendall(head_bytes("GET", "/stream/?n=2", close=False))
        streamed = reader.read_response()
        body = urlencode({"k": "v"}).encode()
        s.sendall(head_bytes("POST", "/api/form/", {
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(body))}, close=False) + body)
        posted = reader.read_response()
        s.sendall(head_bytes("GET", "/"))
        last = reader.read_response()
        assert reader.at_eof()  # Connection: close on the last request is honoured
    for i, r in enumerate(results):
        assert r.status == 200 and json_of(r)["query"] == {"i": [str(i)]}
        assert r.header("connection") != "close"
    assert streamed.body == b"line 0\nline 1\n"
    assert json_of(posted)["fields"] == {"k": ["v"]}
    assert last.status == 200 and b"<h1>prefork + Django</h1>" in last.body


def test_django_pipelined_requests_answered_in_order(dj):
    s, reader = connect(dj)
    with s:
        s.sendall(b"".join(head_bytes("GET", f"/api/info/?n={i}", close=False)
                           for i in range(4)) + head_bytes("GET", "/api/info/?n=last"))
        got = [json_of(reader.read_response())["query"]["n"][0] for _ in range(5)]
    assert got == ["0", "1", "2", "3", "last"]


def test_django_exception_gives_500_and_server_keeps_serving(dj):
    r = get(dj, "/boom/")
    assert r.status == 500, r
    assert b"Server Error (500)" in r.body
    assert_length_framed(r)
    dj.wait_for_log(r"RuntimeError: boom: this view always fails")
    # A fresh connection afterwards is served normally, several times over
    # (with two workers, more than one of them answers).
    for _ in range(4):
        again = get(dj, "/api/info/")
        assert again.status == 200 and json_of(again)["path"] == "/api/info/"


def test_django_500_on_keepalive_connection_keeps_it_usable(dj):
    s, reader = connect(dj)
    with s:
        s.sendall(head_bytes("GET", "/boom/", close=False))
        r1 = reader.read_response()
        s.sendall(head_bytes("GET", "/api/info/"))
        r2 = reader.read_response()
    assert r1.status == 500
    assert r2.status == 200 and json_of(r2)["path"] == "/api/info/"


# ===========================================================================
# Flask
# ===========================================================================

@pytest.fixture(scope="module")
def flask_env(download_dir) -> dict[str, str]:
    return {"PYTHONPATH": _pythonpath(FLASK_DIR), "FLASK_APP_DOWNLOAD_DIR": str(download_dir)}


@pytest.fixture(scope="module")
def fl(flask_env):
    with running("app:app", "--workers", "2", "--threads", "4", env=flask_env) as srv:
        yield srv


@pytest.fixture
def flask_module(flask_env, monkeypatch):
    monkeypatch.setenv("FLASK_APP_DOWNLOAD_DIR", flask_env["FLASK_APP_DOWNLOAD_DIR"])
    monkeypatch.syspath_prepend(str(FLASK_DIR))
    sys.modules.pop("app", None)
    import app as flask_app_module

    yield flask_app_module
    sys.modules.pop("app", None)


def test_flask_app_is_valid_wsgi(flask_module):
    status, headers, body = run_validated(flask_module.app, "/?name=Val")
    assert status == "200 OK" and b"<h1>Hello, Val!</h1>" in body
    status, headers, body = run_validated(flask_module.app, "/upload", "POST", b"xyz" * 999,
                                          "application/octet-stream")
    assert status == "200 OK"
    assert json.loads(body)["sha256"] == hashlib.sha256(b"xyz" * 999).hexdigest()
    status, headers, body = run_validated(flask_module.app, "/stream?n=2")
    assert status == "200 OK" and body == b"/stream line 0\n/stream line 1\n"
    status, headers, body = run_validated(flask_module.app, "/download/big.bin",
                                          extra={"wsgi.file_wrapper": wsgiref.util.FileWrapper})
    assert status == "200 OK" and body == DOWNLOAD


def test_flask_hello(fl):
    r = get(fl, "/?name=%3Cprefork%3E")
    assert r.status == 200, r
    assert r.header("content-type") == "text/html; charset=utf-8"
    assert_length_framed(r)
    assert b"<title>prefork + Flask</title>" in r.body
    assert b"<h1>Hello, &lt;prefork&gt;!</h1>" in r.body
    assert b"Served by prefork/" in r.body


def test_flask_json(fl):
    r = get(fl, "/json")
    assert r.status == 200, r
    assert_length_framed(r)
    assert json_of(r) == {"message": "hello", "items": [1, 2, 3], "nested": {"ok": True}}


def test_flask_query_params_and_headers(fl):
    r = get(fl, "/inspect?x=1&x=2&empty=&sp=a+b%2Bc",
            "X-Trace: t-1\r\nX-Forwarded-For: 10.0.0.1\r\nUser-Agent: e2e/2\r\n"
            "X_Sneaky: underscores-are-dropped\r\n")
    assert r.status == 200, r
    data = json_of(r)
    assert data["method"] == "GET" and data["path"] == "/inspect"
    assert data["args"] == {"x": ["1", "2"], "empty": [""], "sp": ["a b+c"]}
    assert data["headers"] == {"Host": "test", "X-Trace": "t-1",
                               "X-Forwarded-For": "10.0.0.1", "User-Agent": "e2e/2"}
    # 127.0.0.1 is a trusted proxy by default (forwarded_allow_ips), so the
    # client it names is the one Flask sees.
    assert data["remote_addr"] == "10.0.0.1"
    assert data["url"] == "http://test/inspect?x=1&x=2&empty=&sp=a+b%2Bc"


def test_flask_form_post_urlencoded_and_multipart(fl):
    r = post(fl, "/form", urlencode([("a", "1"), ("a", "2"), ("b", "é")]).encode(),
             "application/x-www-form-urlencoded")
    assert r.status == 200, r
    assert json_of(r) == {"fields": {"a": ["1", "2"], "b": ["é"]}, "files": {}}

    data = os.urandom(1_200_000)
    body, ctype = multipart({"note": "hi"}, {"f": ("data.bin", data, "application/x-raw")})
    r = post(fl, "/form", body, ctype)
    assert r.status == 200, r
    assert json_of(r) == {"fields": {"note": ["hi"]},
                          "files": {"f": {"filename": "data.bin", "size": len(data),
                                          "sha256": hashlib.sha256(data).hexdigest(),
                                          "content_type": "application/x-raw"}}}


@pytest.mark.parametrize("mode", ["get_data", "stream"])
def test_flask_upload_content_length(fl, mode):
    r = post(fl, f"/upload?mode={mode}", UPLOAD, "application/octet-stream")
    assert r.status == 200, r
    data = json_of(r)
    assert data["length"] == len(UPLOAD) and data["sha256"] == UPLOAD_SHA


@pytest.mark.parametrize("mode", ["get_data", "stream"])
def test_flask_upload_chunked(fl, mode):
    r = send_chunked_upload(fl, f"/upload?mode={mode}", UPLOAD)
    assert r.status == 200, r
    data = json_of(r)
    assert data["length"] == len(UPLOAD) and data["sha256"] == UPLOAD_SHA


def test_flask_streaming_generator_is_chunked(fl):
    r = get(fl, "/stream?n=40&delay=0.002")
    assert r.status == 200, r
    assert r.header("content-type") == "text/plain; charset=utf-8"
    assert_chunked(r)
    assert r.body == "".join(f"/stream line {i}\n" for i in range(40)).encode()


def test_flask_stream_failing_midway_is_not_passed_off_as_complete(fl):
    """The 200 head is gone when the generator raises: the client must not get a
    terminating 0-chunk (it would take the truncated body for the whole), and the
    connection must not be reused."""
    s, _ = connect(fl)
    raw = b""
    with s:
        s.sendall(head_bytes("GET", "/stream?n=6&fail_at=3", close=False))
        try:
            while chunk := s.recv(65536):  # the server must close: EOF ends this
                raw += chunk
        except ConnectionResetError:
            pass
    assert raw.startswith(b"HTTP/1.1 200 "), raw
    assert b"chunked" in raw.split(b"\r\n\r\n", 1)[0].lower(), raw
    assert b"/stream line 2\n" in raw  # what was produced did arrive
    assert b"line 3" not in raw
    assert not raw.endswith(b"\r\n0\r\n\r\n"), f"terminated like a complete body: {raw!r}"
    fl.wait_for_log(r"RuntimeError: stream failed at line 3")
    again = get(fl, "/json")
    assert again.status == 200 and json_of(again)["message"] == "hello"


def test_flask_send_file(fl):
    r = get(fl, "/download/big.bin")
    assert r.status == 200, r
    assert_length_framed(r)
    assert r.header("content-length") == str(len(DOWNLOAD))
    assert r.header("content-disposition") == "attachment; filename=big.bin"
    assert r.body == DOWNLOAD


def test_flask_send_file_refuses_traversal(fl):
    assert get(fl, "/download/..%2Fapp.py").status == 404
    assert get(fl, "/download/missing.bin").status == 404


def test_flask_send_file_conditional_304(fl):
    first = get(fl, "/download/big.bin")
    etag = first.header("etag")
    assert etag, first
    s, reader = connect(fl)
    with s:
        s.sendall(head_bytes("GET", "/download/big.bin", {"If-None-Match": etag}, close=False))
        r = reader.read_response()
        s.sendall(head_bytes("GET", "/json"))
        after = reader.read_response()
    assert r.status == 304, r
    assert r.body == b""
    # No body bytes were sent after the 304 head: the next response parses cleanly.
    assert after.status == 200 and json_of(after)["message"] == "hello"


def test_flask_range_request(fl):
    r = get(fl, "/download/big.bin", "Range: bytes=100-1099\r\n")
    assert r.status == 206, r
    assert r.header("content-range") == f"bytes 100-1099/{len(DOWNLOAD)}"
    assert r.header("content-length") == "1000"
    assert r.body == DOWNLOAD[100:1100]


def test_flask_keepalive_several_requests_one_connection(fl):
    s, reader = connect(fl)
    with s:
        s.sendall(head_bytes("GET", "/json", close=False))
        r1 = reader.read_response()
        s.sendall(head_bytes("GET", "/stream?n=3", close=False))
        r2 = reader.read_response()
        s.sendall(head_bytes("GET", "/download/big.bin", close=False))
        r3 = reader.read_response()
        body = b"0123456789" * 1000
        s.sendall(head_bytes("POST", "/upload", {"Content-Type": "application/octet-stream",
                                                 "Content-Length": str(len(body))},
                             close=False) + body)
        r4 = reader.read_response()
        s.sendall(head_bytes("GET", "/?name=last", close=False))
        r5 = reader.read_response()
    assert json_of(r1)["message"] == "hello"
    assert r2.body == b"/stream line 0\n/stream line 1\n/stream line 2\n"
    assert r3.body == DOWNLOAD
    assert json_of(r4)["sha256"] == hashlib.sha256(body).hexdigest()
    assert b"Hello, last!" in r5.body


def test_flask_exception_gives_500_and_next_connection_works(fl):
    r = get(fl, "/boom")
    assert r.status == 500, r
    assert b"Internal Server Error" in r.body
    assert_length_framed(r)
    fl.wait_for_log(r"RuntimeError: boom: this route always fails")
    for _ in range(4):
        again = get(fl, "/json")
        assert again.status == 200 and json_of(again)["message"] == "hello"


def test_flask_abort_and_404(fl):
    assert get(fl, "/teapot").status == 418
    assert get(fl, "/nope").status == 404
    r = request(fl, head_bytes("POST", "/json", {"Content-Length": "0"}))
    assert r.status == 405 and r.header("allow") is not None


# ===========================================================================
# Embedding: examples/embed.py runs prefork.serve() itself
# ===========================================================================

def test_embed_example_serves_and_stops_on_term():
    env = dict(os.environ, BIND="127.0.0.1:0", PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(EXAMPLES / "embed.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log: list[str] = []
    listening = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            log.append(raw.decode("utf-8", "replace"))
            if LISTEN_RE.search(log[-1]):
                listening.set()

    reader_thread = threading.Thread(target=read, daemon=True)
    reader_thread.start()
    try:
        assert listening.wait(15), "".join(log)
        port = int(next(m for m in map(LISTEN_RE.search, log) if m).group(2))
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(head_bytes("GET", "/", close=False) + head_bytes("GET", "/env?k=v"))
            reader = HTTPReader(s)
            r1, r2 = reader.read_response(), reader.read_response()
        assert r1.status == 200 and r1.body == b"Hello from an embedded prefork!\n"
        assert_length_framed(r1)
        env_seen = json_of(r2)
        assert env_seen["PATH_INFO"] == "/env" and env_seen["QUERY_STRING"] == "k=v"
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(15)
        except subprocess.TimeoutExpired:
            rc = None
        assert rc == 0, f"exit status {rc} 15 s after TERM; log:\n{''.join(log)}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        else:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        reader_thread.join(2)
        if proc.stdout:
            proc.stdout.close()


# ===========================================================================
# The commands examples/README.md gives: `cd FOLDER && prefork start APP`
# ===========================================================================

@pytest.mark.parametrize("folder, app, path, expected", [
    (DJANGO_DIR, "mysite.wsgi:application", "/", b"<h1>prefork + Django</h1>"),
    (FLASK_DIR, "app:app", "/?name=readme", b"<h1>Hello, readme!</h1>"),
])
def test_served_from_its_folder_as_the_readme_says(folder, app, path, expected):
    # No example folder on PYTHONPATH: the app is found through the working directory.
    env = {"PYTHONPATH": str(ROOT)}
    with running(app, "--workers", "1", env=env, cwd=folder) as srv:
        r = get(srv, path)
    assert r.status == 200, r
    assert expected in r.body
