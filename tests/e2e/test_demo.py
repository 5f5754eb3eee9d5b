"""The demo site (prefork.web) served by the real server: what `make run` shows."""

from __future__ import annotations

import json

import pytest

from tests.server import HTTPReader, get, request, running


@pytest.fixture(scope="module")
def demo():
    with running(None, "--threads", "2") as s:   # no APP: the built-in demo site
        yield s


def test_home_page_says_prefork_is_running_with_the_worker_pid(demo):
    r = get(demo, "/")
    assert r.status == 200 and r.header("content-type").startswith("text/html")
    status = json.loads(get(demo, "/api/status/").body)
    assert b"prefork is running" in r.body
    assert str(status["pid"]).encode() in get(demo, "/").body


def test_hello_route_with_converter_and_escaping(demo):
    r = get(demo, "/hello/%3Cb%3Ealice/")
    assert r.status == 200
    assert b"<b>alice" not in r.body and b"&lt;b&gt;alice" in r.body


def test_json_endpoint_counts_requests(demo):
    first = json.loads(get(demo, "/api/status/").body)["requests"]
    second = json.loads(get(demo, "/api/status/").body)["requests"]
    assert second > first


def test_form_post_round_trip(demo):
    body = b"message=hi+there%21"
    r = request(demo, b"POST /form/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                b"Content-Type: application/x-www-form-urlencoded\r\n"
                b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert r.status == 200 and b"hi there!" in r.body


def test_streaming_endpoint_is_chunked(demo):
    r = get(demo, "/stream/")
    assert r.header("transfer-encoding") == "chunked"
    assert r.body.count(b"chunk ") == 10


def test_unknown_path_is_404_without_internals(demo):
    r = get(demo, "/no/such/page")
    assert r.status == 404
    assert b"Traceback" not in r.body


def test_append_slash_redirect(demo):
    r = get(demo, "/api/status")
    assert r.status in (301, 308) and r.header("location").endswith("/api/status/")


def test_head_on_a_view(demo):
    with demo.connect() as s:
        s.sendall(b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /api/status/ HTTP/1.1\r\nHost: x\r\n\r\n")
        reader = HTTPReader(s)
        head = reader.read_response("HEAD")
        assert head.status == 200 and head.body == b""
        assert reader.read_response().status == 200
