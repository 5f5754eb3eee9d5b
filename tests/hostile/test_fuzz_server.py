"""Fuzz the whole request path of a real worker over a socket.

Hypothesis builds request heads (tokens and junk methods, targets with
escapes, fragments and raw bytes, versions, header lines with odd spacing,
control bytes, numbers of any length), bodies framed by Content-Length or by
chunks (sizes in hex or not, extensions, trailers), and the points where the
bytes are split into separate sends. Whatever it sends, the one worker must
stay up, and the bytes it answers must be a sequence of well-formed
responses, possibly empty (the server closed), never cut in the middle.

CI runs ``FUZZ_EXAMPLES`` examples (1,000 by default, a few seconds); ``make fuzz``
runs many more.
"""

from __future__ import annotations

import os
import random
import re
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.hostile.kit import assert_serving
from tests.server import running, workers_of

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1000"))
pytestmark = pytest.mark.timeout(max(120, EXAMPLES // 2))

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
STATUS_LINE = re.compile(rb"HTTP/1\.1 ([1-5][0-9][0-9]) [^\r\n]*")


@pytest.fixture(scope="module")
def srv():
    # Small limits, so that fuzzed inputs reach them (but a field may hold a
    # number of 5,000 digits); a tiny spool threshold, so that bodies go
    # through the temp-file path too.
    with running("testapp:app", "--threads", "2", "--header-timeout", "3",
                 "--limit-request-line", "300", "--limit-request-fields", "12",
                 "--limit-request-field-size", "6000", "--limit-request-body", "20000",
                 "--spool-threshold", "64", "--keepalive", "2") as s:
        s.pids = workers_of(s)
        yield s


# The generator is plain code drawing from a Random that Hypothesis seeds
# (a failure prints the bytes sent): each part of a request is usually valid and sometimes odd,
# with odds set here, so that a request gets past its first parts often
# enough for the later ones (framing, bodies, trailers) to be tried.

VALID_METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"M-SEARCH"]
VALID_TARGETS = [b"/hello", b"/echo", b"/environ", b"/nope", b"/%ff%2F", b"/\xc3\xa9%C3%A9",
                 b"/?q=%00", b"//", b"/..%2f..", b"HTTP://X:80/hello?x", b"*"]
ODD_TARGETS = [b"/a#frag", b"/" + b"a" * 400, b"http://x/echo#", b"/a b", b"/\x00", b"\x7f"]
ODD_VERSIONS = [b"HTTP/1.2", b"HTTP/2.0", b"HTTP/1.10", b"http/1.1", b"HTTP/1", b"", b"HTTP/0.9"]
NAMES = [b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Content-Type",
         b"X-A", b"Authorization", b"Trailer", b"Host", b"Range"]
VALUES = [b"chunked", b"gzip, chunked", b"chunked, chunked", b"close", b"keep-alive",
          b"100-continue", b"x", b"text/plain", b"bytes=0-1"]
ODD_EOLS = [b"\n", b"\r", b"", b"\r\r\n", b"\n\r"]
ODD_OWS = [b"\t", b"  ", b" " * 300 + b"\x01", b"\t \t", b"\x00", b"\t" * 200 + b"\x7f"]
TCHARS = TCHAR.encode()


class Builder:
    def __init__(self, rnd: random.Random):
        self.rnd = rnd

    def odd(self, p: float = 0.1) -> bool:
        return self.rnd.random() < p

    def junk(self, n: int = 12) -> bytes:
        return bytes(self.rnd.randrange(256) for _ in range(self.rnd.randrange(n + 1)))

    def token(self) -> bytes:
        return bytes(self.rnd.choice(TCHARS) for _ in range(self.rnd.randrange(1, 10)))

    def number(self) -> bytes:
        kind = self.rnd.randrange(5)
        if kind == 0:
            return str(self.rnd.randrange(300)).encode()
        if kind == 1:
            return b"0" * self.rnd.choice([1, 100, 4400, 5000]) + b"7"
        if kind == 2:
            return b"9" * self.rnd.randrange(1, 40)
        if kind == 3:
            return b"%x" % self.rnd.randrange(1 << 70)
        return self.rnd.choice([b"", b"-1", b"+5", b"0x10", b"1 2", b"5,5", b"\xb5", b"1_0"])

    def eol(self) -> bytes:
        return self.rnd.choice(ODD_EOLS) if self.odd(0.03) else b"\r\n"

    def ows(self) -> bytes:
        return self.rnd.choice(ODD_OWS) if self.odd(0.04) else self.rnd.choice([b"", b" "])

    def field(self) -> bytes:
        name = (self.rnd.choice([self.token(), self.junk(), b"X_Under", b" Folded"])
                if self.odd(0.06) else self.rnd.choice(NAMES))
        value = (self.rnd.choice([self.number(), self.junk(20)]) if self.odd(0.2)
                 else self.rnd.choice(VALUES))
        return name + b":" + self.ows() + value + self.ows()

    def chunked_body(self) -> bytes:
        out = b""
        for _ in range(self.rnd.randrange(4)):
            data = self.junk(40)
            size = self.number() if self.odd(0.2) else b"%x" % len(data)
            ext = (self.rnd.choice([b";a=b", b';a="q\\"x"', b" ;x", b";" + b" " * 200 + b"!",
                                    b";a" * 300, b'; a = "unterminated'])
                   if self.odd(0.2) else b"")
            out += size + ext + self.eol() + data + self.eol()
        out += b"0" + self.eol()
        for _ in range(self.rnd.choice([0, 0, 1, 3])):
            out += self.field() + self.eol()
        return out + self.eol()

    def request(self) -> tuple[bytes, bytes]:
        """(head, body) of one request."""
        rnd = self.rnd
        prefix = rnd.choice([b"\r\n", b"\r\n" * 6]) if self.odd(0.05) else b""
        method = (rnd.choice([self.token(), self.junk(), b"CONNECT"]) if self.odd(0.1)
                  else rnd.choice(VALID_METHODS))
        target = (rnd.choice([rnd.choice(ODD_TARGETS), self.junk(20)]) if self.odd(0.1)
                  else rnd.choice(VALID_TARGETS))
        version = rnd.choice(ODD_VERSIONS) if self.odd(0.1) else rnd.choice([b"HTTP/1.1"] * 3 + [b"HTTP/1.0"])
        fields = [self.field() for _ in range(rnd.randrange(4))]
        if not self.odd(0.1):
            fields.insert(0, b"Host: fuzz")
        framing = rnd.choice(["none", "length", "chunked"])
        body = b""
        if framing == "length":
            body = self.junk(200)
            zeros = b"0" * rnd.choice([0, 0, 1, 4400])      # past int()'s digit limit
            fields.append(b"Content-Length: " + zeros + str(len(body)).encode())
            if self.odd(0.1):
                body = body[:len(body) // 2]                # shorter than announced
        elif framing == "chunked":
            fields.append(b"Transfer-Encoding: chunked")
            body = self.chunked_body()
        head = (prefix + method + b" " + target + b" " + version + self.eol()
                + b"".join(f + self.eol() for f in fields) + self.eol())
        return head, body


@st.composite
def conversation(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """One connection's bytes (1 to 3 requests) and where to split them into sends."""
    b = Builder(draw(st.randoms(use_true_random=True)))
    raw, edges = b"", []
    for _ in range(b.rnd.randrange(1, 4)):
        head, body = b.request()
        edges += [len(raw) + len(head), len(raw) + len(head) + 1]   # the body in a read of its own
        raw += head + body
    cuts = [b.rnd.choice(edges) if b.odd(0.5) else b.rnd.randrange(max(len(raw), 1))
            for _ in range(b.rnd.randrange(4))]
    return raw, sorted(set(cuts))


def split(raw: bytes, cuts: list[int]) -> list[bytes]:
    pieces, last = [], 0
    for c in cuts:
        pieces.append(raw[last:c])
        last = c
    pieces.append(raw[last:])
    return [p for p in pieces if p]


def check_responses(data: bytes, head_sent: bool) -> list[int]:
    """The statuses of the well-formed responses ``data`` consists of;
    AssertionError if any is malformed or cut short. With ``head_sent``, a
    response may be a HEAD answer: its framing headers describe no body."""
    statuses, pos = [], 0
    while pos < len(data):
        end = data.find(b"\r\n\r\n", pos)
        assert end >= 0, f"response head cut short: {data[pos:pos + 200]!r}"
        lines = data[pos:end].split(b"\r\n")
        m = STATUS_LINE.fullmatch(lines[0])
        assert m, f"malformed status line {lines[0]!r}"
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep and re.fullmatch(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name), line
            headers[name.lower()] = value.strip()
        status = int(m.group(1))
        statuses.append(status)
        pos = end + 4
        if status == 100:
            continue
        if head_sent and (pos == len(data) or data.startswith(b"HTTP/1.1 ", pos)):
            continue
        if b"transfer-encoding" in headers:
            assert headers[b"transfer-encoding"] == b"chunked"
            while True:
                nl = data.find(b"\r\n", pos)
                assert nl >= 0, "chunk size line cut short"
                size = int(data[pos:nl], 16)
                pos = nl + 2 + size + 2
                assert pos <= len(data), "chunk cut short"
                if size == 0:
                    break
        elif b"content-length" in headers:
            pos += int(headers[b"content-length"])
            assert pos <= len(data), "body cut short"
        elif status not in (204, 304):
            # A HEAD answer has neither: nothing more can follow it here.
            break
    return statuses


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(conversation())
def test_the_worker_answers_anything_with_responses_or_a_close(srv, conv):
    raw, cuts = conv
    with socket.create_connection((srv.host, srv.port), timeout=10) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for piece in split(raw, cuts):
                s.sendall(piece)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass        # the server closed first (EPIPE, ECONNRESET, ENOTCONN)
        data = b""
        try:
            while chunk := s.recv(65536):
                data += chunk
        except ConnectionResetError:
            pass        # the server closed with input unread: a close, whatever came before
        except TimeoutError:
            raise AssertionError(f"no answer and no close within 10 s; got {data[:300]!r}") from None
    statuses = check_responses(data, b"HEAD" in raw)
    assert all(100 <= c < 600 for c in statuses)
    assert workers_of(srv) == srv.pids, srv.log[-3000:]


def test_after_fuzzing_the_same_worker_serves_and_logged_no_server_error(srv):
    assert_serving(srv, srv.pids)
    # Every input got a protocol answer: none went through the catch-all path.
    assert "error reading a request" not in srv.log
    assert "unexpected error" not in srv.log
    assert "Traceback" not in srv.log, srv.log[-5000:]
