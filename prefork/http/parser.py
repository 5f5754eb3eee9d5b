"""A strict, sans-I/O HTTP/1.1 request parser (RFC 9112).

Bytes in, request heads and body pieces out; no sockets, threads, files or
clocks, so every rule can be tested on byte strings and fuzzed. Two parts:

* :func:`parse_head` turns one complete header block into a :class:`RequestHead`
  and :func:`find_head_end` says whether a buffer holds one yet;
* :class:`LengthReader` and :class:`ChunkedReader` frame the body: feed them
  bytes, get body pieces back and, once the body is complete, the bytes that
  follow it (the next pipelined request).

Everything that is not plainly valid is refused with a typed
:class:`~prefork.http.errors.RequestError`: strictness is what closes the request
smuggling holes (conflicting Content-Length/Transfer-Encoding, obs-fold, bare
CR/LF) that lenient servers have had.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import (
    BadRequest,
    BodyTooLarge,
    ExpectationFailed,
    HeadersTooLarge,
    NotImplementedCoding,
    RequestError,
    URITooLong,
    VersionNotSupported,
)

# Every pattern that sees client bytes runs in linear time: each repetition is
# possessive (``*+``, ``++``, Python 3.11), so a long run of spaces or tchars
# followed by one bad byte fails at once instead of trying every split of the
# run (that backtracking made a header line cost quadratic time). The classes
# next to each other are disjoint where they are not possessive.
# RFC 9110 §5.6.2: token = 1*tchar
_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# request-target: visible ASCII; obs-text (0x80-0xFF) is accepted because
# clients send raw UTF-8 paths in practice, but never controls, space or DEL.
_REQUEST_LINE = re.compile(rb"(" + _TCHAR + rb"++) ([\x21-\x7e\x80-\xff]++) HTTP/(\d)\.(\d)")
# field-line = field-name ":" OWS field-value OWS; the value holds no controls
# except HTAB, so a CR, LF or NUL inside a line is refused here. The value
# group keeps trailing OWS (stripped after), because a lazy group with a
# trailing [ \t]* tries to end the match after every character, which in
# Python's re costs several times as much per line (docs/benchmarks.md).
_FIELD_LINE = re.compile(rb"(" + _TCHAR + rb"++):[ \t]*+([^\x00-\x08\x0a-\x1f\x7f]*+)")
# The same, on the head decoded as latin-1 (one character per byte, so every
# class means what it means on bytes): one decode per head, not two per line.
_FIELD_LINE_STR = re.compile(_FIELD_LINE.pattern.decode("latin-1"))
# A whole token, on text (a transfer coding here; a response header name an
# application gives, in wsgi.py).
TOKEN = re.compile(_TCHAR.decode("latin-1") + "++")
# Header names whose values steer framing and connection handling.
_FRAMING_NAMES = frozenset(("host", "content-length", "transfer-encoding", "connection", "expect"))
# Fields RFC 9110 defines as singletons that a server or an application acts
# on: a second one is ambiguous (which one did a proxy in front see?), so it
# is refused like a second Host or Content-Length.
SINGLETON_FIELDS = frozenset((
    "content-type", "authorization", "proxy-authorization", "range", "if-range",
    "if-modified-since", "if-unmodified-since", "max-forwards",
))
_WATCHED_NAMES = _FRAMING_NAMES | SINGLETON_FIELDS
# RFC 9110 §6.5.1: fields a sender must not put in a trailer (framing, routing,
# request modifiers, authentication, content processing). A trailer is read
# after the app could have acted on its head, so such a field is refused.
FORBIDDEN_TRAILERS = frozenset((
    "content-length", "transfer-encoding", "host", "connection", "keep-alive", "te",
    "trailer", "upgrade", "expect", "content-type", "content-encoding", "content-range",
    "cache-control", "max-forwards", "pragma", "range", "if-match", "if-none-match",
    "if-modified-since", "if-unmodified-since", "if-range", "authorization",
    "proxy-authorization", "cookie", "set-cookie",
))
_DIGITS_STR = re.compile(r"[0-9]++")
_MAX_LENGTH_DIGITS = 18   # more is over any body limit (and int() refuses > 4300 digits)
# RFC 9112 §2.2 asks a server to ignore at least one empty line before a
# request-line (old clients sent one after a POST body). A few are ignored;
# more is not a client but someone holding the connection open.
MAX_EMPTY_LINES = 4
_ABSOLUTE_FORM = re.compile(r"(?i:https?)://([^/?#]++)(.*+)", re.S)   # RFC 9110 4.2.1: a host
_HOST = re.compile(r"(\[[0-9A-Fa-f:.]++\]|[A-Za-z0-9._~%!$&'()*+,;=-]*+)(:[0-9]*+)?+")
_CHUNK_SIZE = re.compile(
    rb"([0-9A-Fa-f]{1,16}+)"
    # chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ( token / quoted-string ) ] )
    # Atomic groups: an extension, once matched, is never split another way.
    rb"((?>[ \t]*+;[ \t]*+" + _TCHAR + rb"++(?>[ \t]*+=[ \t]*+(?>" + _TCHAR
    + rb'++|"(?>[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[\t \x21-\x7e\x80-\xff])*+"))?+)*+)[ \t]*+'
)
MAX_CHUNK_LINE = 4096
MAX_TRAILER_FIELDS = 64
MAX_TRAILER_BYTES = 16384


@dataclass(slots=True)
class Limits:
    """Size limits a request must respect; each is a setting (see prefork.config)."""

    request_line: int = 8190        # -> 414
    fields: int = 100               # -> 431
    field_size: int = 8190          # -> 431, one header line
    body: int = 1 << 30             # -> 413; 0 means no limit

    @property
    def head(self) -> int:
        """Largest header block the other limits can allow, CRLFs included."""
        return self.request_line + 2 + self.fields * (self.field_size + 2) + 2


class RequestHead:
    """One parsed request head. Header names keep the client's spelling."""

    __slots__ = ("method", "target", "path", "query", "version", "headers", "host",
                 "content_length", "chunked", "keep_alive", "expect_continue")

    def __init__(self, method: str, target: str, path: str, query: str, version: str,
                 headers: list[tuple[str, str]]):
        self.method = method
        self.target = target
        self.path = path              # still percent-encoded
        self.query = query            # raw, without the "?"
        self.version = version        # "HTTP/1.1" or "HTTP/1.0"
        self.headers = headers        # [(name, value)] as received, latin-1 str
        self.host: str | None = None
        self.content_length: int | None = None
        self.chunked = False
        self.keep_alive = version == "HTTP/1.1"
        self.expect_continue = False

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.target} {self.version}>"


