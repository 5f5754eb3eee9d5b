"""The WSGI entry point and the request path: middleware chain → resolver → view.

:class:`BaseHandler` builds the middleware chain once, Django style: the
innermost callable resolves the URL and calls the view, and each middleware
factory, from last to first, wraps the chain built so far. Every layer is
wrapped in :func:`convert_exception_to_response`, so an exception raised in a
view or a middleware becomes a response right there and the layers outside it
see a response, as they would in Django. The optional ``process_view``,
``process_exception`` and ``process_template_response`` hooks are collected
into flat lists while building, so the hot path never asks ``hasattr``.

:class:`WSGIHandler` adapts that to PEP 3333 and guarantees the response's
``close()`` runs once the server is done with the body, which is when
``request_finished`` callbacks fire.
"""

from __future__ import annotations

import functools
import importlib
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from . import debug
from .conf import Settings
from .exceptions import (
    Http404,
    HTTPError,
    ImproperlyConfigured,
    MiddlewareNotUsed,
    PermissionDenied,
)
from .request import Request
from .response import FileResponse, Response
from .urls import URLResolver, get_resolver

logger = logging.getLogger("prefork.web")

GetResponse = Callable[[Request], Response]


def _import(target: Any) -> Any:
    if not isinstance(target, str):
        return target
    module, _, name = target.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ImproperlyConfigured(f"cannot import middleware {target!r}: {e}") from e


def response_for_exception(request: Request, exc: BaseException) -> Response:
    """The response for an exception raised while handling ``request``.

    404/403/4xx go to the settings' handlers (or the built-in pages); anything
    else is logged and answered 500, with the technical page only when
    ``settings.debug`` is on. A failing error handler falls back to a bare 500.
    """
    settings = request.settings
    try:
        if isinstance(exc, Http404):
            if settings.debug:
                return debug.technical_404(request, exc)
            return _call_handler(settings.handler404, debug.page_not_found, request, exc)
        if isinstance(exc, PermissionDenied):
            return _call_handler(settings.handler403, debug.permission_denied, request, exc)
        if isinstance(exc, HTTPError) and 400 <= exc.status < 500:
            logger.warning("bad request %s %s: %s", request.method, request.path, exc)
            return _call_handler(settings.handler400, debug.bad_request, request, exc)
        logger.error("internal server error %s %s", request.method, request.path,
                     exc_info=(type(exc), exc, exc.__traceback__))
        if settings.debug:
            return debug.technical_500(request, exc)
        if settings.handler500 is not None:
            return _check(settings.handler500(request), settings.handler500)
        return debug.server_error(request)
    except Exception:
        logger.exception("error handler failed for %s %s", request.method, request.path)
        return debug.server_error(request)


def _call_handler(custom: Callable[..., Any] | None, default: Callable[..., Response],
                  request: Request, exc: BaseException) -> Response:
    if custom is None:
        return default(request, exc)
    return _check(custom(request, exc), custom)


def _check(response: Any, source: Any) -> Response:
    if response is None:
        name = getattr(source, "__qualname__", type(source).__name__)
        raise ValueError(f"{name} returned None instead of a response")
    if not isinstance(response, Response):
        name = getattr(source, "__qualname__", type(source).__name__)
        raise ValueError(f"{name} returned {type(response).__name__}, not a Response")
    return response


def convert_exception_to_response(get_response: GetResponse) -> GetResponse:
    """Wrap one layer so that whatever it raises becomes a response at that layer."""
    @functools.wraps(get_response)
    def inner(request: Request) -> Response:
        try:
            return get_response(request)
        except Exception as exc:
            return response_for_exception(request, exc)
    return inner


