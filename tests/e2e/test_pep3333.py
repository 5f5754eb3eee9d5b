"""The real server under wsgiref.validate: PEP 3333 from the app's side."""

from __future__ import annotations

import json

import pytest

from tests.server import HTTPReader, request, running

CASES = [
    (b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n", "GET", 200),
    (b"GET /stream?n=3 HTTP/1.1\r\nHost: x\r\n\r\n", "GET", 200),
    (b"GET /write HTTP/1.1\r\nHost: x\r\n\r\n", "GET", 200),
    (b"GET /environ?a=1 HTTP/1.1\r\nHost: x\r\nX-Thing: y\r\n\r\n", "GET", 200),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", "GET", 200),
    (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", "GET", 200),
    (b"POST /readlines HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\na\nb\nc\nd\n", "GET", 200),
    (b"HEAD /hello HTTP/1.1\r\nHost: x\r\n\r\n", "HEAD", 200),
    (b"GET /file?size=70000 HTTP/1.1\r\nHost: x\r\n\r\n", "GET", 200),
    (b"GET /nowhere HTTP/1.0\r\n\r\n", "GET", 404),
]


@pytest.fixture(scope="module")
def srv():
    with running("validated:app") as s:
        yield s


@pytest.mark.parametrize("raw, method, status", CASES, ids=[c[0].split(b" ")[1].decode() for c in CASES])
def test_validator_stays_silent(srv, raw, method, status):
    with srv.connect() as c:
        c.sendall(raw)
        r = HTTPReader(c).read_response(method)
    assert r.status == status, (r, srv.log[-2000:])
    assert "Warning" not in srv.log and "AssertionError" not in srv.log, srv.log[-2000:]


def test_validated_echo_body_is_intact(srv):
    body = bytes(range(256)) * 10
    r = request(srv, b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert json.loads(r.body)["length"] == len(body)