def find_head_end(buf: bytes | bytearray, limits: Limits, start: int = 0) -> int:
    """Index just past the head's closing CRLFCRLF in ``buf``, or -1 if not there yet.

    ``start`` is how much of ``buf`` an earlier call already looked at (and
    found no end in): only the bytes from there are scanned again, so a head
    that arrives in many small pieces costs linear time, not quadratic.
    Raises when the bytes seen so far can already never become a valid head:
    a line ended by a bare LF, a request line or header block over its limit.
    """
    end = buf.find(b"\r\n\r\n", start - 3 if start > 3 else 0)
    if end >= 0:
        return end + 4
    # A bare LF among the new bytes: an LF from ``start`` on not preceded by CR.
    if buf.count(b"\n", start) != buf.count(b"\r\n", start - 1 if start else 0):
        raise BadRequest("line ended by a bare LF")
    line_max = limits.request_line
    if start <= line_max + 1:   # the request line may have been open until now
        if buf.find(b"\r\n", 0, line_max + 2) < 0 and len(buf) > line_max + 1:
            raise URITooLong(f"request line longer than {line_max} bytes")
    if len(buf) > limits.head:
        raise HeadersTooLarge(f"header block larger than {limits.head} bytes")
    return -1


def skip_leading_crlf(buf: bytes | bytearray) -> tuple[bytes | bytearray, int]:
    """RFC 9112 §2.2: empty lines before a request-line are ignored.

    Returns the rest of ``buf`` and how many empty lines were dropped.
    """
    n = 0
    while buf[n * 2:n * 2 + 2] == b"\r\n":
        n += 1
    return (buf[n * 2:] if n else buf), n


