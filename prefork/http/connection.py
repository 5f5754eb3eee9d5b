"""Per-connection request assembly: bytes in, complete requests out.

An :class:`HTTPConnection` buffers what the client sends until a whole request
(head and body) is there, so the thread that runs the application never waits
on a slow client. Bodies larger than ``spool_threshold`` move from memory to
an anonymous temporary file as they arrive. Bytes past the end of one request
stay buffered: they are the next, pipelined request, answered in order.

No sockets here: the worker moves the bytes and acts on two flags,
``continue_needed`` (send ``100 Continue``) and ``waiting_for_body``, and
reads ``body_received`` to hold a slow upload to a minimum rate.
"""

from __future__ import annotations

import io
import tempfile
from typing import BinaryIO, Protocol

from .errors import BadRequest, ServiceUnavailable
from .parser import (
    MAX_EMPTY_LINES,
    ChunkedReader,
    LengthReader,
    Limits,
    RequestHead,
    find_head_end,
    parse_head,
    skip_leading_crlf,
)


class BufferedRequest:
    """A complete request as the loop buffered it, before a thread sees it:
    its parsed head and its whole body as a readable file. (The app layer's
    request object is :class:`prefork.web.Request`, built from the environ.)"""

    __slots__ = ("head", "body", "body_length")

    def __init__(self, head: RequestHead, body: BinaryIO, body_length: int):
        self.head = head
        self.body = body
        self.body_length = body_length


# A partial head this small is refused only when the budget is overrun (over
# twice its limit), not as soon as it is exhausted.
SMALL_HEAD = 16 * 1024


class BufferBudget(Protocol):
    """The memory a worker lets its connections hold for requests still
    arriving (partial heads, bodies below the spool threshold). The worker's
    implementation is shared by all its connections and thread-safe."""

    def charge(self, delta: int) -> None:
        """Add ``delta`` bytes (negative: give them back)."""

    @property
    def exhausted(self) -> bool:
        """More than the limit is held: spool bodies, refuse large partial heads."""

    @property
    def overrun(self) -> bool:
        """More than twice the limit is held: refuse every partial head."""


class BodyBuffer:
    """Collects body bytes in memory, moving them to a temp file past ``threshold``
    (or at once when ``budget`` is exhausted).

    Bytes go into one bytearray, not a list of pieces: a chunked body of
    1-byte chunks would otherwise cost ~40 bytes of memory per body byte."""

    __slots__ = ("threshold", "tmpdir", "size", "_mem", "_file", "_budget")

    def __init__(self, threshold: int, tmpdir: str | None = None,
                 budget: BufferBudget | None = None):
        self.threshold = threshold
        self.tmpdir = tmpdir
        self.size = 0
        self._mem = bytearray()
        self._file: BinaryIO | None = None
        self._budget = budget

    @property
    def spooled(self) -> bool:
        return self._file is not None

    @property
    def in_memory(self) -> int:
        """Body bytes held in memory."""
        return len(self._mem)

    def write(self, data: bytes) -> None:
        if not data:
            return
        self.size += len(data)
        if self._file is not None:
            self._file.write(data)
            return
        self._mem += data
        if self.size > self.threshold or (self._budget is not None and self._budget.exhausted):
            self.spill()

    def spill(self) -> None:
        """Move what is in memory to the temp file (made now if need be)."""
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=self.tmpdir)  # noqa: SIM115 - closed with the request
        self._file.write(self._mem)
        self._mem = bytearray()

    def finish(self) -> BinaryIO:
        """The body as a file positioned at its start; holds nothing past the body."""
        if self._file is not None:
            self._file.flush()
            self._file.seek(0)
            return self._file
        body = io.BytesIO(self._mem)
        self._mem = bytearray()
        return body

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._mem = bytearray()


