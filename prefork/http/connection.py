"""Per-connection request assembly: bytes in, complete requests out.

An :class:`HTTPConnection` buffers what the client sends until a whole request
(head and body) is there, so the thread that runs the application never waits
on a slow client. Bodies larger than ``spool_threshold`` move from memory to
an anonymous temporary file as they arrive. Bytes past the end of one request
stay buffered: they are the next, pipelined request, answered in order.

No sockets here: the worker moves the bytes and acts on two flags,
``continue_needed`` (send ``100 Continue``) and ``waiting_for_body``.
"""

from __future__ import annotations

import io
import tempfile
from typing import BinaryIO

from .parser import (
    ChunkedReader,
    LengthReader,
    Limits,
    RequestHead,
    find_head_end,
    parse_head,
    skip_leading_crlf,
)


class Request:
    """A complete request: its head and its whole body as a readable file."""

    __slots__ = ("head", "body", "body_length")

    def __init__(self, head: RequestHead, body: BinaryIO, body_length: int):
        self.head = head
        self.body = body
        self.body_length = body_length


class BodyBuffer:
    """Collects body bytes in memory, moving them to a temp file past ``threshold``."""

    __slots__ = ("threshold", "tmpdir", "size", "_parts", "_file")

    def __init__(self, threshold: int, tmpdir: str | None = None):
        self.threshold = threshold
        self.tmpdir = tmpdir
        self.size = 0
        self._parts: list[bytes] = []
        self._file: BinaryIO | None = None

    @property
    def spooled(self) -> bool:
        return self._file is not None

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._parts.append(data)
        if self.size > self.threshold:
            self._file = tempfile.TemporaryFile(dir=self.tmpdir)  # noqa: SIM115 - closed with the request
            self._file.write(b"".join(self._parts))
            self._parts = []

    def finish(self) -> BinaryIO:
        """The body as a file positioned at its start; holds nothing past the body."""
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            return self._file
        return io.BytesIO(b"".join(self._parts))

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._parts = []


class HTTPConnection:
    """Assembles the requests of one client connection, in order.

    Call :meth:`receive` with each chunk read from the socket, then
    :meth:`next_request` until it returns None (more bytes needed). Any
    :class:`~prefork.http.errors.HTTPError` it raises means the connection must
    be answered with that status and closed.
    """

    __slots__ = ("limits", "spool_threshold", "tmpdir", "buf", "continue_needed",
                 "_head", "_reader", "_body")

    def __init__(self, limits: Limits, spool_threshold: int = 512 * 1024,
                 tmpdir: str | None = None):
        self.limits = limits
        self.spool_threshold = spool_threshold
        self.tmpdir = tmpdir
        self.buf = b""
        self.continue_needed = False
        self._head: RequestHead | None = None
        self._reader: LengthReader | ChunkedReader | None = None
        self._body: BodyBuffer | None = None

    @property
    def idle(self) -> bool:
        """No part of a request has been received."""
        return not self.buf and self._head is None

    @property
    def waiting_for_body(self) -> bool:
        return self._head is not None

    def receive(self, data: bytes) -> None:
        if self._reader is not None:
            self._feed_body(data)
        elif self.buf:
            self.buf += data
        else:
            self.buf = data

    def next_request(self) -> Request | None:
        head = self._head
        if head is None:
            buf = self.buf
            if buf[:2] == b"\r\n":
                buf = self.buf = skip_leading_crlf(buf)
            end = find_head_end(buf, self.limits)
            if end < 0:
                return None
            head = parse_head(buf[:end], self.limits)
            self.buf = rest = buf[end:]
            if not head.chunked:
                length = head.content_length or 0
                if len(rest) >= length and length <= self.spool_threshold:
                    # The common case: the whole body (often none) is here.
                    if length:
                        self.buf = rest[length:]
                        return Request(head, io.BytesIO(rest[:length]), length)
                    return Request(head, io.BytesIO(), 0)
                self._reader = LengthReader(length)
            else:
                self._reader = ChunkedReader(self.limits.body)
            self._head = head
            self._body = BodyBuffer(self.spool_threshold, self.tmpdir)
            self.buf = b""
            self.continue_needed = head.expect_continue and not rest
            if rest:
                self._feed_body(rest)
        if self._reader is not None:
            return None
        body = self._body
        assert body is not None
        self._head = self._body = None
        return Request(head, body.finish(), body.size)

    def _feed_body(self, data: bytes) -> None:
        reader, body = self._reader, self._body
        assert reader is not None and body is not None
        self.continue_needed = False
        if isinstance(reader, LengthReader):
            piece, rest = reader.feed(data)
            body.write(piece)
        else:
            pieces, rest = reader.feed(data)
            for piece in pieces:
                body.write(piece)
        if rest is not None:
            self._reader = None
            self.buf = rest

    def close(self) -> None:
        """Drop a half-received request (its spooled body file included)."""
        if self._body is not None:
            self._body.discard()
        self._head = self._reader = self._body = None
        self.buf = b""