def parse_head(block: bytes, limits: Limits) -> RequestHead:
    """Parse one header block (request line to the blank line, CRLFs included).

    Returns the head with its framing (``content_length``/``chunked``),
    ``keep_alive`` and ``expect_continue`` decided. Raises an RequestError subclass
    for anything RFC 9112 does not allow or a limit refuses.
    """
    end = block.find(b"\r\n")
    line = block if end < 0 else block[:end]
    if len(line) > limits.request_line:
        raise URITooLong(f"request line longer than {limits.request_line} bytes")
    m = _REQUEST_LINE.fullmatch(line)
    if m is None:
        raise BadRequest("malformed request line")
    method_b, target_b, major, minor = m.groups()
    if major != b"1":
        raise VersionNotSupported(f"HTTP/{major.decode()}.{minor.decode()} is not supported")
    # RFC 9110 §2.5: a higher 1.x minor is answered as the highest we conform to.
    version = "HTTP/1.0" if minor == b"0" else "HTTP/1.1"
    lines = block.decode("latin-1").split("\r\n")
    # A complete block ends with "\r\n\r\n": drop the two empty trailers.
    if lines[-1] == "" and lines[-2] == "":
        del lines[-2:]
    nfields = len(lines) - 1
    if nfields > limits.fields:
        raise HeadersTooLarge(f"more than {limits.fields} header fields")

    headers: list[tuple[str, str]] = []
    append = headers.append
    match_field = _FIELD_LINE_STR.fullmatch
    watched = _WATCHED_NAMES
    field_size = limits.field_size
    content_length = transfer_encoding = connection = expect = host = None
    host_count = cl_count = 0
    singletons: set[str] | None = None
    for raw in lines[1:]:
        if len(raw) > field_size:
            raise HeadersTooLarge(f"a header line is longer than {field_size} bytes")
        fm = match_field(raw)
        if fm is None:
            if raw[:1] in (" ", "\t"):
                raise BadRequest("obsolete line folding is not allowed")
            raise BadRequest("malformed header line")
        name, value = fm.groups()
        if value[-1:] in (" ", "\t"):
            value = value.rstrip(" \t")
        append((name, value))
        lname = name.lower()
        if lname not in watched:
            continue
        if lname in SINGLETON_FIELDS:
            if singletons is None:
                singletons = {lname}
            elif lname in singletons:
                raise BadRequest(f"more than one {name} header")
            else:
                singletons.add(lname)
        elif lname == "host":
            host, host_count = value, host_count + 1
        elif lname == "content-length":
            content_length, cl_count = value, cl_count + 1
        elif lname == "transfer-encoding":
            transfer_encoding = value if transfer_encoding is None else f"{transfer_encoding},{value}"
        elif lname == "connection":
            connection = value if connection is None else f"{connection},{value}"
        elif lname == "expect":
            expect = value if expect is None else f"{expect},{value}"

    method = method_b.decode("ascii")
    target = target_b.decode("latin-1")
    if "#" in target:
        # RFC 9112 §3.2: a fragment is never part of a request-target.
        raise BadRequest("a request target may not contain '#'")
    if method == "CONNECT":
        raise NotImplementedCoding("CONNECT is not supported")
    if target[0] == "/":
        path, _, query = target.partition("?")
    elif target == "*":
        if method != "OPTIONS":
            raise BadRequest("asterisk-form is only allowed with OPTIONS")
        path, query = "*", ""
    else:
        am = _ABSOLUTE_FORM.fullmatch(target)
        if am is None:
            raise BadRequest("malformed request target")
        # RFC 9112 §3.2.2: the authority in an absolute-form target replaces Host.
        authority, rest = am.groups()
        path, _, query = (rest or "/").partition("?")
        if not path:
            path = "/"
        if host_count == 0:
            host_count = 1
        host = authority

    head = RequestHead(method, target, path, query, version, headers)

    if version == "HTTP/1.1" and host_count != 1:
        raise BadRequest("HTTP/1.1 requests need exactly one Host header"
                         if host_count else "missing Host header")
    if host_count > 1:
        raise BadRequest("more than one Host header")
    if host is not None:
        if _HOST.fullmatch(host) is None:
            raise BadRequest("malformed Host header")
        head.host = host

    if transfer_encoding is not None:
        if content_length is not None:
            raise BadRequest("both Content-Length and Transfer-Encoding")
        if version == "HTTP/1.0":
            raise BadRequest("Transfer-Encoding is not allowed in HTTP/1.0")
        codings = [c.strip(" \t").lower() for c in transfer_encoding.split(",")]
        if codings[-1] != "chunked":
            raise BadRequest("Transfer-Encoding must end with chunked")
        for coding in codings[:-1]:
            if coding == "chunked":
                raise BadRequest("chunked applied more than once")
            if TOKEN.fullmatch(coding) is None:
                raise BadRequest("malformed Transfer-Encoding")
            raise NotImplementedCoding(f"transfer coding {coding!r} is not supported")
        head.chunked = True
    elif content_length is not None:
        if cl_count > 1:
            raise BadRequest("more than one Content-Length header")
        if _DIGITS_STR.fullmatch(content_length) is None:
            raise BadRequest("Content-Length must be digits only")
        # Leading zeros are allowed, but never reach int(): a long run of them
        # would be over its 4300-digit limit (ValueError).
        digits = content_length.lstrip("0")
        if len(digits) > _MAX_LENGTH_DIGITS:
            raise BodyTooLarge(f"a body of {len(digits)} digits of bytes is too large")
        n = int(digits) if digits else 0
        if limits.body and n > limits.body:
            raise BodyTooLarge(f"body of {n} bytes is over the {limits.body}-byte limit")
        head.content_length = n

    if connection is not None:
        tokens = {t.strip(" \t").lower() for t in connection.split(",")}
        if "close" in tokens:
            head.keep_alive = False
        elif "keep-alive" in tokens:
            head.keep_alive = True
    if expect is not None:
        if expect.lower() != "100-continue":
            raise ExpectationFailed(f"unsupported expectation {expect!r}")
        head.expect_continue = version == "HTTP/1.1"
    return head


