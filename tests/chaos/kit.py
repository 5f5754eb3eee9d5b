"""A client load that counts every failed request, for the chaos tests and
``bench/reliability.py``.

:class:`ChaosLoad` runs a few client threads against a server serving
``tests/apps/chaosapp.py``. Half the threads keep one connection alive across
requests, the others open a connection per request (``Connection: close``).
Each request is a GET of a blob or a POST whose body comes back, of a size
drawn from :data:`GET_SIZES` / :data:`POST_SIZES`, some held in the app for a
few milliseconds so that a signal finds requests in flight. Every response is
checked: status 200, the ``Content-Length`` framing, and the body against
what the client computes itself (the blob from its seed, the echo against
what was sent) and against the ``X-Body-Sha256`` the app sent.

What counts as a failed request
-------------------------------
A request fails when it fails: there are **no retries**. Connection refused,
a reset, a close before or during the response, a timeout, a status other
than 200, a body that is short, long or different: all are failures, each
recorded as a :class:`Failure` with its kind and details.

The one exception is what a real client's connection pool does with a stale
idle connection. On a kept-alive connection that has already carried a
request, the client opens a new connection *without counting a failure* only
when the request provably never left:

1. just before sending, the connection is already closed by the server (it
   polls readable and a peek reads EOF or a reset): the server closed it
   while it was idle; or
2. the very first ``send()`` of the request fails (EPIPE, ECONNRESET)
   before the kernel accepted a single byte of it.

Both are counted in :attr:`ChaosLoad.reconnects`. Once any byte of a request
is out, whatever happens next is the request's fate. (A server that closes
an idle connection in the microseconds between the check and the send makes
that request fail: a real pool would see the same EOF, and only retries it
because the method is idempotent. This kit does not.) A fresh connection
gets no exception at all: a new connection that fails is a failed request.
"""

from __future__ import annotations

import hashlib
import os
import random
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The app by its plain name, as the servers know it: tests/apps is on sys.path
# (pytest's pythonpath in pyproject.toml; bench/reliability.py puts it there too).
from chaosapp import blob

from tests.server import HTTPReader, Response, ServerProcess, running

# Body sizes in bytes, chosen to cross the points where a server changes
# strategy: empty, one segment, one send, more than a socket buffer, and
# uploads large enough to be spooled to a file rather than kept in memory.
GET_SIZES = (0, 13, 1_000, 16_384, 120_000)
POST_SIZES = (1, 700, 8_192, 65_536, 600_000)
DELAYED_SHARE = 0.3            # of requests held 1..20 ms in the app
SOCKET_TIMEOUT = 10.0


@dataclass(frozen=True)
class Failure:
    """One failed request, with what a person needs to understand it."""

    kind: str            # refused, reset, no-response, truncated, status, body, timeout, ...
    detail: str
    started: float       # time.monotonic() just before the first byte was sent
    reused: bool         # on a kept-alive connection that had carried a request already
    pid: int | None      # the worker that answered the connection's previous request
    request: str         # "GET 16384" / "POST 700"

    def describe(self, t0: float = 0.0) -> str:
        conn = "kept-alive" if self.reused else "new"
        who = f", previous answer from pid {self.pid}" if self.pid else ""
        return (f"{self.kind} at t+{self.started - t0:.2f}s on a {conn} connection "
                f"({self.request}{who}): {self.detail}")


class _CountingReader(HTTPReader):
    """tests/server.py's reader, counting bytes received: a close after 0
    bytes is "no response", after some it is "truncated"."""

    def __init__(self, sock: socket.socket):
        super().__init__(sock)
        self.received = 0

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.received += len(data)
        self.buf += data
        return True


class _NeverSent(Exception):
    """The request did not leave (see the module docstring): reconnect."""


class _Failed(Exception):
    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


