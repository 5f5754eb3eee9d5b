"""The standard middleware. Each is a factory ``Middleware(get_response)`` returning
a callable ``(request) -> response``, exactly as Django's, and reads its
configuration from ``request.settings``.

The usual order, outermost first::

    [RequestIdMiddleware, SecurityMiddleware, GZipMiddleware,
     ConditionalGetMiddleware, CommonMiddleware]
"""

from __future__ import annotations

import hashlib
import re
import uuid
import zlib
from collections.abc import Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any

from .request import Request
from .response import NotModifiedResponse, RedirectResponse, Response, StreamingResponse

GetResponse = Callable[[Request], Response]


def _add_vary(response: Response, header: str) -> None:
    existing = [v.strip() for v in response.headers.get("Vary", "").split(",") if v.strip()]
    if header.lower() not in (v.lower() for v in existing) and "*" not in existing:
        response.headers["Vary"] = ", ".join([*existing, header])


class CommonMiddleware:
    """APPEND_SLASH: a 404 for ``/foo`` becomes a redirect to ``/foo/`` when, and
    only when, ``/foo/`` resolves and ``/foo`` does not. GET/HEAD get 301; other
    methods get 308 so the body is re-sent instead of silently dropped."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: Request) -> Response:
        response = self.get_response(request)
        if response.status_code == 404 and self._should_append_slash(request):
            response.close()
            location = request.script_name + request.path_info + "/"
            qs = request.environ.get("QUERY_STRING", "")
            if location.startswith("//"):
                location = "/%2F" + location[2:]  # never a protocol-relative URL
            response = RedirectResponse(location + (f"?{qs}" if qs else ""),
                                        status=301 if request.method in ("GET", "HEAD") else 308)
        return response

    @staticmethod
    def _should_append_slash(request: Request) -> bool:
        if not request.settings.append_slash or request.path_info.endswith("/"):
            return False
        resolver = request.resolver
        if resolver is None:
            return False
        return not _resolves(resolver, request.path_info) and _resolves(resolver, request.path_info + "/")


def _resolves(resolver: Any, path: str) -> bool:
    try:
        resolver.resolve(path)
    except Exception:
        return False
    return True


class SecurityMiddleware:
    """Security headers (nosniff, Referrer-Policy, COOP, X-Frame-Options, HSTS on
    https) and the optional redirect of plain http to https."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: Request) -> Response:
        s = request.settings
        if s.secure_ssl_redirect and not request.is_secure():
            return RedirectResponse(f"https://{request.get_host()}{request.get_full_path()}",
                                    status=301)
        response = self.get_response(request)
        headers = response.headers
        if s.secure_content_type_nosniff:
            headers.setdefault("X-Content-Type-Options", "nosniff")
        if s.secure_referrer_policy:
            headers.setdefault("Referrer-Policy", s.secure_referrer_policy)
        if s.secure_cross_origin_opener_policy:
            headers.setdefault("Cross-Origin-Opener-Policy", s.secure_cross_origin_opener_policy)
        if s.x_frame_options:
            headers.setdefault("X-Frame-Options", s.x_frame_options)
        if s.secure_hsts_seconds and request.is_secure():
            value = f"max-age={s.secure_hsts_seconds}"
            if s.secure_hsts_include_subdomains:
                value += "; includeSubDomains"
            headers.setdefault("Strict-Transport-Security", value)
        return response


_GZIP_RE = re.compile(r"\bgzip\b")


def _compress_stream(chunks: Iterator[bytes]) -> Iterator[bytes]:
    z = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip container
    for chunk in chunks:
        data = z.compress(chunk)
        if data:
            yield data
        else:
            # Flush so a slow stream (server-sent events, progress) still reaches the client.
            yield z.flush(zlib.Z_SYNC_FLUSH)
    yield z.flush()


class GZipMiddleware:
    """Compress responses for clients that accept gzip. Streaming responses are
    compressed chunk by chunk (with a sync flush per chunk, so they stay
    streaming); small or already-encoded bodies are left alone."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: Request) -> Response:
        response = self.get_response(request)
        headers = response.headers
        if response.status_code < 200 or response.status_code in (204, 304):
            return response
        _add_vary(response, "Accept-Encoding")
        if "Content-Encoding" in headers or not _GZIP_RE.search(
                request.environ.get("HTTP_ACCEPT_ENCODING", "")):
            return response
        if isinstance(response, StreamingResponse):
            response.streaming_content = _compress_stream(response.streaming_content)
            headers.pop("Content-Length", None)
        else:
            if len(response.content) < request.settings.gzip_min_length:
                return response
            compressed = zlib.compress(response.content, 6, wbits=31)
            if len(compressed) >= len(response.content):
                return response
            response.content = compressed
            headers["Content-Length"] = str(len(compressed))
        etag = headers.get("ETag")
        if etag and etag.startswith('"'):
            headers["ETag"] = "W/" + etag  # the bytes changed, so only weakly equal
        headers["Content-Encoding"] = "gzip"
        return response


def _etags(header: str) -> list[str]:
    return [t.strip().removeprefix("W/") for t in header.split(",") if t.strip()]


def conditional_response(request: Request, response: Response) -> Response:
    """304 instead of ``response`` when a GET/HEAD's If-None-Match or
    If-Modified-Since says the client already has it (RFC 9110 §13.2.2)."""
    if request.method not in ("GET", "HEAD") or response.status_code != 200:
        return response
    env = request.environ
    etag, last_modified = response.headers.get("ETag"), response.headers.get("Last-Modified")
    if "HTTP_IF_NONE_MATCH" in env:
        tags = _etags(env["HTTP_IF_NONE_MATCH"])
        fresh = etag is not None and ("*" in tags or etag.removeprefix("W/") in tags)
    elif "HTTP_IF_MODIFIED_SINCE" in env and last_modified:
        try:
            fresh = parsedate_to_datetime(last_modified) <= parsedate_to_datetime(
                env["HTTP_IF_MODIFIED_SINCE"])
        except (TypeError, ValueError):
            fresh = False  # an unparsable date is ignored, as RFC 9110 says
    else:
        fresh = False
    if not fresh:
        return response
    not_modified = NotModifiedResponse()
    for name in ("Cache-Control", "Content-Location", "Date", "ETag", "Expires", "Last-Modified",
                 "Vary"):
        if name in response.headers:
            not_modified.headers[name] = response.headers[name]
    not_modified.cookies = response.cookies
    response.close()
    return not_modified


class ConditionalGetMiddleware:
    """Give non-streaming GET responses an ETag (a hash of the body) when the view
    did not, and answer 304 when the client's copy is current."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: Request) -> Response:
        response = self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            return response
        if not response.streaming and response.status_code == 200 and "ETag" not in response.headers:
            digest = hashlib.md5(response.content, usedforsecurity=False).hexdigest()
            response.headers["ETag"] = f'"{digest}"'
        return conditional_response(request, response)


_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,200}$")


class RequestIdMiddleware:
    """Give each request an id (``request.id``) and echo it in the response.

    An incoming id is kept when it looks like one (so a proxy's id follows the
    request through the logs); anything else is replaced by a fresh uuid4.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: Request) -> Response:
        header = request.settings.request_id_header
        incoming = request.environ.get("HTTP_" + header.upper().replace("-", "_"), "")
        request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
        request.id = request_id  # type: ignore[attr-defined]
        response = self.get_response(request)
        response.headers[header] = request_id
        return response


STANDARD_MIDDLEWARE = (RequestIdMiddleware, SecurityMiddleware, GZipMiddleware,
                       ConditionalGetMiddleware, CommonMiddleware)
