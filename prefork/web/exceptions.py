"""Errors of the application layer.

Every error a view or middleware may raise to mean "answer with this status"
is an :class:`HTTPError` subclass carrying its ``status``; the handler
turns it into a response at the layer where it was raised, so outer
middleware always see a response, never a traceback.

``status`` is the name the protocol layer's errors (prefork.http.errors) use
too, and the one ``Response(status=...)`` takes. ``status_code`` stays as an
alias, for code written against the old name, and a subclass may still set
``status_code`` instead.
"""

from __future__ import annotations

from typing import Any


class HTTPError(Exception):
    """Base for errors that map to one HTTP status; the message is log-safe."""

    status = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass written against the old name: status_code = 418.
        if "status_code" in cls.__dict__ and "status" not in cls.__dict__:
            cls.status = cls.__dict__["status_code"]

    @property
    def status_code(self) -> int:
        """The old name of ``status``."""
        return self.status


class BadRequest(HTTPError):
    """The client sent something we cannot interpret (400)."""

    status = 400


class RequestDataTooBig(BadRequest):
    """A body, form or upload exceeded a configured size limit (413)."""

    status = 413


class TooManyFieldsSent(BadRequest):
    """A form had more fields than ``Settings.data_upload_max_number_fields`` (400)."""


class TooManyFilesSent(BadRequest):
    """A multipart form had more files than ``Settings.data_upload_max_number_files`` (400)."""


class DisallowedHost(BadRequest):
    """The Host header is not in ``Settings.allowed_hosts`` (400)."""


class PermissionDenied(HTTPError):
    """The user may not do this (403)."""

    status = 403


class Http404(HTTPError):
    """Nothing lives here (404)."""

    status = 404


class Resolver404(Http404):
    """No URL pattern matched ``path``; ``tried`` lists the route chains tried
    (computed only when asked, so production 404s do not pay for it)."""

    def __init__(self, path: str, resolver: Any = None) -> None:
        super().__init__(f"no URL pattern matches {path!r}")
        self.path = path
        self._resolver = resolver

    @property
    def tried(self) -> list[list[Any]]:
        return self._resolver.all_routes() if self._resolver is not None else []


class MiddlewareNotUsed(Exception):
    """Raised by a middleware factory to take itself out of the chain."""


class ImproperlyConfigured(Exception):
    """The application's own configuration is wrong (found at start-up)."""


class NoReverseMatch(Exception):
    """``reverse()`` found no pattern for the name and arguments given."""
