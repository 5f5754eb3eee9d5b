"""PEP 3333: build the environ, run the application, frame and write its response.

The rules for framing a response live in one place, :meth:`Exchange.send_head`:

* the application's own Content-Length is honoured (never more bytes than it
  announced; fewer means the connection is closed, so the client notices);
* a body given as a list or tuple has a known length, so it gets a
  Content-Length and goes out with the head in a single ``send``;
* otherwise HTTP/1.1 responses are chunked and HTTP/1.0 ones end with the
  connection;
* HEAD, 1xx, 204 and 304 responses carry no body.

Headers from the application are validated: a CR, LF or other control
character in a name or value is an application error (a 500), never a way to
inject headers. The transport (the worker's socket writer) is passed in, so
this module has no socket code of its own.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from collections.abc import Callable, Iterable
from email.utils import formatdate
from typing import Any, BinaryIO, Protocol
from urllib.parse import unquote_to_bytes

from .._version import __version__
from .connection import BufferedRequest
from .errors import ClientGone
from .parser import TOKEN

log = logging.getLogger("prefork.error")

_STATUS = re.compile(r"[1-9][0-9][0-9](?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
_FIELD_VALUE = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f]*")
# Hop-by-hop headers are the server's business (PEP 3333); an app's
# "Connection: close" is still honoured as a wish to close.
_HOP_BY_HOP = frozenset(("connection", "keep-alive", "transfer-encoding", "upgrade",
                         "proxy-connection", "te", "trailer"))
_ONE_SEND_MAX = 256 * 1024   # below this, head and body are joined into one send


class Transport(Protocol):
    """What the worker gives a request to write with."""

    def write(self, data: bytes) -> None:
        """Send all of ``data`` or raise ClientGone."""

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of ``fd`` from ``offset``; return bytes sent. Raises ClientGone."""


