"""prefork.web: a small Django-style application layer for any WSGI server.

    from prefork.web import Settings, WSGIHandler, Response, path

    def hello(request, name):
        return Response(f"Hello, {name}!")

    application = WSGIHandler(Settings(urlconf=[path("hello/<str:name>/", hello)]))

It imports nothing from the rest of prefork and only the standard library.
"""

from .conf import Settings
from .decorators import require_GET, require_http_methods, require_POST, require_safe
from .exceptions import (
    BadRequest,
    Http404,
    HTTPError,
    ImproperlyConfigured,
    MiddlewareNotUsed,
    NoReverseMatch,
    PermissionDenied,
    RequestDataTooBig,
    Resolver404,
)
from .handler import BaseHandler, WSGIHandler, get_wsgi_application
from .middleware import STANDARD_MIDDLEWARE
from .request import Request
from .response import (
    FileResponse,
    JsonResponse,
    MethodNotAllowedResponse,
    NotModifiedResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
    TemplateResponse,
    redirect,
)
from .urls import get_resolver, include, path, re_path, register_converter, resolve, reverse

__all__ = [
    "BadRequest", "BaseHandler", "FileResponse", "HTTPError", "Http404", "ImproperlyConfigured",
    "JsonResponse", "MethodNotAllowedResponse", "MiddlewareNotUsed", "NoReverseMatch",
    "NotModifiedResponse", "PermissionDenied", "RedirectResponse", "Request", "RequestDataTooBig",
    "Resolver404", "Response", "STANDARD_MIDDLEWARE", "Settings", "StreamingResponse",
    "TemplateResponse", "WSGIHandler", "get_resolver", "get_wsgi_application", "include", "path",
    "re_path", "redirect", "register_converter", "require_GET", "require_POST",
    "require_http_methods", "require_safe", "resolve", "reverse",
]
