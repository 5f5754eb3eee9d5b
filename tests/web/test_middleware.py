"""Responses, the standard middleware, and the debug pages (on and off)."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from typing import Any

import pytest

from prefork.web import (
    STANDARD_MIDDLEWARE,
    JsonResponse,
    RedirectResponse,
    Response,
    Settings,
    StreamingResponse,
    WSGIHandler,
    include,
    path,
)
from tests.web.helpers import call


def page(request: Any) -> Response:
    return Response("<p>" + "hello " * 100 + "</p>")


def stream(request: Any) -> StreamingResponse:
    return StreamingResponse(f"line {i}\n" for i in range(50))


def cached(request: Any) -> Response:
    r = Response("cached body")
    r["ETag"] = '"v1"'
    r["Last-Modified"] = "Wed, 01 Jan 2025 00:00:00 GMT"
    return r


def boom(request: Any) -> Response:
    secret_local = "hunter2-local"  # noqa: F841 - shown by the debug page only
    raise RuntimeError("kaboom <script>")


URLS = [
    path("page/", page, name="page"), path("stream/", stream), path("cached/", cached),
    path("boom/", boom), path("only-slash/", page), path("api/", include([path("v/", page)])),
]


def app(**kw: Any) -> WSGIHandler:
    return WSGIHandler(Settings(urlconf=URLS, middleware=STANDARD_MIDDLEWARE, **kw))


def test_append_slash_redirects_only_when_slashed_url_resolves() -> None:
    r = call(app(), "/only-slash", query="a=1")
    assert r.code == 301 and r.header("Location") == "/only-slash/?a=1"
    assert call(app(), "/nothing-here").code == 404
    assert call(app(append_slash=False), "/only-slash").code == 404
    assert call(app(), "/only-slash", method="POST").code == 308


def test_security_headers() -> None:
    r = call(app(), "/page/")
    assert r.header("X-Content-Type-Options") == "nosniff"
    assert r.header("X-Frame-Options") == "DENY" and r.header("Referrer-Policy") == "same-origin"
    assert r.header("Strict-Transport-Security") is None
    r = call(app(secure_hsts_seconds=60), "/page/", **{"wsgi.url_scheme": "https"})
    assert r.header("Strict-Transport-Security") == "max-age=60"


def test_ssl_redirect() -> None:
    r = call(app(secure_ssl_redirect=True), "/page/", headers={"Host": "ex.com"})
    assert r.code == 301 and r.header("Location") == "https://ex.com/page/"


def test_gzip_plain_and_streaming() -> None:
    r = call(app(), "/page/", headers={"Accept-Encoding": "gzip, br"})
    assert r.header("Content-Encoding") == "gzip" and "Accept-Encoding" in (r.header("Vary") or "")
    assert gzip.decompress(r.body).startswith(b"<p>hello")
    assert r.header("Content-Length") == str(len(r.body))
    r = call(app(), "/stream/", headers={"Accept-Encoding": "gzip"})
    assert gzip.decompress(r.body) == "".join(f"line {i}\n" for i in range(50)).encode()
    assert call(app(), "/page/").header("Content-Encoding") is None


def test_conditional_get_etag_and_last_modified() -> None:
    assert call(app(), "/cached/", headers={"If-None-Match": '"v1"'}).code == 304
    r = call(app(), "/cached/", headers={"If-None-Match": '"v2"'})
    assert r.code == 200 and r.body == b"cached body"
    assert call(app(), "/cached/", headers={"If-Modified-Since": "Thu, 02 Jan 2025 00:00:00 GMT"}).code == 304
    assert call(app(), "/cached/", headers={"If-Modified-Since": "garbage"}).code == 200
    r = call(app(), "/page/")
    etag = r.header("ETag")
    r304 = call(app(), "/page/", headers={"If-None-Match": etag or ""})
    assert r304.code == 304 and r304.body == b"" and r304.header("Content-Type") is None


def test_request_id_generated_or_kept() -> None:
    assert len(call(app(), "/page/").header("X-Request-ID") or "") == 32
    assert call(app(), "/page/", headers={"X-Request-ID": "abc-123"}).header("X-Request-ID") == "abc-123"
    assert call(app(), "/page/", headers={"X-Request-ID": "<bad>"}).header("X-Request-ID") != "<bad>"


def test_debug_off_leaks_nothing() -> None:
    r = call(app(), "/boom/")
    assert r.code == 500
    for secret in ("kaboom", "hunter2", "Traceback", "boom", ".py"):
        assert secret not in r.text
    r = call(app(), "/nowhere/")
    assert r.code == 404 and "page/" not in r.text and "nowhere" not in r.text


def test_debug_500_shows_traceback_and_locals_escaped() -> None:
    r = call(app(debug=True), "/boom/")
    assert r.code == 500 and "Traceback" in r.text and "hunter2-local" in r.text
    assert "kaboom &lt;script&gt;" in r.text and "<script>" not in r.text


def test_debug_404_lists_tried_patterns() -> None:
    r = call(app(debug=True), "/api/x/")
    assert r.code == 404
    assert "page/" in r.text and "stream/" in r.text and "api/ v/" in r.text


def test_response_cookies_all_attributes() -> None:
    def v(request: Any) -> Response:
        r = Response("c")
        r.set_cookie("sid", "abc", max_age=60, path="/x", domain="ex.com", secure=True,
                     httponly=True, samesite="Lax",
                     expires=datetime(2030, 1, 1, tzinfo=UTC))
        r.delete_cookie("old")
        return r
    cookies = call(WSGIHandler([path("", v)]), "/").header_list("Set-Cookie")
    sid = next(c for c in cookies if c.startswith("sid="))
    for part in ("Max-Age=60", "Path=/x", "Domain=ex.com", "Secure", "HttpOnly", "SameSite=Lax",
                 "expires=Tue, 01 Jan 2030 00:00:00 GMT"):
        assert part in sid
    assert any(c.startswith("old=") and "Max-Age=0" in c for c in cookies)


def test_json_response_and_redirect_safety() -> None:
    with pytest.raises(TypeError):
        JsonResponse([1, 2])
    assert JsonResponse([1], safe=False).content == b"[1]"
    with pytest.raises(ValueError):
        RedirectResponse("javascript:alert(1)")
    assert RedirectResponse("/a b").headers["Location"] == "/a%20b"


def test_header_injection_refused() -> None:
    with pytest.raises(ValueError):
        Response("x")["X-A"] = "a\r\nSet-Cookie: evil=1"