class HTTPConnection:
    """Assembles the requests of one client connection, in order.

    Call :meth:`receive` with each chunk read from the socket, then
    :meth:`next_request` until it returns None (more bytes needed). Any
    :class:`~prefork.http.errors.RequestError` it raises means the connection must
    be answered with that status and closed.

    Cost: every byte is scanned a bounded number of times whatever the pieces
    it arrives in (a partial head is kept in a bytearray and only its new
    bytes are searched). With a ``budget``, what the connection holds in
    memory between calls is charged to it, and given back when the request
    is complete or dropped.
    """

    __slots__ = ("limits", "spool_threshold", "tmpdir", "buf", "continue_needed",
                 "heads", "body_received", "_head", "_reader", "_body", "_scanned",
                 "_empty_lines", "_budget", "_held")

    def __init__(self, limits: Limits, spool_threshold: int = 512 * 1024,
                 tmpdir: str | None = None, budget: BufferBudget | None = None):
        self.limits = limits
        self.spool_threshold = spool_threshold
        self.tmpdir = tmpdir
        self.buf: bytes | bytearray = b""
        self.continue_needed = False
        self.heads = 0              # request heads parsed so far
        self.body_received = 0      # bytes of the current body received (as framed)
        self._head: RequestHead | None = None
        self._reader: LengthReader | ChunkedReader | None = None
        self._body: BodyBuffer | None = None
        self._scanned = 0           # bytes of buf already searched for the head's end
        self._empty_lines = 0       # empty lines before the current request
        self._budget = budget
        self._held = 0              # bytes charged to the budget

    @property
    def idle(self) -> bool:
        """No part of a request has been received (empty lines and a lone CR
        that may start one are not a request)."""
        if self._head is not None:
            return False
        buf = self.buf
        return not buf or buf == b"\r"

    @property
    def waiting_for_body(self) -> bool:
        return self._head is not None

    def receive(self, data: bytes) -> None:
        if self._reader is not None:
            self._feed_body(data)
        elif not self.buf:
            self.buf = data
        elif type(self.buf) is bytes:
            self.buf = bytearray(self.buf)
            self.buf += data
        else:
            self.buf += data        # in place: a head in many pieces is not recopied

    def next_request(self) -> BufferedRequest | None:
        head = self._head
        if head is None:
            buf = self.buf
            if buf[:2] == b"\r\n":
                buf, n = skip_leading_crlf(buf)
                self.buf = buf
                self._scanned = 0
                self._empty_lines += n
                if self._empty_lines > MAX_EMPTY_LINES:
                    raise BadRequest(f"more than {MAX_EMPTY_LINES} empty lines before a request")
            end = find_head_end(buf, self.limits, self._scanned)
            if end < 0:
                self._scanned = len(buf)
                if self._budget is not None:
                    self._account()
                return None
            if type(buf) is not bytes:
                buf = bytes(buf)
            head = parse_head(buf[:end], self.limits)
            self.heads += 1
            self._scanned = self._empty_lines = 0
            self.buf = rest = buf[end:]
            if not head.chunked:
                length = head.content_length or 0
                if len(rest) >= length and length <= self.spool_threshold:
                    # The common case: the whole body (often none) is here.
                    if length:
                        self.buf = rest[length:]
                        req = BufferedRequest(head, io.BytesIO(rest[:length]), length)
                    else:
                        req = BufferedRequest(head, io.BytesIO(), 0)
                    if self._held:
                        self._account(refuse=False)
                    return req
                self._reader = LengthReader(length)
            else:
                self._reader = ChunkedReader(self.limits.body, self.limits)
            self._head = head
            self._body = BodyBuffer(self.spool_threshold, self.tmpdir, self._budget)
            self.buf = b""
            self.body_received = 0
            self.continue_needed = head.expect_continue and not rest
            if rest:
                self._feed_body(rest)
        if self._reader is not None:
            if self._budget is not None:
                self._account()
            return None
        body = self._body
        assert body is not None
        self._head = self._body = None
        req = BufferedRequest(head, body.finish(), body.size)
        if self._held:
            self._account(refuse=False)
        return req

    def spill(self) -> None:
        """Move a body still arriving from memory to its temp file (the
        worker does this to every such body when its budget is exhausted)."""
        if self._body is not None and self._body.in_memory:
            self._body.spill()
            if self._budget is not None:
                self._account(refuse=False)

    def _account(self, refuse: bool = True) -> None:
        """Charge the budget with what this connection now holds in memory
        (pipelined bytes are the next request's). With ``refuse``, a partial
        head is refused (503) when the budget is exhausted and the head is
        over :data:`SMALL_HEAD`, or the budget is over twice its limit: a
        head split over a few TCP segments still gets through a flood of
        large ones."""
        held = len(self.buf) if self._head is None else 0
        if self._body is not None:
            held += self._body.in_memory
        budget = self._budget
        assert budget is not None
        if held != self._held:
            budget.charge(held - self._held)
            self._held = held
        if refuse and self._head is None and held > 1 and budget.exhausted and (
                held > SMALL_HEAD or budget.overrun):
            raise ServiceUnavailable("the server holds too many partial requests; try again")

    def _feed_body(self, data: bytes) -> None:
        reader, body = self._reader, self._body
        assert reader is not None and body is not None
        self.continue_needed = False
        self.body_received += len(data)
        if isinstance(reader, LengthReader):
            piece, rest = reader.feed(data)
            body.write(piece)
        else:
            pieces, rest = reader.feed(data)
            for piece in pieces:
                body.write(piece)
        if rest is not None:
            self._reader = None
            self.body_received -= len(rest)
            self.buf = rest

    def close(self) -> None:
        """Drop a half-received request (its spooled body file included)."""
        if self._body is not None:
            self._body.discard()
        self._head = self._reader = self._body = None
        self.buf = b""
        self._scanned = 0
        if self._held and self._budget is not None:
            self._budget.charge(-self._held)
            self._held = 0