class LengthReader:
    """Frames a body of exactly ``length`` bytes."""

    __slots__ = ("remaining",)

    def __init__(self, length: int):
        self.remaining = length

    def feed(self, data: bytes) -> tuple[bytes, bytes | None]:
        """Return (body bytes taken from ``data``, leftover or None while incomplete)."""
        n = self.remaining
        if len(data) < n:
            self.remaining = n - len(data)
            return data, None
        self.remaining = 0
        return data[:n], data[n:]


class ChunkedReader:
    """Frames a chunked body (RFC 9112 §7.1), checking every line it crosses.

    Chunk sizes are hex digits only (no sign, no 0x, no surrounding junk),
    extensions must follow the ABNF, chunk data must end in CRLF, and trailer
    fields are validated like header fields and obey the same limits (each
    line at most ``limits.field_size``, at most ``limits.fields`` of them, and
    :data:`MAX_TRAILER_BYTES` in all), then dropped: WSGI has no place for
    them. A field that must not be a trailer (RFC 9110 §6.5.1) is refused.
    """

    __slots__ = ("limit", "total", "_state", "_left", "_line", "_trailers", "_trailer_bytes",
                 "_field_size", "_fields")

    _SIZE, _DATA, _DATA_END, _TRAILER, _DONE = range(5)

    def __init__(self, limit: int = 0, limits: Limits | None = None):
        self.limit = limit
        self.total = 0
        self._state = self._SIZE
        self._left = 0
        self._line = bytearray()
        self._trailers = 0
        self._trailer_bytes = 0
        limits = limits or Limits()
        self._field_size = min(limits.field_size, MAX_TRAILER_BYTES)
        self._fields = min(limits.fields, MAX_TRAILER_FIELDS)

    def _take_line(self, data: bytes, pos: int, maxlen: int,
                   error: type[RequestError] = BadRequest) -> tuple[bytes | None, int]:
        """Collect one CRLF-ended line starting at ``pos``; (None, len) while partial.

        A line split over many feeds is collected in a bytearray, so feeding
        it one byte at a time costs linear time."""
        end = data.find(b"\n", pos)
        if end < 0:
            self._line += data[pos:]
            if len(self._line) > maxlen + 1:    # +1: its CR may be the last byte
                raise error("chunk line too long")
            return None, len(data)
        if self._line:
            self._line += data[pos:end + 1]
            line = bytes(self._line)
            self._line.clear()
        else:
            line = data[pos:end + 1]
        if len(line) > maxlen + 2:
            raise error("chunk line too long")
        if line[-2:-1] != b"\r":
            raise BadRequest("chunk line ended by a bare LF")
        return line[:-2], end + 1

    def feed(self, data: bytes) -> tuple[list[bytes], bytes | None]:
        """Return (body pieces, leftover or None while the body is incomplete)."""
        out: list[bytes] = []
        pos, n = 0, len(data)
        while pos < n or self._state == self._DONE:
            state = self._state
            if state == self._DATA:
                take = min(self._left, n - pos)
                out.append(data[pos:pos + take])
                pos += take
                self._left -= take
                if self._left == 0:
                    self._state = self._DATA_END
            elif state == self._SIZE:
                line, pos = self._take_line(data, pos, MAX_CHUNK_LINE)
                if line is None:
                    break
                m = _CHUNK_SIZE.fullmatch(line)
                if m is None:
                    raise BadRequest("malformed chunk size line")
                size = int(m.group(1), 16)   # at most 16 hex digits: no int() limit
                self.total += size
                if self.limit and self.total > self.limit:
                    raise BodyTooLarge(f"chunked body over the {self.limit}-byte limit")
                if size:
                    self._left = size
                    self._state = self._DATA
                else:
                    self._state = self._TRAILER
            elif state == self._DATA_END:
                # Exactly CRLF must follow the data; collect it across feeds.
                need = 2 - len(self._line)
                self._line += data[pos:pos + need]
                pos += min(need, n - pos)
                if len(self._line) < 2:
                    if self._line != b"\r"[:len(self._line)]:
                        raise BadRequest("chunk data longer than its size")
                    break
                if self._line != b"\r\n":
                    raise BadRequest("chunk data longer than its size")
                self._line.clear()
                self._state = self._SIZE
            elif state == self._TRAILER:
                line, pos = self._take_line(data, pos, self._field_size, HeadersTooLarge)
                if line is None:
                    break
                if not line:
                    self._state = self._DONE
                    continue
                self._trailers += 1
                self._trailer_bytes += len(line)
                if self._trailers > self._fields or self._trailer_bytes > MAX_TRAILER_BYTES:
                    raise HeadersTooLarge("too many or too large trailer fields")
                fm = _FIELD_LINE.fullmatch(line)
                if fm is None:
                    raise BadRequest("malformed trailer field")
                name = fm.group(1).decode("ascii").lower()
                if name in FORBIDDEN_TRAILERS:
                    raise BadRequest(f"{name} is not allowed in a trailer")
            else:  # _DONE
                return out, data[pos:]
        return out, None