class BaseHandler:
    """Builds and runs the middleware chain for one :class:`Settings`."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.resolver: URLResolver = get_resolver(self.settings.urlconf)
        self._view_middleware: list[Callable[..., Any]] = []
        self._template_response_middleware: list[Callable[..., Any]] = []
        self._exception_middleware: list[Callable[..., Any]] = []
        self._middleware_chain: GetResponse = self.load_middleware()

    def load_middleware(self) -> GetResponse:
        """Build the chain, innermost first; called once, from ``__init__``."""
        handler = convert_exception_to_response(self._get_response)
        for entry in reversed(list(self.settings.middleware)):
            factory = _import(entry)
            try:
                mw = factory(handler)
            except MiddlewareNotUsed as e:
                logger.debug("middleware %r not used: %s", entry, e)
                continue
            if mw is None:
                raise ImproperlyConfigured(f"middleware factory {entry!r} returned None")
            if hasattr(mw, "process_view"):
                self._view_middleware.insert(0, mw.process_view)
            if hasattr(mw, "process_template_response"):
                self._template_response_middleware.append(mw.process_template_response)
            if hasattr(mw, "process_exception"):
                self._exception_middleware.append(mw.process_exception)
            handler = convert_exception_to_response(mw)
        return handler

    def get_response(self, request: Request) -> Response:
        """Run the chain; the request's uploads are released with the response."""
        response = self._middleware_chain(request)
        response.add_closer(request.close)
        return response

    def _get_response(self, request: Request) -> Response:
        match = self.resolver.resolve(request.path_info)
        request.resolver_match = match
        callback, args, kwargs = match.func, match.args, match.kwargs
        response = None
        for process_view in self._view_middleware:
            response = process_view(request, callback, args, kwargs)
            if response is not None:
                break
        if response is None:
            try:
                response = callback(request, *args, **kwargs)
            except Exception as exc:
                response = self._process_exception(exc, request)
                if response is None:
                    raise
        response = _check(response, callback)
        render = getattr(response, "render", None)
        if render is not None and callable(render):
            for process_template in self._template_response_middleware:
                response = _check(process_template(request, response), process_template)
            try:
                response = _check(response.render(), response.render)  # type: ignore[attr-defined]
            except Exception as exc:
                response = self._process_exception(exc, request)
                if response is None:
                    raise
        return response

    def _process_exception(self, exc: Exception, request: Request) -> Response | None:
        for process_exception in self._exception_middleware:
            response = process_exception(request, exc)
            if response is not None:
                return _check(response, process_exception)
        return None


class _ClosingBody:
    """The iterable handed to the server: yields the body, closes the response once."""

    def __init__(self, chunks: Iterable[bytes], response: Response) -> None:
        self._chunks, self._response = chunks, response

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._chunks)

    def close(self) -> None:
        self._response.close()


class _FileToStream:
    """The file given to ``wsgi.file_wrapper``: reads pass through, and closing
    it closes the response (the wrapper's close() is all the server calls)."""

    def __init__(self, file: Any, response: Response) -> None:
        self._file, self._response = file, response

    def read(self, size: int = -1) -> bytes:
        return self._file.read(size)  # type: ignore[no-any-return]

    def fileno(self) -> int:
        return self._file.fileno()  # type: ignore[no-any-return]

    def tell(self) -> int:
        return self._file.tell()  # type: ignore[no-any-return]

    def seek(self, *args: Any) -> int:
        return self._file.seek(*args)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._response.close()


_NO_BODY = frozenset((204, 304))


class WSGIHandler(BaseHandler):
    """A PEP 3333 application built from a :class:`Settings` (or a URLconf).

    ``request_started`` and ``request_finished`` are lists of callbacks taking
    the environ: started runs before the request is built, finished when the
    server closes the response. A failing callback is logged, never fatal.
    """

    def __init__(self, settings: Settings | Any = None) -> None:
        if settings is not None and not isinstance(settings, Settings):
            settings = Settings(urlconf=settings)
        super().__init__(settings)
        self.request_started: list[Callable[[dict[str, Any]], Any]] = []
        self.request_finished: list[Callable[[dict[str, Any]], Any]] = []

    def _signal(self, callbacks: list[Callable[[dict[str, Any]], Any]], environ: dict[str, Any]) -> None:
        for callback in callbacks:
            try:
                callback(environ)
            except Exception:
                logger.exception("signal callback %r failed", callback)

    def __call__(self, environ: dict[str, Any],
                 start_response: Callable[..., Any]) -> Iterable[bytes]:
        self._signal(self.request_started, environ)
        request = Request(environ, self.settings, self.resolver)
        response = self.get_response(request)
        if self.request_finished:
            response.add_closer(functools.partial(self._signal, self.request_finished, environ))
        try:
            status = response.status_code
            no_body = status in _NO_BODY or 100 <= status < 200
            if not response.streaming and "Content-Length" not in response.headers and not no_body:
                response.headers["Content-Length"] = str(len(response.content))
            start_response(response.status_line, response.header_items())
        except BaseException:
            response.close()
            raise
        if request.method == "HEAD" or no_body:
            return _ClosingBody((), response)
        wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(response, FileResponse) and wrapper is not None and response.file_to_stream:
            return wrapper(_FileToStream(response.file_to_stream, response),  # type: ignore[no-any-return]
                           response.block_size)
        return _ClosingBody(response, response)


def get_wsgi_application(settings: Settings | Any = None) -> WSGIHandler:
    """A WSGI callable for ``settings``; the name Django users look for."""
    return WSGIHandler(settings)


__all__ = ["BaseHandler", "WSGIHandler", "convert_exception_to_response", "get_wsgi_application",
           "response_for_exception"]
