"""Error pages.

The plain pages (:func:`page_not_found`, :func:`bad_request`,
:func:`permission_denied`, :func:`server_error`) are what production users see:
a status line and one sentence, never a path, a pattern, a setting or a
traceback. The technical pages are only used when ``settings.debug`` is on: a
404 listing the URL patterns that were tried, and a 500 with the traceback
and each frame's local variables. Everything shown is HTML-escaped.
"""

from __future__ import annotations

import html
import traceback
from typing import TYPE_CHECKING, Any

from .exceptions import HTTPError
from .response import Response

if TYPE_CHECKING:
    from .request import Request

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font:15px/1.4 system-ui,sans-serif;margin:2em;color:#222}}
pre{{background:#f4f4f4;padding:.6em;overflow:auto}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ddd;padding:2px 6px;text-align:left;vertical-align:top}}
h1{{font-size:1.4em}} .frame{{margin-bottom:1.2em}}</style></head>
<body><h1>{title}</h1>{body}</body></html>
"""
_REPR_LIMIT = 2000


def _page(title: str, body: str, status: int) -> Response:
    return Response(_PAGE.format(title=html.escape(title), body=body), status=status)


def page_not_found(request: Request, exc: BaseException | None = None) -> Response:
    return _page("Not Found", "<p>The requested resource was not found on this server.</p>", 404)


def permission_denied(request: Request, exc: BaseException | None = None) -> Response:
    return _page("Forbidden", "<p>You do not have permission to access this resource.</p>", 403)


def bad_request(request: Request, exc: BaseException | None = None) -> Response:
    status = exc.status if isinstance(exc, HTTPError) else 400
    titles = {413: "Content Too Large", 400: "Bad Request"}
    return _page(titles.get(status, "Bad Request"),
                 "<p>The server could not understand the request.</p>", status)


def server_error(request: Request | None = None, exc: BaseException | None = None) -> Response:
    return _page("Server Error (500)", "<p>Something went wrong on our side.</p>", 500)


def _describe(pattern: Any) -> str:
    text = html.escape(str(pattern.pattern))
    name = getattr(pattern, "name", None)
    ns = getattr(pattern, "namespace", None)
    if name:
        text += f" <small>[name='{html.escape(name)}']</small>"
    if ns:
        text += f" <small>[namespace='{html.escape(ns)}']</small>"
    return text


def technical_404(request: Request, exc: BaseException) -> Response:
    """The debug 404: the path, the patterns tried in order, and the message."""
    tried = getattr(exc, "tried", None)
    if tried is None and request.resolver is not None:
        tried = request.resolver.all_routes()
    rows = "".join(f"<li>{' '.join(_describe(p) for p in chain)}</li>" for chain in tried or [])
    body = (f"<p><b>{html.escape(request.method)}</b> <code>{html.escape(request.path)}</code></p>"
            f"<p>{html.escape(str(exc))}</p>")
    if rows:
        body += (f"<p>prefork.web tried these URL patterns, in this order:</p><ol>{rows}</ol>"
                 f"<p>The current path, <code>{html.escape(request.path_info)}</code>, "
                 "matched none of these.</p>")
    body += "<p>You see this page because <code>debug=True</code>. Turn it off in production.</p>"
    return _page("Page not found (404)", body, 404)


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as e:  # a broken __repr__ must not break the error page
        text = f"<repr failed: {type(e).__name__}>"
    return text if len(text) <= _REPR_LIMIT else text[:_REPR_LIMIT] + "…"


def technical_500(request: Request, exc: BaseException) -> Response:
    """The debug 500: exception, traceback, and every frame's local variables."""
    frames = []
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        code = frame.f_code
        local_rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td><pre>{html.escape(_safe_repr(value))}</pre></td></tr>"
            for name, value in sorted(frame.f_locals.items()))
        frames.append(
            f'<div class="frame"><code>{html.escape(code.co_filename)}</code>, line {lineno}, '
            f"in <code>{html.escape(code.co_name)}</code>"
            f"<table><tr><th>Variable</th><th>Value</th></tr>{local_rows}</table></div>")
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    body = (f"<p><b>{html.escape(type(exc).__name__)}</b>: {html.escape(str(exc))}</p>"
            f"<p><b>{html.escape(request.method)}</b> <code>{html.escape(request.path)}</code></p>"
            f"<h2>Traceback</h2><pre>{html.escape(tb)}</pre>"
            f"<h2>Frames</h2>{''.join(frames)}"
            "<p>You see this page because <code>debug=True</code>. Turn it off in production.</p>")
    return _page(f"{type(exc).__name__} at {request.path}", body, 500)
