"""One middleware stack and one set of views, built for Django or prefork.web,
so a recorded call trace can be compared between the two."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

PATHS = ["/ok/", "/short/", "/deny/", "/missing/", "/boom/", "/handled/boom/", "/tmpl/",
         "/tmpl-boom/", "/none/"]


def build(fw: SimpleNamespace, trace: list[str]) -> tuple[list[Any], list[Any]]:
    """Return (middleware factories outermost first, urlpatterns)."""

    def make(label: str, hooks: set[str]) -> type:
        class MW:
            def __init__(self, get_response: Any) -> None:
                trace.append(f"{label}:init")
                if label == "B":
                    raise fw.MiddlewareNotUsed
                self.get_response = get_response

            def __call__(self, request: Any) -> Any:
                trace.append(f"{label}:before")
                if label == "C" and request.path == "/deny/":
                    raise fw.PermissionDenied
                response = self.get_response(request)
                trace.append(f"{label}:after:{response.status_code}")
                return response

        def process_view(self: Any, request: Any, view: Any, args: Any, kwargs: Any) -> Any:
            trace.append(f"{label}:view:{view.__name__}")
            if label == "D" and request.path == "/short/":
                return fw.Response("short", status=202)
            return None

        def process_exception(self: Any, request: Any, exc: Exception) -> Any:
            trace.append(f"{label}:exc:{type(exc).__name__}")
            if label == "C" and request.path.startswith("/handled/"):
                return fw.Response("handled", status=418)
            return None

        def process_template_response(self: Any, request: Any, response: Any) -> Any:
            trace.append(f"{label}:tmpl")
            return response

        for hook, fn in (("view", process_view), ("exc", process_exception),
                         ("tmpl", process_template_response)):
            if hook in hooks:
                setattr(MW, fn.__name__, fn)
        MW.__name__ = label
        return MW

    class Lazy(fw.Response):  # type: ignore[misc,name-defined]
        def render(self) -> Any:
            trace.append("render")
            if self.fail:
                raise RuntimeError("render failed")
            return self

    def lazy(fail: bool) -> Any:
        r = Lazy("lazy")
        r.fail = fail
        return r

    def ok(request: Any) -> Any:
        trace.append("view:ok")
        return fw.Response("ok")

    def boom(request: Any) -> Any:
        trace.append("view:boom")
        raise ValueError("boom")

    def tmpl(request: Any) -> Any:
        trace.append("view:tmpl")
        return lazy(False)

    def tmpl_boom(request: Any) -> Any:
        trace.append("view:tmpl_boom")
        return lazy(True)

    def none(request: Any) -> Any:
        trace.append("view:none")
        return None

    middleware = [
        make("A", {"view", "exc", "tmpl"}),
        make("B", {"view"}),
        make("C", {"exc", "tmpl"}),
        make("D", {"view", "tmpl"}),
        make("E", set()),
    ]
    urlpatterns = [
        fw.path("ok/", ok), fw.path("short/", ok), fw.path("deny/", ok), fw.path("boom/", boom),
        fw.path("handled/boom/", boom), fw.path("tmpl/", tmpl), fw.path("tmpl-boom/", tmpl_boom),
        fw.path("none/", none),
    ]
    return middleware, urlpatterns
