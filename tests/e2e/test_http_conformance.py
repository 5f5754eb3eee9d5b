"""RFC 9110/9112 and PEP 3333 rules the hardening pass put right, end to end:
PATH_INFO decoding, fragments, method tokens, singleton fields, forbidden
trailers, higher HTTP/1.x minors, and what an application may answer.
"""

from __future__ import annotations

import json

import pytest

from tests.server import HTTPReader, request, running

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def srv():
    with running("testapp:app", "--threads", "2") as s:
        yield s


def environ_of(srv, raw: bytes) -> dict:
    r = request(srv, raw)
    assert r.status == 200, r
    return json.loads(r.body)


def test_path_info_is_the_decoded_bytes_as_latin1(srv):
    # A raw UTF-8 "é" (two bytes) next to an escaped one: four bytes, each
    # once; before, the raw bytes were encoded again as UTF-8 (six bytes).
    env = environ_of(srv, b"GET /environ-at/\xc3\xa9%C3%A9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert env["PATH_INFO"] == "/environ-at/\xc3\xa9\xc3\xa9"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/environ-at/éé"


def test_path_info_decodes_escapes_to_single_bytes(srv):
    env = environ_of(srv, b"GET /environ-at/%ff%2F%20 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert env["PATH_INFO"] == "/environ-at/\xff/ "


@pytest.mark.parametrize("target", [b"/hello#frag", b"/hello?a=1#frag", b"http://x/hello#f", b"/#"])
def test_a_fragment_in_the_target_is_400(srv, target):
    r = request(srv, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 400 and r.header("connection") == "close"


@pytest.mark.parametrize("method", [b"M-SEARCH", b"PURGE!", b"X#Y", b"1", b"A.B_C~D'E*F+G^H`I|J%K$L&M"])
def test_every_token_is_a_method(srv, method):
    env = environ_of(srv, method + b" /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert env["REQUEST_METHOD"] == method.decode()


@pytest.mark.parametrize("name", [b"Content-Type", b"Authorization", b"Range", b"If-Modified-Since",
                                  b"If-Unmodified-Since", b"If-Range", b"Proxy-Authorization",
                                  b"Max-Forwards"])
def test_a_singleton_field_sent_twice_is_400(srv, name):
    raw = (b"GET /environ HTTP/1.1\r\nHost: x\r\n" + name + b": a\r\n" + name.lower()
           + b": b\r\n\r\n")
    r = request(srv, raw)
    assert r.status == 400 and b"more than one" in r.body


def test_list_fields_sent_twice_are_joined(srv):
    env = environ_of(srv, b"GET /environ HTTP/1.1\r\nHost: x\r\nAccept: a\r\nAccept: b\r\n"
                          b"Connection: close\r\n\r\n")
    assert env["HTTP_ACCEPT"] == "a, b"


@pytest.mark.parametrize("name", [b"Content-Length", b"Transfer-Encoding", b"Host", b"Content-Type",
                                  b"Authorization", b"Cookie", b"Trailer", b"Range", b"Connection"])
def test_a_field_that_must_not_be_a_trailer_is_400(srv, name):
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n0\r\n" + name + b": 1\r\n\r\n")
    r = request(srv, raw)
    assert r.status == 400 and b"not allowed in a trailer" in r.body


def test_an_ordinary_trailer_is_accepted(srv):
    raw = (b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           b"5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n")
    r = request(srv, raw)
    assert r.status == 200 and json.loads(r.body)["length"] == 5


@pytest.mark.parametrize("version", [b"1.2", b"1.9"])
def test_a_higher_http1_minor_is_answered_as_http11(srv, version):
    with srv.connect() as s:
        s.sendall(b"GET /environ HTTP/" + version + b"\r\nHost: x\r\n\r\n"
                  b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reader = HTTPReader(s)
        r = reader.read_response()
        assert r.status == 200 and r.version == "HTTP/1.1"
        assert json.loads(r.body)["SERVER_PROTOCOL"] == "HTTP/1.1"
        assert reader.read_response().body == b"Hello, World!"     # kept alive


@pytest.mark.parametrize("code", [100, 101, 103, 199])
def test_an_informational_final_status_from_the_app_is_500(srv, code):
    r = request(srv, f"GET /status/{code} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert r.status == 500


@pytest.mark.parametrize("code", [204, 304])
def test_the_apps_content_length_is_dropped_on_204_and_304(srv, code):
    with srv.connect() as s:
        s.sendall(f"GET /status-cl/{code} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
                  + b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reader = HTTPReader(s)
        r = reader.read_response()
        assert r.status == code and r.header("content-length") is None
        assert reader.read_response().body == b"Hello, World!"


def test_content_length_reaches_the_app_as_its_value(srv):
    raw = (b"POST /environ HTTP/1.1\r\nHost: x\r\nContent-Length: 0005\r\nConnection: close\r\n\r\n"
           b"hello")
    assert environ_of(srv, raw)["CONTENT_LENGTH"] == "5"
