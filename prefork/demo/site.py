"""The demo site: what ``prefork start`` serves when given no application.

It is written with :mod:`prefork.web` only, so it doubles as its showcase:
routes with converters, the standard middleware, JSON, a form, a stream.
The request count is this worker process's own (a server may add its own
environ keys, but the demo does not depend on them).
"""

from __future__ import annotations

import html
import itertools
import os
import threading
import time
from collections.abc import Iterator

from prefork.web import (
    STANDARD_MIDDLEWARE,
    JsonResponse,
    Request,
    Response,
    Settings,
    StreamingResponse,
    WSGIHandler,
    path,
    require_http_methods,
)

_STARTED = time.time()
_counter = itertools.count(1)
_lock = threading.Lock()
_served = 0


def _count_request(environ: dict[str, object]) -> None:
    global _served
    with _lock:  # requests arrive on many threads of one worker
        _served = next(_counter)


def _requests() -> int:
    with _lock:
        return _served


_STYLE = ("body{font:16px/1.5 system-ui,sans-serif;max-width:42em;margin:3em auto;color:#222}"
          "code{background:#f2f2f2;padding:0 .3em}a{color:#0a58ca}")


def _page(title: str, body: str, status: int = 200) -> Response:
    return Response(f"<!doctype html><html lang=en><head><meta charset=utf-8>"
                    f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
                    f"<body><h1>{html.escape(title)}</h1>{body}</body></html>", status=status)


@require_http_methods(["GET"])
def home(request: Request) -> Response:
    return _page("prefork is running", f"""
<p>This page is served by worker <b>pid {os.getpid()}</b>, which has handled
<b>{_requests()}</b> request(s) since it started {int(time.time() - _STARTED)} s ago.
Reload to see the count grow (or another worker answer).</p>
<p>Point prefork at your own application with <code>prefork start myproject.wsgi</code>.</p>
<ul>
<li><a href="/hello/world/">/hello/&lt;name&gt;/</a>: a routed view with a parameter</li>
<li><a href="/api/status/">/api/status/</a>: JSON</li>
<li><a href="/form/">/form/</a>: a form post</li>
<li><a href="/stream/">/stream/</a>: a streamed response</li>
</ul>""")


def hello(request: Request, name: str) -> Response:
    return _page(f"Hello, {name}!", '<p><a href="/">back</a></p>')


def status(request: Request) -> JsonResponse:
    return JsonResponse({"server": "prefork", "pid": os.getpid(), "requests": _requests(),
                         "uptime_seconds": round(time.time() - _STARTED, 3)})


@require_http_methods(["GET", "POST"])
def form(request: Request) -> Response:
    said = ""
    if request.method == "POST":
        message = request.POST.get("message", "")
        said = f"<p>You said: <b>{html.escape(message)}</b></p>"
    return _page("A form", f"""{said}
<form method="post"><input name="message" autofocus> <button>Send</button></form>
<p><a href="/">back</a></p>""")


def stream(request: Request) -> StreamingResponse:
    def lines() -> Iterator[str]:
        for i in range(1, 11):
            yield f"chunk {i} of 10 from pid {os.getpid()}\n"
            time.sleep(0.05)  # slow on purpose, so the chunks are visible arriving
    return StreamingResponse(lines(), content_type="text/plain; charset=utf-8")


urlpatterns = [
    path("", home, name="home"),
    path("hello/<str:name>/", hello, name="hello"),
    path("api/status/", status, name="status"),
    path("form/", form, name="form"),
    path("stream/", stream, name="stream"),
]

settings = Settings(urlconf=urlpatterns, middleware=STANDARD_MIDDLEWARE)
application = WSGIHandler(settings)
application.request_started.append(_count_request)
app = application
