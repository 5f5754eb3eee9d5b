"""Responses: what views return and what the handler hands to the WSGI server.

A response is a status, case-insensitive headers, cookies and a body. The body
is either bytes (:class:`Response`) or an iterable streamed as produced
(:class:`StreamingResponse`, :class:`FileResponse`). ``close()`` releases
everything the response holds (open files, generators) and runs the
callbacks registered with :meth:`Response.add_closer`; the handler arranges for
the WSGI server to call it exactly once.
"""

from __future__ import annotations

import html
import json
import mimetypes
import os
import string
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from datetime import datetime
from email.utils import format_datetime
from http import HTTPStatus
from http.cookies import SimpleCookie
from typing import IO, Any
from urllib.parse import quote


class ResponseHeaders(MutableMapping[str, str]):
    """Headers keyed case-insensitively, keeping the case they were set with."""

    def __init__(self, initial: Any = None) -> None:
        self._store: dict[str, tuple[str, str]] = {}
        for key, value in dict(initial or {}).items():
            self[key] = value

    def __setitem__(self, key: str, value: str) -> None:
        value = str(value)
        if "\n" in value or "\r" in value or "\n" in key or "\r" in key:
            raise ValueError(f"header {key!r} contains a newline")
        self._store[key.lower()] = (key, value)

    def __getitem__(self, key: str) -> str:
        return self._store[key.lower()][1]

    def __delitem__(self, key: str) -> None:
        del self._store[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return (key for key, _ in self._store.values())

    def __len__(self) -> int:
        return len(self._store)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._store

    def items_for_wsgi(self) -> list[tuple[str, str]]:
        return list(self._store.values())


class Response:
    """A response with a bytes body.

    ``content`` may be bytes, str (encoded with ``charset``) or an iterable of
    those (joined at once). ``headers`` is case-insensitive; ``response[name]``
    works too. ``status`` must be a known HTTP status or come with ``reason``.
    """

    streaming = False

    def __init__(self, content: Any = b"", status: int = 200, content_type: str | None = None,
                 headers: Any = None, charset: str = "utf-8", reason: str | None = None) -> None:
        self.status_code = int(status)
        self.charset = charset
        self.headers = ResponseHeaders(headers)
        self.cookies: SimpleCookie = SimpleCookie()
        self._reason = reason
        self._closers: list[Callable[[], Any]] = []
        self._closed = False
        if "Content-Type" not in self.headers:
            self.headers["Content-Type"] = content_type or f"text/html; charset={charset}"
        self.content = content

    @property
    def reason_phrase(self) -> str:
        if self._reason is not None:
            return self._reason
        try:
            return HTTPStatus(self.status_code).phrase
        except ValueError:
            return "Unknown Status Code"

    @property
    def status_line(self) -> str:
        return f"{self.status_code} {self.reason_phrase}"

    def _to_bytes(self, value: Any) -> bytes:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        if isinstance(value, str):
            return value.encode(self.charset)
        return str(value).encode(self.charset)

    @property
    def content(self) -> bytes:
        return self._content

    @content.setter
    def content(self, value: Any) -> None:
        if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray | str | memoryview):
            chunks = [self._to_bytes(chunk) for chunk in value]
            close = getattr(value, "close", None)
            if close is not None:
                close()
            value = b"".join(chunks)
        self._content = self._to_bytes(value)

    def __iter__(self) -> Iterator[bytes]:
        return iter((self._content,))

    # Django's dict-style header access.
    def __getitem__(self, key: str) -> str:
        return self.headers[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.headers[key] = value

    def __delitem__(self, key: str) -> None:
        del self.headers[key]

    def has_header(self, key: str) -> bool:
        return key in self.headers

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.headers.get(key, default)

    def set_cookie(self, key: str, value: str = "", max_age: int | None = None,
                   expires: datetime | str | None = None, path: str = "/",
                   domain: str | None = None, secure: bool = False, httponly: bool = False,
                   samesite: str | None = None, partitioned: bool = False) -> None:
        """Set a cookie; ``samesite`` is 'Lax', 'Strict' or 'None'."""
        self.cookies[key] = value
        morsel = self.cookies[key]
        if isinstance(expires, datetime):
            expires = format_datetime(expires, usegmt=True) if expires.tzinfo else \
                expires.strftime("%a, %d %b %Y %H:%M:%S GMT")
        if expires is not None:
            morsel["expires"] = expires
        if max_age is not None:
            morsel["max-age"] = int(max_age)
        morsel["path"] = path
        if domain is not None:
            morsel["domain"] = domain
        if secure:
            morsel["secure"] = True
        if httponly:
            morsel["httponly"] = True
        if samesite is not None:
            if samesite.lower() not in ("lax", "strict", "none"):
                raise ValueError('samesite must be "Lax", "Strict" or "None"')
            morsel["samesite"] = samesite
        if partitioned:
            morsel["partitioned"] = True

    def delete_cookie(self, key: str, path: str = "/", domain: str | None = None,
                      samesite: str | None = None) -> None:
        secure = key.startswith(("__Secure-", "__Host-")) or (samesite or "").lower() == "none"
        self.set_cookie(key, max_age=0, path=path, domain=domain, secure=secure,
                        expires="Thu, 01 Jan 1970 00:00:00 GMT", samesite=samesite)

    def header_items(self) -> list[tuple[str, str]]:
        """Headers and Set-Cookie lines as the WSGI ``response_headers`` list."""
        items = self.headers.items_for_wsgi()
        items.extend(("Set-Cookie", morsel.OutputString()) for morsel in self.cookies.values())
        return items

    def add_closer(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` when the response is closed (after the body was sent)."""
        self._closers.append(callback)

    def close(self) -> None:
        """Release resources; every closer runs even if an earlier one raises."""
        if self._closed:
            return
        self._closed = True
        errors: list[BaseException] = []
        for closer in self._closers:
            try:
                closer()
            except Exception as e:  # one failing closer must not skip the others
                errors.append(e)
        if errors:
            raise errors[0]


class JsonResponse(Response):
    """``data`` serialised as JSON; a non-dict needs ``safe=False`` (old JSON-hijacking rule)."""

    def __init__(self, data: Any, safe: bool = True, encoder: type[json.JSONEncoder] | None = None,
                 json_dumps_params: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if safe and not isinstance(data, dict):
            raise TypeError("JsonResponse serialises only dicts unless safe=False")
        kwargs.setdefault("content_type", "application/json")
        super().__init__(json.dumps(data, cls=encoder, **(json_dumps_params or {})), **kwargs)


class StreamingResponse(Response):
    """A body produced chunk by chunk; ``streaming_content`` is consumed exactly once."""

    streaming = True

    def __init__(self, streaming_content: Iterable[Any] = (), *args: Any, **kwargs: Any) -> None:
        self._iterator: Iterator[Any] | None = None
        super().__init__(b"", *args, **kwargs)
        self.streaming_content = streaming_content

    @property
    def content(self) -> bytes:
        raise AttributeError("a StreamingResponse has no content; iterate streaming_content")

    @content.setter
    def content(self, value: Any) -> None:
        if value:
            raise AttributeError("use streaming_content for a StreamingResponse")

    @property
    def streaming_content(self) -> Iterator[bytes]:
        return map(self._to_bytes, self._iterator or iter(()))

    @streaming_content.setter
    def streaming_content(self, value: Iterable[Any]) -> None:
        # A middleware replacing the stream wraps the old one; the old one
        # must still be closed when the response is.
        close = getattr(value, "close", None)
        if close is not None:
            self.add_closer(close)
        self._iterator = iter(value)

    def __iter__(self) -> Iterator[bytes]:
        return self.streaming_content


class FileResponse(StreamingResponse):
    """Stream an open binary file; the handler passes it to ``wsgi.file_wrapper``
    so the server can use sendfile. Content-Type, Content-Length and
    Content-Disposition are set from the file when they can be known."""

    block_size = 64 * 1024

    def __init__(self, file: IO[bytes], *args: Any, as_attachment: bool = False,
                 filename: str = "", **kwargs: Any) -> None:
        self.file_to_stream: IO[bytes] | None = file
        super().__init__(iter(lambda: file.read(self.block_size), b""), *args, **kwargs)
        self.add_closer(file.close)
        name = filename or os.path.basename(str(getattr(file, "name", "") or ""))
        if "content_type" not in kwargs and name:
            guessed, encoding = mimetypes.guess_type(name)
            ctype = {"gzip": "application/gzip", "bzip2": "application/x-bzip"}.get(
                encoding or "", guessed or "application/octet-stream")
            self.headers["Content-Type"] = ctype
        elif "content_type" not in kwargs:
            self.headers["Content-Type"] = "application/octet-stream"
        try:
            size = os.fstat(file.fileno()).st_size - file.tell()
        except (AttributeError, OSError, ValueError):
            size = None
        if size is not None:
            self.headers["Content-Length"] = str(size)
        if as_attachment or name:
            self.headers["Content-Disposition"] = _disposition(name, as_attachment)


def _disposition(name: str, attachment: bool) -> str:
    kind = "attachment" if attachment else "inline"
    if not name:
        return kind
    try:
        name.encode("ascii")
        return f'{kind}; filename="{name.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
    except UnicodeEncodeError:
        return f"{kind}; filename*=utf-8''{quote(name)}"


class RedirectResponse(Response):
    """Redirect to ``url`` (302 by default; 301, 303, 307, 308 also valid).

    Only http, https, ftp and relative URLs are accepted, so user input cannot
    turn into a ``javascript:`` redirect.
    """

    def __init__(self, url: str, status: int = 302, **kwargs: Any) -> None:
        if status not in (301, 302, 303, 307, 308):
            raise ValueError(f"{status} is not a redirect status")
        scheme = url.split(":", 1)[0].lower() if ":" in url.split("/", 1)[0] else ""
        if scheme and scheme not in ("http", "https", "ftp"):
            raise ValueError(f"unsafe redirect to URL with scheme {scheme!r}")
        super().__init__(b"", status=status, **kwargs)
        self.headers["Location"] = quote(url, safe="/#%[]=:;$&()+,!?*@'~")
        self.url = url


def redirect(url: str, permanent: bool = False) -> RedirectResponse:
    return RedirectResponse(url, status=301 if permanent else 302)


class NotModifiedResponse(Response):
    """304: no body and no Content-Type."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(b"", status=304, **kwargs)
        del self.headers["Content-Type"]


class MethodNotAllowedResponse(Response):
    """405 with the Allow header listing ``permitted_methods``."""

    def __init__(self, permitted_methods: Iterable[str], **kwargs: Any) -> None:
        super().__init__(b"Method Not Allowed", status=405, content_type="text/plain; charset=utf-8",
                         **kwargs)
        self.headers["Allow"] = ", ".join(m.upper() for m in permitted_methods)


class TemplateResponse(Response):
    """A response rendered late, so ``process_template_response`` middleware can
    change ``template`` or ``context`` first. The template is a
    :class:`string.Template` (``$name``); context values are HTML-escaped."""

    def __init__(self, template: str, context: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(b"", **kwargs)
        self.template = template
        self.context = dict(context or {})
        self.is_rendered = False

    def render(self) -> Response:
        if not self.is_rendered:
            values = {k: html.escape(str(v)) for k, v in self.context.items()}
            self.content = string.Template(self.template).substitute(values)
            self.is_rendered = True
        return self
