"""The request object: a thin, lazy view over a WSGI environ.

Nothing is parsed until asked for: ``GET``, ``POST``, ``FILES``, ``COOKIES`` and
``body`` are computed on first access and cached. Anything malformed the
client sent (a bad Content-Length, an undecodable body, broken multipart, an
unknown charset, too many fields) raises a :class:`BadRequest` subclass, which
the handler answers with a 4xx, never a 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, quote, urljoin

from .conf import Settings
from .exceptions import BadRequest, DisallowedHost, RequestDataTooBig, TooManyFieldsSent
from .multipart import UploadedFile, boundary_of, parse_multipart

if TYPE_CHECKING:
    from .urls import ResolverMatch, URLResolver


class MultiValueDictKeyError(KeyError, BadRequest):
    """A form or query key the view required is missing: the client's fault (400)."""


class MultiDict(Mapping[str, Any]):
    """Keys mapping to lists of values; ``d[key]`` is the last value, as in Django."""

    def __init__(self, pairs: list[tuple[str, Any]] | None = None) -> None:
        self._lists: dict[str, list[Any]] = {}
        for key, value in pairs or ():
            self._lists.setdefault(key, []).append(value)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._lists[key][-1]
        except KeyError:
            raise MultiValueDictKeyError(key) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._lists)

    def __len__(self) -> int:
        return len(self._lists)

    def getlist(self, key: str) -> list[Any]:
        return list(self._lists.get(key, ()))

    def lists(self) -> list[tuple[str, list[Any]]]:
        return [(k, list(v)) for k, v in self._lists.items()]

    def __repr__(self) -> str:
        return f"<MultiDict {self._lists!r}>"


class Headers(Mapping[str, str]):
    """Request headers from the environ, looked up case-insensitively by HTTP name."""

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    @staticmethod
    def _key(name: str) -> str:
        key = name.upper().replace("-", "_")
        return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key

    def __getitem__(self, name: str) -> str:
        return str(self._environ[self._key(name)])

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").title()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield key.replace("_", "-").title()

    def __len__(self) -> int:
        return sum(1 for _ in self)


_SURROGATE = re.compile("[\udc80-\udcff]")


def _wsgi_str(value: str) -> str:
    """Re-decode a PEP 3333 latin-1 string as UTF-8; undecodable bytes stay %-escaped."""
    raw = value.encode("latin-1", "replace")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "surrogateescape")
        return _SURROGATE.sub(lambda m: f"%{ord(m.group()) - 0xDC00:02X}", text)


def _content_type(value: str) -> tuple[str, dict[str, str]]:
    msg = Message()
    msg["content-type"] = value
    params = {k.lower(): str(v) for k, v in msg.get_params([])[1:]} if value else {}
    return msg.get_content_type() if value else "", params


def parse_query(qs: str | bytes, charset: str, max_fields: int | None) -> MultiDict:
    """Parse an urlencoded string leniently (like browsers); only the field cap raises."""
    # Split and unquote as latin-1, which maps every byte to one character, then
    # decode the real bytes with the request's charset.
    text = qs.decode("latin-1") if isinstance(qs, bytes) else qs
    try:
        "".encode(charset)
        pairs = parse_qsl(text, keep_blank_values=True, encoding="latin-1", errors="replace",
                          max_num_fields=max_fields)
    except LookupError:
        raise BadRequest(f"unknown charset {charset!r}") from None
    except ValueError:
        raise TooManyFieldsSent("too many fields in query string or form") from None
    return MultiDict([(k.encode("latin-1", "replace").decode(charset, "replace"),
                       v.encode("latin-1", "replace").decode(charset, "replace")) for k, v in pairs])


def parse_cookies(header: str) -> dict[str, str]:
    """Parse a Cookie header as browsers send it; pairs that make no sense are skipped
    rather than failing the request (another app on the domain may have set them)."""
    cookies: dict[str, str] = {}
    for chunk in header.split(";"):
        key, sep, value = chunk.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key:
            continue
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        cookies[key] = _wsgi_str(value)
    return cookies