class FileWrapper:
    """``wsgi.file_wrapper``: lets the server send a real file with sendfile(2)."""

    def __init__(self, filelike: BinaryIO, blksize: int = 65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


_date_cache: list[Any] = [0, ""]


def http_date() -> str:
    """The Date header value, formatted at most once a second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[1] = formatdate(now, usegmt=True)
        _date_cache[0] = now
    date: str = _date_cache[1]
    return date


# Request header name -> environ key (None: dropped). Clients repeat the same
# few spellings, so this saves the upper()/replace() on nearly every header.
_ENV_KEYS: dict[str, str | None] = {}


def _environ_key(name: str) -> str | None:
    key = _ENV_KEYS.get(name)
    if key is None and name not in _ENV_KEYS:
        upper = name.upper()
        if "_" in name:
            # "X_Forwarded_For" would alias "X-Forwarded-For" as HTTP_X_FORWARDED_FOR:
            # a spoofing vector behind proxies that only strip the dashed form.
            key = None
        elif upper == "CONTENT-TYPE":
            key = "CONTENT_TYPE"
        elif upper == "CONTENT-LENGTH":
            key = "CONTENT_LENGTH"
        else:
            key = "HTTP_" + upper.replace("-", "_")
        if len(_ENV_KEYS) < 4096:
            _ENV_KEYS[name] = key
    return key


def base_environ(server_name: str, server_port: str, root_path: str = "",
                 multiprocess: bool = False, url_scheme: str = "http") -> dict[str, Any]:
    """The environ keys that are the same for every request on one listener."""
    return {
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SCRIPT_NAME": root_path.rstrip("/"),
        "SERVER_SOFTWARE": f"prefork/{__version__}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url_scheme,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "wsgi.input_terminated": True,
    }


def make_environ(req: BufferedRequest, base: dict[str, Any], peer: tuple[str, str]) -> dict[str, Any]:
    """The PEP 3333 environ for ``req``: native (latin-1) strings throughout."""
    head = req.head
    env = base.copy()
    env["REQUEST_METHOD"] = head.method
    env["SERVER_PROTOCOL"] = head.version
    env["QUERY_STRING"] = head.query
    env["RAW_URI"] = head.target
    env["REMOTE_ADDR"], env["REMOTE_PORT"] = peer
    env["wsgi.input"] = req.body
    path = head.path
    if "%" in path:
        # The path is the target's bytes as latin-1: decode the escapes on
        # those bytes (a str would be encoded as UTF-8 first, turning a raw
        # non-ASCII byte into two).
        path = unquote_to_bytes(path.encode("latin-1")).decode("latin-1")
    script_name = env["SCRIPT_NAME"]
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        path = path[len(script_name):]
    env["PATH_INFO"] = path
    for name, value in head.headers:
        key = _ENV_KEYS[name] if name in _ENV_KEYS else _environ_key(name)
        if key is None:
            continue
        if key in env:
            sep = "; " if key == "HTTP_COOKIE" else ", "
            env[key] = env[key] + sep + value
        else:
            env[key] = value
    if head.host is not None and target_is_absolute(head):
        # RFC 9112 3.2.2: the authority of an absolute-form target replaces Host.
        env["HTTP_HOST"] = head.host
    if head.chunked:
        # The body was de-chunked while it was buffered: describe what the app reads.
        env.pop("HTTP_TRANSFER_ENCODING", None)
        env["CONTENT_LENGTH"] = str(req.body_length)
    elif head.content_length is not None:
        # The parsed value, not the client's spelling: apps call int() on it,
        # and "000…05" with thousands of zeros is over int()'s digit limit.
        env["CONTENT_LENGTH"] = str(head.content_length)
    return env


def target_is_absolute(head: Any) -> bool:
    target: str = head.target
    return target[0] != "/" and target != "*"


class Exchange:
    """One request/response: ``start_response``, ``write`` and the framing state."""

    __slots__ = ("transport", "method", "version", "keep_alive", "status", "headers",
                 "head_sent", "chunked", "remaining", "no_body", "close_delimited",
                 "bytes_sent", "code", "must_close")

    def __init__(self, transport: Transport, method: str, version: str, keep_alive: bool,
                 must_close: Callable[[], bool] | None = None):
        self.transport = transport
        # Asked when the head goes out: True turns a kept-alive answer into
        # "Connection: close" (the worker is stopping). The protocol layer
        # knows nothing of workers; this is all it is told.
        self.must_close = must_close
        self.method = method
        self.version = version
        self.keep_alive = keep_alive
        self.status: str | None = None
        self.headers: list[tuple[str, str]] = []
        self.head_sent = False
        self.chunked = False
        self.close_delimited = False
        self.no_body = False
        self.remaining: int | None = None  # bytes still allowed by Content-Length
        self.bytes_sent = 0
        self.code = 0

    def start_response(self, status: str, headers: list[tuple[str, str]],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info is not None:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response() called a second time without exc_info")
        if type(status) is not str or _STATUS.fullmatch(status) is None:
            raise ValueError(f"invalid status {status!r}")
        if type(headers) is not list:
            raise TypeError("response headers must be a list")
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise TypeError(f"response header {item!r} is not a (name, value) tuple")
            name, value = item
            if type(name) is not str or TOKEN.fullmatch(name) is None:
                raise ValueError(f"invalid response header name {name!r}")
            if type(value) is not str or _FIELD_VALUE.fullmatch(value) is None:
                raise ValueError(f"invalid value for response header {name!r}: {value!r}")
        self.status = status
        self.headers = headers
        return self.write

    def send_head(self, body: bytes = b"", body_length: int | None = None) -> None:
        """Write the status line and headers, with ``body`` in the same send.

        ``body_length`` is the whole body's length when it is known up front.
        """
        status = self.status
        if status is None:
            raise AssertionError("the application returned without calling start_response()")
        code = self.code = int(status[:3])
        if code < 200:
            # 1xx is informational, never the answer (the server sends 100 Continue itself).
            raise ValueError(f"final status {status!r} from the application is informational")
        no_length = code in (204, 304)
        self.no_body = no_body = self.method == "HEAD" or no_length
        lines = ["HTTP/1.1 ", status, "\r\n"]
        have_date = have_server = False
        app_length = None
        for name, value in self.headers:
            lname = name.lower()
            if lname in _HOP_BY_HOP:
                if lname == "connection" and "close" in value.lower():
                    self.keep_alive = False
                continue
            if lname == "content-length":
                if not (value.isascii() and value.isdigit()) or app_length is not None:
                    raise ValueError(f"invalid Content-Length {value!r} from the application")
                if no_length:
                    continue    # RFC 9110 §8.6: 204 has no content; a 304's would mislead
                app_length = int(value)
            elif lname == "date":
                have_date = True
            elif lname == "server":
                have_server = True
            lines += (name, ": ", value, "\r\n")
        if not have_date:
            lines += ("Date: ", http_date(), "\r\n")
        if not have_server:
            lines.append("Server: prefork\r\n")
        if app_length is not None:
            self.remaining = app_length
        elif no_length:
            pass
        elif body_length is not None:
            self.remaining = body_length
            lines += ("Content-Length: ", str(body_length), "\r\n")
        elif self.method == "HEAD":
            pass
        elif self.version == "HTTP/1.1":
            self.chunked = True
            lines.append("Transfer-Encoding: chunked\r\n")
        else:
            self.close_delimited = True
            self.keep_alive = False
        if self.keep_alive and self.must_close is not None and self.must_close():
            self.keep_alive = False
        if not self.keep_alive:
            lines.append("Connection: close\r\n\r\n")
        elif self.version == "HTTP/1.0":
            lines.append("Connection: keep-alive\r\n\r\n")
        else:
            lines.append("\r\n")
        head = "".join(lines).encode("latin-1")
        self.head_sent = True
        if no_body or not body:
            self.transport.write(head)
            return
        body = self._frame(body)
        if len(body) < _ONE_SEND_MAX:
            self.transport.write(head + body)
        else:
            self.transport.write(head)
            self.transport.write(body)

    def _frame(self, data: bytes) -> bytes:
        """Apply the response's framing to one piece of body."""
        remaining = self.remaining
        if remaining is not None:
            if len(data) > remaining:
                # More than the announced Content-Length: send what was
                # promised, and no byte that would corrupt the next response.
                data = data[:remaining]
                self.keep_alive = False
            self.remaining = remaining - len(data)
            self.bytes_sent += len(data)
        elif self.chunked:
            self.bytes_sent += len(data)
            data = b"%x\r\n%b\r\n" % (len(data), data)
        else:
            self.bytes_sent += len(data)
        return data

    def write(self, data: bytes) -> None:
        """The PEP 3333 ``write()`` callable, also used for each iterated piece."""
        if type(data) is not bytes:
            if isinstance(data, (bytearray, memoryview)):
                data = bytes(data)
            else:
                raise TypeError(f"response body pieces must be bytes, not {type(data).__name__}")
        if not self.head_sent:
            self.send_head(data)
        elif data and not self.no_body:
            self.transport.write(self._frame(data))

    def finish(self) -> None:
        """End the body: the last chunk, or note a body shorter than announced."""
        if not self.head_sent:
            self.send_head(b"", 0)
        if self.no_body:
            return
        if self.chunked:
            self.transport.write(b"0\r\n\r\n")
        elif self.remaining:
            log.warning("application sent %d bytes fewer than its Content-Length; closing",
                        self.remaining)
            self.keep_alive = False

    def send_file(self, wrapper: FileWrapper) -> bool:
        """sendfile(2) a wrapped regular file; False if it is not one."""
        try:
            fd = wrapper.filelike.fileno()
            st = os.fstat(fd)
            offset = wrapper.filelike.tell()
        except (AttributeError, OSError, ValueError):
            return False
        if not (st.st_mode & 0o170000 == 0o100000):   # S_ISREG
            return False
        count = max(st.st_size - offset, 0)
        self.send_head(b"", count)
        if self.remaining is not None:
            count = min(count, self.remaining)
        if self.no_body or not count:
            self.remaining = 0 if self.remaining is not None else None
            return True
        if self.chunked:
            self.transport.write(b"%x\r\n" % count)
        sent = self.transport.sendfile(fd, offset, count)
        if self.chunked:
            self.transport.write(b"\r\n")
        if self.remaining is not None:
            self.remaining -= sent
        self.bytes_sent += sent
        return True


def run_app(app: Callable[..., Iterable[bytes]], environ: dict[str, Any],
            exchange: Exchange) -> bool:
    """Run ``app`` for one request and write its response through ``exchange``.

    Returns whether the connection may carry another request. An exception
    from the application becomes a 500 when nothing was sent yet; after the
    head is out the connection is cut instead, so the client sees a truncated
    response rather than a wrong one. Transport errors (client gone, write
    timeout) propagate as ClientGone.
    """
    result = None
    try:
        result = app(environ, exchange.start_response)
        if type(result) is list or type(result) is tuple:
            if not exchange.head_sent and exchange.status is not None:
                if len(result) == 1:
                    body = result[0]
                    if type(body) is not bytes:
                        raise TypeError(f"response body pieces must be bytes, not {type(body).__name__}")
                else:
                    for piece in result:
                        if type(piece) is not bytes:
                            raise TypeError("response body pieces must be bytes, "
                                            f"not {type(piece).__name__}")
                    body = b"".join(result)
                exchange.send_head(body, len(body))
            else:
                for piece in result:
                    exchange.write(piece)
        elif (type(result) is FileWrapper and not exchange.head_sent
              and exchange.status is not None and exchange.send_file(result)):
            pass
        else:
            for piece in result:
                exchange.write(piece)
                if exchange.no_body:
                    break   # HEAD and friends: the head is out, the rest is not needed
        exchange.finish()
    except ClientGone:
        exchange.keep_alive = False
        raise
    except Exception:
        log.exception("Error handling request %s %s", environ.get("REQUEST_METHOD"),
                      environ.get("RAW_URI") or environ.get("PATH_INFO"))
        if exchange.head_sent:
            exchange.keep_alive = False
        else:
            _send_500(exchange)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("Error closing the response iterable")
    return exchange.keep_alive


_500_BODY = b"Internal Server Error\n"


def _send_500(exchange: Exchange) -> None:
    exchange.status = "500 Internal Server Error"
    exchange.headers = [("Content-Type", "text/plain; charset=utf-8")]
    exchange.remaining = None
    exchange.chunked = exchange.close_delimited = False
    exchange.send_head(_500_BODY, len(_500_BODY))


def error_response(status: int, reason: str, detail: str, close: bool = True) -> bytes:
    """A complete plain-text response for a protocol error, ready to send."""
    body = f"{status} {reason}\n{detail}\n".encode("utf-8", "replace")
    return (f"HTTP/1.1 {status} {reason}\r\nDate: {http_date()}\r\nServer: prefork\r\n"
            f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n").encode("latin-1") + body
