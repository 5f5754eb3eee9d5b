"""Property tests of the sans-I/O HTTP layer (hypothesis).

1. Any valid request, split at random byte boundaries, parses as when fed whole.
2. Random bytes and mutated valid requests only ever raise RequestError subclasses.
3. The head of any valid request agrees with the stdlib's parsers
   (http.client.parse_headers / email, and http.server's request line).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from http.client import parse_headers
from http.server import BaseHTTPRequestHandler

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prefork.http.connection import HTTPConnection
from prefork.http.errors import RequestError
from prefork.http.parser import ChunkedReader, Limits

SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
FRAMING = {"host", "content-length", "transfer-encoding", "connection", "expect"}

token = st.text(alphabet=TCHAR, min_size=1, max_size=12)
method = token.filter(lambda m: m != "CONNECT")
segment = st.text(alphabet=PCHAR, max_size=8) | st.sampled_from(["%20", "%2F", "%C3%A9", "%00"])
path = st.lists(segment, min_size=1, max_size=5).map(lambda segs: "/" + "/".join(segs)).filter(
    lambda p: not p.startswith("//"))
query = st.none() | st.text(alphabet=PCHAR + "/?", max_size=16)
header_name = token.filter(lambda n: n.lower() not in FRAMING)


def _value_chars(obs_text: bool) -> st.SearchStrategy[str]:
    chars = [chr(c) for c in range(0x21, 0x7F)]
    if obs_text:
        # \x85 is left out: str.splitlines() (used by the email parser we
        # cross-check against) treats it as a line break.
        chars += [chr(c) for c in range(0x80, 0x100) if c != 0x85]
    return st.sampled_from(chars)


def field_value(obs_text: bool = True) -> st.SearchStrategy[str]:
    """A field-value: no leading/trailing whitespace, inner SP/HTAB allowed."""
    vchar = _value_chars(obs_text)
    inner = st.lists(st.one_of(vchar, st.sampled_from([" ", "\t"])), max_size=20).map("".join)
    return st.one_of(st.just(""), st.tuples(vchar, inner, vchar).map(
        lambda t: (t[0] + t[1] + t[2]).strip(" \t")) | vchar)


ows = st.sampled_from(["", " ", "  ", "\t", " \t"])
host = st.sampled_from(["a", "example.com", "example.com:8080", "[::1]:80", "127.0.0.1", ""])


@dataclass
class Spec:
    method: str
    path: str
    query: str | None
    version: str
    host: str
    headers: list[tuple[str, str]]
    framing: str                      # "none" | "length" | "chunked"
    body: bytes
    wire: bytes = b""
    conn_token: str | None = None
    expected_headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.path + ("" if self.query is None else "?" + self.query)

    @property
    def keep_alive(self) -> bool:
        if self.conn_token == "close":
            return False
        if self.conn_token == "keep-alive":
            return True
        return self.version == "HTTP/1.1"


@st.composite
def valid_requests(draw, obs_text: bool = True, trailing_ows: bool = True) -> Spec:
    version = draw(st.sampled_from(["HTTP/1.1", "HTTP/1.0"]))
    spec = Spec(method=draw(method), path=draw(path), query=draw(query), version=version,
                host=draw(host), headers=draw(st.lists(st.tuples(header_name,
                                                                 field_value(obs_text)),
                                                       max_size=6)),
                framing=draw(st.sampled_from(["none", "length", "chunked"] if version == "HTTP/1.1"
                                             else ["none", "length"])),
                body=draw(st.binary(max_size=300)))
    spec.conn_token = draw(st.sampled_from([None, "close", "keep-alive"]))
    if spec.framing == "none":
        spec.body = b""
    lines: list[tuple[str, str]] = [("Host", spec.host)] + list(spec.headers)
    if spec.conn_token:
        lines.append(("Connection", spec.conn_token))
    if spec.framing == "length":
        lines.append(("Content-Length", str(len(spec.body))))
    elif spec.framing == "chunked":
        lines.append(("Transfer-Encoding", "chunked"))
    order = draw(st.permutations(range(len(lines))))
    lines = [lines[i] for i in order]
    spec.expected_headers = lines
    head = f"{spec.method} {spec.target} {spec.version}\r\n"
    for name, value in lines:
        head += f"{name}:{draw(ows)}{value}{draw(ows) if trailing_ows else ''}\r\n"
    wire = head.encode("latin-1") + b"\r\n"
    if spec.framing == "length":
        wire += spec.body
    elif spec.framing == "chunked":
        wire += draw(chunked_encoding(spec.body))
    spec.wire = wire
    return spec


@st.composite
def chunked_encoding(draw, body: bytes) -> bytes:
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=6)))
    pieces = [body[a:b] for a, b in zip([0] + cuts, cuts + [len(body)], strict=True)]
    out = b""
    for piece in pieces:
        if not piece:
            continue                  # a zero-size chunk would end the body
        size = b"%x" % len(piece)
        if draw(st.booleans()):
            size = size.upper()
        ext = draw(st.sampled_from([b"", b";a", b";a=b", b' ; n="q \\" v"']))
        out += size + ext + b"\r\n" + piece + b"\r\n"
    out += b"0\r\n"
    for i in range(draw(st.integers(0, 2))):
        out += b"X-Trailer-%d: v\r\n" % i
    return out + b"\r\n"


def split_points(data: bytes):
    return st.lists(st.integers(0, len(data)), max_size=12).map(sorted)


def pieces_at(data: bytes, cuts: list[int]) -> list[bytes]:
    return [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)], strict=True)]


def parse_all(pieces: list[bytes], spool_threshold: int = 512 * 1024):
    conn = HTTPConnection(Limits(), spool_threshold=spool_threshold)
    out = []
    for piece in pieces:
        conn.receive(piece)
        while (req := conn.next_request()) is not None:
            h = req.head
            body = req.body.read()
            assert len(body) == req.body_length
            out.append((h.method, h.target, h.path, h.query, h.version, h.headers, h.host,
                        h.keep_alive, h.chunked, h.content_length, body))
    assert conn.idle
    return out


# --- 1. split anywhere, same result ----------------------------------------

@SETTINGS
@given(st.lists(valid_requests(), min_size=1, max_size=3), st.data(),
       st.sampled_from([0, 16, 512 * 1024]))
def test_valid_requests_split_anywhere_parse_as_when_whole(specs, data, spool_threshold):
    wire = b"".join(s.wire for s in specs)
    whole = parse_all([wire])
    assert len(whole) == len(specs)
    for spec, got in zip(specs, whole, strict=True):
        (meth, target, p, q, version, headers, host, keep, chunked, clen, body) = got
        assert meth == spec.method
        assert target == spec.target
        assert p == spec.path
        assert q == (spec.query or "")
        assert version == spec.version
        assert headers == spec.expected_headers
        assert host == spec.host
        assert keep == spec.keep_alive
        assert chunked == (spec.framing == "chunked")
        assert body == spec.body
    cuts = data.draw(split_points(wire))
    assert parse_all(pieces_at(wire, cuts), spool_threshold) == whole


@SETTINGS
@given(valid_requests())
def test_valid_request_fed_byte_by_byte_parses_as_when_whole(spec):
    whole = parse_all([spec.wire])
    assert parse_all([spec.wire[i:i + 1] for i in range(len(spec.wire))], 8) == whole


# --- 2. nothing but RequestError ----------------------------------------------

SMALL = Limits(request_line=64, fields=4, field_size=64, body=256)


def feed_everything(pieces: list[bytes], limits: Limits) -> None:
    conn = HTTPConnection(limits, spool_threshold=32)
    try:
        for piece in pieces:
            conn.receive(piece)
            while (req := conn.next_request()) is not None:
                assert len(req.body.read()) == req.body_length
    except RequestError as e:
        assert e.status in (400, 413, 414, 417, 431, 501, 505)
    finally:
        conn.close()


@SETTINGS
@given(st.binary(max_size=400), st.data(), st.booleans())
def test_random_bytes_raise_only_http_errors(blob, data, small):
    cuts = data.draw(split_points(blob))
    feed_everything(pieces_at(blob, cuts), SMALL if small else Limits())


INTERESTING = [b"\r\n", b"\r", b"\n", b"\x00", b" ", b"\t", b":", b";", b",", b"0", b"\r\n\r\n",
               b"Transfer-Encoding: chunked\r\n", b"Content-Length: 3\r\n", b"HTTP/1.1",
               b"ffffffff", b"\x80", b"\xff", b"Expect: 100-continue\r\n", b"*", b"http://"]


@st.composite
def mutated(draw, spec_strategy=valid_requests()) -> bytes:
    data = bytearray(draw(spec_strategy).wire)
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "cut"]))
        chunk = draw(st.sampled_from(INTERESTING) | st.binary(min_size=1, max_size=4))
        if kind == "insert":
            data[pos:pos] = chunk
        elif kind == "delete":
            del data[pos:pos + len(chunk)]
        elif kind == "replace":
            data[pos:pos + len(chunk)] = chunk
        else:
            del data[pos:]
    return bytes(data)


@SETTINGS
@given(mutated(), st.data(), st.booleans())
def test_mutated_requests_raise_only_http_errors(blob, data, small):
    cuts = data.draw(split_points(blob))
    feed_everything(pieces_at(blob, cuts), SMALL if small else Limits())


@SETTINGS
@given(st.lists(st.binary(max_size=40) | st.sampled_from(INTERESTING), max_size=20))
def test_chunked_reader_on_random_bytes_raises_only_http_errors(pieces):
    reader = ChunkedReader(limit=1000)
    try:
        for piece in pieces:
            out, rest = reader.feed(piece)
            assert all(type(p) is bytes for p in out)
            if rest is not None:
                break
    except RequestError as e:
        assert e.status in (400, 413, 431)


# --- 3. cross-check against the stdlib ----------------------------------------

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def __init__(self, wire: bytes):          # no socket: feed the bytes directly
        self.rfile = io.BytesIO(wire)
        self.wfile = io.BytesIO()
        self.client_address = ("127.0.0.1", 0)
        self.request_version = "HTTP/0.9"
        self.raw_requestline = self.rfile.readline(65537)

    def log_message(self, *args):              # keep the test output quiet
        pass


@SETTINGS
@given(valid_requests(obs_text=True))
def test_header_fields_agree_with_http_client_parse_headers(spec):
    got = parse_all([spec.wire])[0]
    headers = got[5]
    header_block = spec.wire.split(b"\r\n", 1)[1]
    msg = parse_headers(io.BytesIO(header_block))
    # email keeps trailing whitespace in values; RFC 9110 strips it as OWS.
    theirs = [(n, v.rstrip(" \t")) for n, v in msg.items()]
    assert headers == theirs
    assert msg["Host"].strip(" \t") == spec.host == got[6]


@SETTINGS
# http.server compares the Connection value without stripping trailing OWS, so
# only leading OWS is generated here.
@given(valid_requests(obs_text=False, trailing_ows=False))
def test_request_line_and_keep_alive_agree_with_http_server(spec):
    ours = parse_all([spec.wire])[0]
    handler = _Handler(spec.wire)
    assert handler.parse_request(), handler.wfile.getvalue()
    assert handler.command == ours[0]
    assert handler.path == ours[1]
    assert handler.request_version == ours[4]
    assert handler.close_connection is (not ours[7])
    assert [(n, v.rstrip(" \t")) for n, v in handler.headers.items()] == ours[5]