class Request:
    """One HTTP request. Built by the handler; views receive it as their first argument."""

    def __init__(self, environ: dict[str, Any], settings: Settings | None = None,
                 resolver: URLResolver | None = None) -> None:
        self.environ = self.META = environ
        self.settings = settings or Settings()
        self.resolver = resolver
        self.resolver_match: ResolverMatch | None = None
        self.method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        self.path_info = _wsgi_str(environ.get("PATH_INFO", "")) or "/"
        self.script_name = _wsgi_str(environ.get("SCRIPT_NAME", "")).rstrip("/")
        self.path = self.script_name + self.path_info
        self.headers = Headers(environ)
        self.content_type, self.content_params = _content_type(environ.get("CONTENT_TYPE", ""))
        self.encoding = self.content_params.get("charset", self.settings.default_charset)
        self._cache: dict[str, Any] = {}
        self._files: list[UploadedFile] = []

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.path!r}>"

    # --- query, cookies, body ---

    @property
    def GET(self) -> MultiDict:  # noqa: N802 - Django's name, kept for familiarity
        if "GET" not in self._cache:
            self._cache["GET"] = parse_query(self.environ.get("QUERY_STRING", ""),
                                             self.settings.default_charset,
                                             self.settings.data_upload_max_number_fields)
        return self._cache["GET"]  # type: ignore[no-any-return]

    @property
    def COOKIES(self) -> dict[str, str]:  # noqa: N802
        if "COOKIES" not in self._cache:
            self._cache["COOKIES"] = parse_cookies(self.environ.get("HTTP_COOKIE", ""))
        return self._cache["COOKIES"]  # type: ignore[no-any-return]

    @property
    def content_length(self) -> int:
        """The declared body length; raises BadRequest when it is not a number."""
        raw = str(self.environ.get("CONTENT_LENGTH") or "0")
        if not (raw.isascii() and raw.isdigit()):
            raise BadRequest(f"invalid Content-Length {raw[:40]!r}")
        # Other servers pass the client's spelling: leading zeros past
        # int()'s 4300-digit limit would raise ValueError (a 500).
        digits = raw.lstrip("0")
        if len(digits) > 18:
            raise BadRequest(f"Content-Length of {len(digits)} digits")
        return int(digits or "0")

    def _body_length(self, limit: int | None) -> int:
        length = self.content_length
        if not length and self.environ.get("wsgi.input_terminated"):
            length = limit + 1 if limit is not None else 1 << 62
        return length

    @property
    def body(self) -> bytes:
        """The whole body; RequestDataTooBig past ``data_upload_max_memory_size``."""
        if "body" not in self._cache:
            if "POST" in self._cache and self.content_type == "multipart/form-data":
                raise RuntimeError("body is unavailable once a multipart form was parsed")
            limit = self.settings.data_upload_max_memory_size
            length = self._body_length(limit)
            if limit is not None and self.content_length > limit:
                raise RequestDataTooBig("request body exceeds data_upload_max_memory_size")
            stream = self.environ["wsgi.input"]
            chunks, got = [], 0
            while got < length:
                data = stream.read(min(65536, length - got))
                if not data:
                    break
                chunks.append(data)
                got += len(data)
                if limit is not None and got > limit:
                    raise RequestDataTooBig("request body exceeds data_upload_max_memory_size")
            if self.content_length and got < self.content_length:
                raise BadRequest("request body shorter than Content-Length")
            self._cache["body"] = b"".join(chunks)
        return self._cache["body"]  # type: ignore[no-any-return]

    def text(self) -> str:
        try:
            return self.body.decode(self.encoding)
        except (UnicodeDecodeError, LookupError):
            raise BadRequest(f"request body is not valid {self.encoding}") from None

    def json(self) -> Any:
        """The body parsed as JSON; BadRequest if it is not."""
        try:
            return json.loads(self.text())
        except ValueError:
            raise BadRequest("request body is not valid JSON") from None

    # --- forms ---

    def _load_form(self) -> None:
        fields, files = MultiDict(), MultiDict()
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            if self.content_type == "multipart/form-data":
                boundary = boundary_of(self.content_params)
                try:
                    "".encode(self.encoding)
                except LookupError:
                    raise BadRequest(f"unknown charset {self.encoding!r}") from None
                length = self._body_length(None)
                field_pairs, file_pairs = parse_multipart(
                    self.environ["wsgi.input"], length, boundary, self.encoding, self.settings)
                self._files.extend(f for _, f in file_pairs)
                fields, files = MultiDict(field_pairs), MultiDict(file_pairs)
            elif self.content_type == "application/x-www-form-urlencoded":
                fields = parse_query(self.body, self.encoding,
                                     self.settings.data_upload_max_number_fields)
        self._cache["POST"], self._cache["FILES"] = fields, files

    @property
    def POST(self) -> MultiDict:  # noqa: N802
        if "POST" not in self._cache:
            self._load_form()
        return self._cache["POST"]  # type: ignore[no-any-return]

    @property
    def FILES(self) -> MultiDict:  # noqa: N802
        if "FILES" not in self._cache:
            self._load_form()
        return self._cache["FILES"]  # type: ignore[no-any-return]

    def close(self) -> None:
        """Release uploaded files (temporary files are deleted on close)."""
        for f in self._files:
            f.close()

    # --- where the request came from ---

    @property
    def scheme(self) -> str:
        header = self.settings.secure_proxy_ssl_header
        if header is not None:
            name, secure_value = header
            value = self.environ.get(name)
            if value is not None:
                return "https" if value.split(",")[0].strip() == secure_value else "http"
        return str(self.environ.get("wsgi.url_scheme", "http"))

    def is_secure(self) -> bool:
        """True for https; a proxy header counts only if ``secure_proxy_ssl_header`` names it."""
        return self.scheme == "https"

    def get_host(self) -> str:
        """Host[:port] from X-Forwarded-Host (only if trusted), Host, or SERVER_NAME;
        DisallowedHost when it is not in ``allowed_hosts``."""
        env = self.environ
        host: str
        if self.settings.use_x_forwarded_host and "HTTP_X_FORWARDED_HOST" in env:
            host = env["HTTP_X_FORWARDED_HOST"].split(",")[-1].strip()
        elif "HTTP_HOST" in env:
            host = env["HTTP_HOST"]
        else:
            host = env.get("SERVER_NAME", "localhost")
            port = str(env.get("SERVER_PORT", ""))
            if port and port != ("443" if self.is_secure() else "80"):
                host = f"{host}:{port}"
        if not _host_allowed(host, self.settings.allowed_hosts):
            raise DisallowedHost(f"Host {host!r} is not in allowed_hosts")
        return host

    def build_absolute_uri(self, location: str | None = None) -> str:
        """An absolute URL for ``location`` (default: this request's full path)."""
        base = f"{self.scheme}://{self.get_host()}{quote(self.path)}"
        if location is None:
            qs = self.environ.get("QUERY_STRING", "")
            return base + (f"?{qs}" if qs else "")
        return urljoin(base, location)

    def get_full_path(self) -> str:
        qs = self.environ.get("QUERY_STRING", "")
        return quote(self.path) + (f"?{qs}" if qs else "")


_HOST_RE = re.compile(r"^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::([0-9]+))?$")


def _host_allowed(host: str, allowed: Any) -> bool:
    m = _HOST_RE.match(host.lower())
    if m is None:
        return False
    domain = m.group(1).rstrip(".")
    for pattern in allowed:
        if pattern == "*" or domain == pattern or (
                pattern.startswith(".") and (domain.endswith(pattern) or domain == pattern[1:])):
            return True
    return False
