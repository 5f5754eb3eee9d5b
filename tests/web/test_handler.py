"""The handler: middleware chain order and hooks (against Django), exceptions → responses,
signals, close(), HEAD, file_wrapper."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from prefork.web import (
    FileResponse,
    Http404,
    MiddlewareNotUsed,
    PermissionDenied,
    Response,
    Settings,
    StreamingResponse,
    WSGIHandler,
    path,
    require_http_methods,
)
from prefork.web.exceptions import BadRequest, HTTPError, RequestDataTooBig
from tests.web import mw_spec
from tests.web.helpers import build_environ, call

# The Django side runs as tests.web.<module>, from the repository root.
ROOT = Path(__file__).resolve().parents[2]


def build_ours(trace: list[str]) -> WSGIHandler:
    fw = SimpleNamespace(Response=Response, MiddlewareNotUsed=MiddlewareNotUsed,
                         PermissionDenied=PermissionDenied, path=path)
    middleware, urlpatterns = mw_spec.build(fw, trace)
    return WSGIHandler(Settings(urlconf=urlpatterns, middleware=middleware))


@pytest.fixture(scope="module")
def django_trace() -> dict[str, list[str]]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-m", "tests.web.django_mw"], env=env,
                         capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_middleware_built_once_in_djangos_order(django_trace: dict[str, list[str]]) -> None:
    trace: list[str] = []
    app = build_ours(trace)
    assert trace == django_trace["init"] == ["E:init", "D:init", "C:init", "B:init", "A:init"]
    call(app, "/ok/")
    assert "E:init" not in trace[5:]  # not rebuilt per request


@pytest.mark.parametrize("p", mw_spec.PATHS)
def test_middleware_trace_equals_djangos(django_trace: dict[str, list[str]], p: str) -> None:
    trace: list[str] = []
    app = build_ours(trace)
    trace.clear()
    result = call(app, p)
    assert [*trace, str(result.code)] == django_trace[p]


def view_ok(request: Any) -> Response:
    return Response("ok")


def test_exception_in_middleware_becomes_response_outer_layers_see() -> None:
    seen: list[int] = []

    def outer(get_response: Any) -> Any:
        def mw(request: Any) -> Response:
            response = get_response(request)
            seen.append(response.status_code)
            return response
        return mw

    def inner(get_response: Any) -> Any:
        def mw(request: Any) -> Response:
            raise BadRequest("nope")
        return mw

    app = WSGIHandler(Settings(urlconf=[path("", view_ok)], middleware=[outer, inner]))
    assert call(app, "/").code == 400
    assert seen == [400]


def test_middleware_given_as_dotted_path() -> None:
    app = WSGIHandler(Settings(urlconf=[path("", view_ok)],
                               middleware=["prefork.web.middleware.RequestIdMiddleware"]))
    assert len(call(app, "/").header("X-Request-ID") or "") == 32


def test_view_returning_wrong_type_is_a_500_naming_the_view() -> None:
    def bad(request: Any) -> Any:
        return "not a response"
    app = WSGIHandler(Settings(urlconf=[path("", bad)], debug=True))
    r = call(app, "/")
    assert r.code == 500 and "bad" in r.text and "not a Response" in r.text


def test_signals_fire_and_close_is_called_once() -> None:
    events: list[str] = []
    closed: list[int] = []

    def gen() -> Any:
        try:
            yield b"a"
            yield b"b"
        finally:
            closed.append(1)

    app = WSGIHandler(Settings(urlconf=[path("", lambda r: StreamingResponse(gen()))]))
    app.request_started.append(lambda env: events.append("started " + env["PATH_INFO"]))
    app.request_finished.append(lambda env: events.append("finished"))
    app.request_finished.append(lambda env: 1 / 0)  # a broken callback is logged, not fatal
    r = call(app, "/")
    assert r.body == b"ab" and events == ["started /", "finished"] and closed == [1]


def test_close_runs_even_when_client_goes_away_mid_stream() -> None:
    closed: list[int] = []

    def gen() -> Any:
        try:
            yield b"a"
            yield b"b"
        finally:
            closed.append(1)

    app = WSGIHandler(Settings(urlconf=[path("", lambda r: StreamingResponse(gen()))]))
    body = app(build_environ("/"), lambda s, h, e=None: None)
    next(iter(body))
    body.close()  # type: ignore[attr-defined]
    assert closed == [1]


def test_head_sends_headers_without_body() -> None:
    app = WSGIHandler(Settings(urlconf=[path("", require_http_methods(["GET"])(view_ok))]))
    r = call(app, "/", method="HEAD")
    assert r.code == 200 and r.body == b"" and r.header("Content-Length") == "2"


def test_require_http_methods_gives_405_with_allow() -> None:
    app = WSGIHandler(Settings(urlconf=[path("", require_http_methods(["GET", "POST"])(view_ok))]))
    r = call(app, "/", method="DELETE")
    assert r.code == 405 and r.header("Allow") == "GET, POST, HEAD"


def test_custom_404_and_500_handlers() -> None:
    def boom(request: Any) -> Response:
        raise RuntimeError("secret")

    s = Settings(urlconf=[path("boom/", boom)],
                 handler404=lambda request, exc: Response("custom 404", status=404),
                 handler500=lambda request: Response("custom 500", status=500))
    app = WSGIHandler(s)
    assert call(app, "/nowhere/").text == "custom 404"
    assert call(app, "/boom/").text == "custom 500"


def test_broken_500_handler_falls_back_to_plain_500() -> None:
    def boom(request: Any) -> Response:
        raise RuntimeError("secret")

    def broken(request: Any) -> Response:
        raise RuntimeError("handler broke")

    app = WSGIHandler(Settings(urlconf=[path("", boom)], handler500=broken))
    r = call(app, "/")
    assert r.code == 500 and "secret" not in r.text and "broke" not in r.text


def test_http404_from_view() -> None:
    def v(request: Any) -> Response:
        raise Http404("no such article")
    assert call(WSGIHandler(Settings(urlconf=[path("", v)])), "/").code == 404


def test_app_errors_carry_status_like_protocol_errors_with_status_code_as_alias() -> None:
    from prefork.http import errors as protocol
    assert RequestDataTooBig("big").status == protocol.BodyTooLarge("big").status == 413
    assert Http404().status_code == Http404.status == 404

    class Teapot(BadRequest):       # written against the old name
        status_code = 418

    class Gone(HTTPError):
        status = 410

    def teapot(request: Any) -> Response:
        raise Teapot("short and stout")

    def gone(request: Any) -> Response:
        raise Gone("moved on")

    app = WSGIHandler(Settings(urlconf=[path("tea/", teapot), path("gone/", gone)]))
    assert Teapot.status == Teapot("x").status_code == 418
    assert call(app, "/tea/").code == 418
    assert Gone("x").status_code == 410
    assert call(app, "/gone/").code == 410


def test_file_response_uses_file_wrapper_and_closes(tmp_path: Path) -> None:
    target = tmp_path / "data.txt"
    target.write_bytes(b"hello file")
    opened: list[Any] = []

    def v(request: Any) -> FileResponse:
        f = open(target, "rb")  # noqa: SIM115 - the response owns it
        opened.append(f)
        return FileResponse(f)

    finished: list[int] = []
    app = WSGIHandler(Settings(urlconf=[path("f/", v)]))
    app.request_finished.append(lambda env: finished.append(1))
    env = build_environ("/f/", file_wrapper=True)
    r = call(app, environ=env)
    assert r.body == b"hello file" and r.header("Content-Length") == "10"
    assert r.header("Content-Type") == "text/plain"
    assert opened[0].closed and finished == [1]
    captured: list[Any] = []
    body = app(build_environ("/f/", file_wrapper=True), lambda s, h, e=None: None)
    captured.append(body)
    from wsgiref.util import FileWrapper
    assert isinstance(body, FileWrapper)
    body.close()


def test_file_response_without_wrapper_streams() -> None:
    app = WSGIHandler(Settings(urlconf=[path("", lambda r: FileResponse(io.BytesIO(b"x" * 100000)))]))
    r = call(app, "/")
    assert r.body == b"x" * 100000


def test_content_length_set_for_plain_responses_not_for_304() -> None:
    app = WSGIHandler(Settings(urlconf=[path("", view_ok)]))
    assert call(app, "/").header("Content-Length") == "2"


def test_settings_can_be_a_plain_urlconf() -> None:
    assert call(WSGIHandler([path("", view_ok)]), "/").text == "ok"