@dataclass
class _Request:
    method: str
    size: int
    seed: int
    delay: int
    body: bytes = b""
    expected: bytes = b""

    @property
    def label(self) -> str:
        return f"{self.method} {self.size}" + (f" delay {self.delay}ms" if self.delay else "")


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether the server closed this idle connection (EOF or RST waiting).

    Unsolicited bytes on an idle connection are a protocol error: raised as a
    failure of the request about to be sent.
    """
    poller = select.poll()
    poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    if not poller.poll(0):
        return False
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return False
    except OSError:
        return True          # ECONNRESET and the like: closed
    if data == b"":
        return True
    raise _Failed("unsolicited", f"bytes on an idle connection: {data!r}")


@dataclass
class _Conn:
    sock: socket.socket
    reader: _CountingReader
    used: bool = False      # has carried a request already
    pid: int | None = None  # X-Worker-Pid of its last response


@dataclass
class LoadStats:
    """What a :class:`ChaosLoad` saw; read it after :meth:`ChaosLoad.stop`."""

    ok: int = 0
    reconnects: int = 0
    failures: list[Failure] = field(default_factory=list)
    pids: Counter[int] = field(default_factory=Counter)   # worker pid -> requests answered
    ok_times: list[float] = field(default_factory=list)   # monotonic end of each success

    @property
    def requests(self) -> int:
        return self.ok + len(self.failures)

    def kinds(self) -> Counter[str]:
        return Counter(f.kind for f in self.failures)

    def ok_after(self, t: float) -> int:
        return sum(1 for x in self.ok_times if x > t)


class ChaosLoad:
    """Client threads against ``host:port`` until :meth:`stop`.

    ``threads`` clients run at once, each with at most one request in flight
    (no pipelining): at any moment at most ``threads`` requests can be lost.
    Even-numbered threads keep their connection alive, odd ones open one per
    request. Use as a context manager or call :meth:`stop`.
    """

    def __init__(self, host: str, port: int, threads: int = 6, seed: int | None = None,
                 max_seconds: float = 55.0, path_prefix: str = ""):
        self.host, self.port, self.prefix = host, port, path_prefix
        self.stats = LoadStats()
        self.t0 = time.monotonic()
        self.threads = threads
        self._seed = seed if seed is not None else random.randrange(1 << 30)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = self.t0 + max_seconds
        self._workers = [threading.Thread(target=self._client, args=(i,), daemon=True,
                                          name=f"chaos-client-{i}") for i in range(threads)]
        for t in self._workers:
            t.start()

    def __enter__(self) -> ChaosLoad:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> LoadStats:
        """Stop the clients (each finishes the request it is on) and return the stats."""
        self._stop.set()
        for t in self._workers:
            t.join(SOCKET_TIMEOUT + 5)
        return self.stats

    # -- reporting ---------------------------------------------------------

    def report(self, limit: int = 8) -> str:
        """One paragraph for an assertion message: counts, kinds, the first failures."""
        s = self.stats
        kinds = ", ".join(f"{k} {n}" for k, n in s.kinds().most_common()) or "none"
        lines = [f"{s.ok} requests succeeded, {len(s.failures)} failed (kinds: {kinds}); "
                 f"{s.reconnects} stale kept-alive connections reopened; "
                 f"answered by {len(s.pids)} worker pids; seed {self._seed}"]
        lines += ["  " + f.describe(self.t0) for f in s.failures[:limit]]
        if len(s.failures) > limit:
            lines.append(f"  ... and {len(s.failures) - limit} more")
        return "\n".join(lines)

    def assert_clean(self, min_ok: int = 100) -> None:
        """Zero failed requests, and enough succeeded for that to mean something."""
        s = self.stats
        assert not s.failures and s.ok >= min_ok, self.report()

    def wait_for_ok(self, n: int, timeout: float = 10.0) -> None:
        """Block until ``n`` more requests have succeeded (the load is really running)."""
        with self._lock:
            target = self.stats.ok + n
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if self.stats.ok >= target:
                    return
            time.sleep(0.02)
        raise AssertionError(f"fewer than {n} requests succeeded in {timeout} s:\n{self.report()}")

    # -- the clients -------------------------------------------------------

    def _client(self, index: int) -> None:
        rng = random.Random(self._seed * 1000 + index)
        keepalive = index % 2 == 0
        conn: _Conn | None = None
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            req = self._draw(rng)
            try:
                conn = self._exchange(conn, req, keepalive)
            except _Failed:
                conn = None
        if conn is not None:
            conn.sock.close()

    def _draw(self, rng: random.Random) -> _Request:
        delay = rng.randint(1, 20) if rng.random() < DELAYED_SHARE else 0
        if rng.random() < 0.5:
            size, seed = rng.choice(GET_SIZES), rng.randrange(1 << 20)
            return _Request("GET", size, seed, delay, expected=blob(size, seed))
        size = rng.choice(POST_SIZES)
        body = os.urandom(size)
        return _Request("POST", size, 0, delay, body=body, expected=body)

    def _head(self, req: _Request, keepalive: bool) -> bytes:
        q = f"delay={req.delay}" if req.delay else ""
        if req.method == "GET":
            target = f"{self.prefix}/blob?size={req.size}&seed={req.seed}" + (f"&{q}" if q else "")
        else:
            target = f"{self.prefix}/echo" + (f"?{q}" if q else "")
        lines = [f"{req.method} {target} HTTP/1.1", f"Host: {self.host}"]
        if req.method == "POST":
            lines += [f"Content-Length: {len(req.body)}", "Content-Type: application/octet-stream"]
        if not keepalive:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _connect(self) -> _Conn:
        sock = socket.create_connection((self.host, self.port), timeout=SOCKET_TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return _Conn(sock, _CountingReader(sock))

    def _exchange(self, conn: _Conn | None, req: _Request, keepalive: bool) -> _Conn | None:
        """Send ``req`` and check its answer; the connection to reuse, or None.

        Records the outcome; raises :class:`_Failed` after recording a failure.
        """
        data = self._head(req, keepalive) + req.body
        started = time.monotonic()
        reused, prev_pid = False, None
        for _ in range(2):      # the second pass only after a stale kept-alive connection
            reused = conn is not None and conn.used
            prev_pid = conn.pid if conn is not None else None
            try:
                if conn is None:
                    try:
                        conn = self._connect()
                    except ConnectionRefusedError as e:
                        raise _Failed("refused", str(e)) from None
                    except OSError as e:
                        raise _Failed("connect", f"{type(e).__name__}: {e}") from None
                started = time.monotonic()
                self._send(conn, data)
                break
            except _NeverSent:
                conn.sock.close()           # type: ignore[union-attr]
                conn = None
                with self._lock:
                    self.stats.reconnects += 1
            except _Failed as f:
                self._fail(f, started, reused, prev_pid, req, conn)
                raise
        assert conn is not None
        try:
            resp = self._receive(conn)
            self._check(req, resp)
        except _Failed as f:
            self._fail(f, started, reused, prev_pid, req, conn)
            raise
        conn.used = True
        pid = resp.header("x-worker-pid")
        conn.pid = int(pid) if pid and pid.isdigit() else None
        with self._lock:
            self.stats.ok += 1
            self.stats.ok_times.append(time.monotonic())
            if conn.pid:
                self.stats.pids[conn.pid] += 1
        if not keepalive or (resp.header("connection") or "").lower() == "close":
            conn.sock.close()
            return None
        return conn

    def _send(self, conn: _Conn, data: bytes) -> None:
        if conn.used and _closed_by_peer(conn.sock):
            raise _NeverSent
        view, sent = memoryview(data), 0
        while sent < len(data):
            try:
                sent += conn.sock.send(view[sent:])
            except (BrokenPipeError, ConnectionResetError) as e:
                if sent == 0 and conn.used:
                    raise _NeverSent from None
                raise _Failed("reset", f"sending ({sent} of {len(data)} bytes out): "
                              f"{type(e).__name__}: {e}") from None
            except TimeoutError:
                raise _Failed("timeout", f"sending ({sent} of {len(data)} bytes out)") from None
            except OSError as e:
                raise _Failed("send", f"{type(e).__name__}: {e}") from None

    def _receive(self, conn: _Conn) -> Response:
        reader = conn.reader
        before = reader.received
        try:
            return reader.read_response()
        except TimeoutError:
            raise _Failed("timeout", f"no complete response in {SOCKET_TIMEOUT:g} s "
                          f"({reader.received - before} bytes came)") from None
        except (EOFError, ConnectionResetError, OSError) as e:
            got = reader.received - before
            what = "closed" if isinstance(e, EOFError) else type(e).__name__
            if got == 0:
                kind = "no-response" if isinstance(e, EOFError) else "reset"
                raise _Failed(kind, f"{what} before any byte of the response") from None
            raise _Failed("truncated", f"{what} after {got} bytes of the response: "
                          f"{str(e)[:160]}") from None
        except (ValueError, IndexError) as e:
            raise _Failed("malformed", f"{type(e).__name__}: {e}") from None

    def _check(self, req: _Request, resp: Response) -> None:
        if resp.status != 200:
            raise _Failed("status", f"{resp.status} {resp.reason}: {resp.body[:120]!r}")
        body = resp.body
        if resp.header("content-length") is None:
            raise _Failed("framing", f"no Content-Length (headers {resp.headers!r})")
        digest = hashlib.sha256(body).hexdigest()
        if digest != resp.header("x-body-sha256") or str(len(body)) != resp.header("x-body-length"):
            raise _Failed("body", f"{len(body)} bytes that do not match the app's "
                          f"X-Body-Length {resp.header('x-body-length')} / X-Body-Sha256")
        if body != req.expected:
            raise _Failed("body", f"{len(body)} bytes, not the {len(req.expected)} expected")

    def _fail(self, f: _Failed, started: float, reused: bool, pid: int | None,
              req: _Request, conn: _Conn | None) -> None:
        if conn is not None:
            conn.sock.close()
        with self._lock:
            self.stats.failures.append(Failure(f.kind, f.detail, started, reused, pid, req.label))


def group_members(pgid: int) -> list[int]:
    """Live processes in process group ``pgid`` (a server started in its own session)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state, [2] the process group
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(name))
    return out


def summary(stats: LoadStats) -> dict[str, Any]:
    """The stats as plain data (the benchmark prints and stores it)."""
    return {"ok": stats.ok, "failed": len(stats.failures), "kinds": dict(stats.kinds()),
            "reconnects": stats.reconnects, "pids": len(stats.pids)}


@contextmanager
def chaos_server(*args: str, log_files: list[Path] | None = None,
                 env: dict[str, str] | None = None) -> Iterator[ServerProcess]:
    """``running("chaosapp:app", *args)``, then a check that the server's whole
    process group is gone: a worker or a new master left behind fails the test."""
    with running("chaosapp:app", *args, log_files=log_files, env=env) as srv:
        pgid = srv.proc.pid
        yield srv
    deadline = time.monotonic() + 5
    while (left := group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"processes left behind in group {pgid}: {left}"
