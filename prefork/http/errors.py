"""Protocol errors, each carrying the status a client should see.

The parser and the connection raise these; the worker turns one into a short
plain-text response and closes the connection, because after a framing error
the rest of the byte stream can no longer be trusted.
"""

from __future__ import annotations


class ClientGone(Exception):
    """Writing the response failed: the client closed, reset, or stopped
    reading past the write timeout. Raised by the transport (from the OSError),
    so an OSError raised by the application itself is told apart: that one is
    an application error, and gets a 500."""


class RequestError(Exception):
    """A request that cannot be served, raised by the protocol layer: the
    parser, the connection, the proxy headers. ``status``/``reason`` go on
    the wire. (An application's own errors are
    :class:`prefork.web.HTTPError`, turned into responses by the app layer.)"""

    status = 400
    reason = "Bad Request"

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.status} {self.reason}: {self.detail}"


class BadRequest(RequestError):
    status, reason = 400, "Bad Request"


class RequestTimeout(RequestError):
    """A head or body that did not arrive within its deadline."""

    status, reason = 408, "Request Timeout"

    def __init__(self, detail: str = "the request took too long to arrive"):
        super().__init__(detail)


class BodyTooLarge(RequestError):
    status, reason = 413, "Content Too Large"


class URITooLong(RequestError):
    status, reason = 414, "URI Too Long"


class ExpectationFailed(RequestError):
    status, reason = 417, "Expectation Failed"


class HeadersTooLarge(RequestError):
    status, reason = 431, "Request Header Fields Too Large"


class NotImplementedCoding(RequestError):
    """A transfer coding or method feature this server does not implement."""

    status, reason = 501, "Not Implemented"


class InternalError(RequestError):
    """The server failed while reading the request (a full or missing
    upload directory, a bug): the request cannot be served."""

    status, reason = 500, "Internal Server Error"


class ServiceUnavailable(RequestError):
    """The server is out of a shared resource (request buffer memory)."""

    status, reason = 503, "Service Unavailable"


class VersionNotSupported(RequestError):
    status, reason = 505, "HTTP Version Not Supported"
