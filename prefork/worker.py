"""One worker process: an epoll loop that owns every socket wait, and a bounded
pool of threads that run the application.

The path of a request:

1. The loop accepts a connection and reads from it whenever epoll says it is
   readable, feeding the bytes to an :class:`~prefork.http.connection.HTTPConnection`
   until a whole request (head and body) is buffered. A slow client therefore
   costs memory, never a thread: what it has sent so far (a partial head, up
   to the head limits; a body, up to ``spool_threshold`` before it moves to a
   temporary file), all of it charged to the worker's ``limit_buffer_memory``
   (docs/security.md has the worst case per connection).
2. The complete request goes to the pool (in batches: see ``_dispatch``). One
   thread runs the application and writes the response, then answers any
   request already pipelined behind it.
3. The thread gives the connection back by re-arming it in epoll. Connections
   are registered ``EPOLLONESHOT``: a connection is owned either by epoll (armed)
   or by exactly one thread, and re-arming needs no round trip through the loop.
   When it is the worker's only connection, the thread first waits up to a
   millisecond for the next request itself, as a sync worker would.

When every thread is busy (or ``max_connections`` are open) the listeners are
taken out of epoll: the kernel keeps new connections in the backlog, where
another worker can take them, instead of this worker accepting work it cannot
start. Listeners are registered ``EPOLLEXCLUSIVE`` so one incoming connection
wakes one worker, not all of them. Kept-alive clients that send their next
request at once could keep every thread busy for good, though, and a new
connection would wait in the backlog for as long as they go on. So a busy
worker looks at the backlog every ``BACKLOG_CHECK`` seconds, and when a
connection is still waiting there one check later (no idle worker took it),
it accepts it and queues its request behind the others: everyone gets a turn.

Deadlines (header, body, keep-alive idle, lingering close) are checked by a
sweep in the loop twice a second; writes have their own timeout in the thread.
Only bytes of a request move a deadline: empty lines before a request do not,
and a body must keep up ``body_min_rate`` on top of never pausing for
``body_timeout``.

A connection's life is a :class:`ConnState`, changed only by
``Worker._enter`` against a table::

    NEW --request--> OWNED --kept alive--> IDLE --bytes--> READING --request--> OWNED ...
    any --error answered--> LINGERING --EOF or 2 s--> CLOSED
    PROXY --PROXY header--> NEW     (proxy_protocol on; a bad header: CLOSED, unanswered)
    NEW / IDLE --graceful stop--> DRAINING --request--> OWNED (answered with close)
                                           --STOP_GRACE--> LINGERING --> CLOSED

OWNED belongs to one pool thread, every other state to the loop. A graceful
stop closes the listeners, answers every request already sent (with
``Connection: close``), gives idle connections STOP_GRACE for one on its
way, then closes them with a lingering close (write side shut, input
drained), so a request in flight meets a clean end of file, never a reset.

Whatever goes wrong while one connection is read, parsed or spooled (a bug,
a full upload directory) is logged with its traceback and answered on that
connection alone (500, or the protocol error's status); the loop, the other
connections and the worker carry on.
"""

from __future__ import annotations

import enum
import errno
import logging
import os
import select
import signal
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any

from .http.connection import BufferedRequest, HTTPConnection
from .http.errors import ClientGone, InternalError, RequestError, RequestTimeout
from .http.parser import Limits
from .http.proxy import Forwarding, Networks, ProxyError, RequestIds, parse_proxy_header
from .http.wsgi import Exchange, base_environ, error_response, make_environ, run_app
from .log import DEFAULT_ACCESS_FORMAT, AccessLog, dump_stacks_to_error_log, reopen_error_log
from .scoreboard import (
    C_ACCEPTED,
    C_BYTES_IN,
    C_BYTES_OUT,
    C_LATENCY,
    C_LATENCY_SUM_US,
    C_METHOD,
    C_REJECTED,
    C_STATUS,
    LATENCY_BOUNDS,
    METHODS,
    N_COUNTERS,
    READY,
    REJECT_REASONS,
    STOPPING,
    Slot,
)
from .threads import start_thread

log = logging.getLogger("prefork.error")

EPOLLIN = select.EPOLLIN
ARMED_EVENTS = select.EPOLLIN | select.EPOLLONESHOT
LISTEN_EVENTS = select.EPOLLIN | getattr(select, "EPOLLEXCLUSIVE", 0)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
LINGER_SECONDS = 2.0
SWEEP_INTERVAL = 0.5
# On a graceful stop, a connection with no request under way (just accepted,
# or kept alive between two requests) gets this long to send its next one
# before it is closed: closing it at once loses a request already on its way
# (a client under load sends the next as soon as it has an answer). A request
# that arrives in time is answered with "Connection: close".
STOP_GRACE = 1.0
BEAT_INTERVAL = 0.2
# While every thread is busy: how often to look for connections left waiting
# in the backlog. One waiting at two checks in a row is accepted anyway.
BACKLOG_CHECK = 0.01
# A thread that has answered a kept-alive request on the worker's only
# connection waits this long (ms) for the client's next request itself: that
# saves the trip through epoll and the loop thread (docs/benchmarks.md has
# the gain). With more connections, threads waking on their own would fight
# over the GIL, and the loop, which reads many at once, wins.
NEXT_REQUEST_WAIT_MS = 1
# A failure that can repeat for every client (a full disk, no descriptors
# left) is logged in full at most once per this many seconds (LogEvery).
LOG_REPEATS_EVERY = 10.0
# accept() failing for want of a resource (EMFILE, ENFILE, ENOBUFS, ENOMEM):
# the listeners leave epoll for this long, as nginx does, instead of waking
# the loop again at once for the same failure.
ACCEPT_PAUSE = 0.5
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
# Counter columns (scoreboard.py) by request method, and by the status of an
# answer the server gave itself.
_METHOD_COLUMN = {m: C_METHOD + i for i, m in enumerate(METHODS)}
_OTHER_METHOD = _METHOD_COLUMN["other"]
_REJECTED = {name: C_REJECTED + i for i, name in enumerate(REJECT_REASONS)}
_REJECT_COLUMN = {400: _REJECTED["bad_request"], 408: _REJECTED["timeout"],
                  413: _REJECTED["too_large"], 414: _REJECTED["too_large"],
                  431: _REJECTED["too_large"], 503: _REJECTED["overload"]}


@dataclass
class WorkerSettings:
    """The few settings a worker reads; built from prefork.config.Config."""

    threads: int = 8
    max_connections: int = 1000
    keepalive: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    body_min_rate: int = 500
    write_timeout: float = 30.0
    graceful_timeout: float = 30.0
    limits: Limits = field(default_factory=Limits)
    spool_threshold: int = 512 * 1024
    buffer_memory: int = 64 * 1024 * 1024
    tmp_upload_dir: str | None = None
    root_path: str = ""
    multiprocess: bool = False
    accesslog: str = ""
    access_log_format: str = ""
    ready_path: str = ""
    forwarding: Forwarding | None = None    # whose forwarded headers count, and which
    proxy_protocol: str = "off"             # off, v1, v2 or auto
    proxy_allow: Networks | None = None     # who may send a PROXY header
    request_ids: RequestIds | None = None   # request_id_header


class SocketWriter:
    """Blocking-with-deadline writes on a non-blocking socket.

    The fast path is one ``send``; only a full socket buffer waits in poll(2),
    at most ``timeout`` seconds without progress.
    """

    __slots__ = ("sock", "timeout_ms")

    def __init__(self, sock: socket.socket, timeout: float):
        self.sock = sock
        self.timeout_ms = int(timeout * 1000)

    def _wait(self) -> None:
        poller = select.poll()
        poller.register(self.sock, select.POLLOUT)
        if not poller.poll(self.timeout_ms):
            raise TimeoutError("write timed out: the client stopped reading")

    def write(self, data: bytes) -> None:
        try:
            sent = self.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            raise ClientGone(str(e)) from e
        if sent == len(data):
            return
        view = memoryview(data)[sent:]
        try:
            while view:
                self._wait()
                try:
                    view = view[self.sock.send(view):]
                except BlockingIOError:
                    pass
        except OSError as e:          # TimeoutError included
            raise ClientGone(str(e)) from e

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        out = self.sock.fileno()
        total = 0
        try:
            while total < count:
                try:
                    sent = os.sendfile(out, fd, offset + total, count - total)
                except BlockingIOError:
                    self._wait()
                    continue
                if sent == 0:
                    break   # the file is shorter than it was
                total += sent
        except OSError as e:
            raise ClientGone(str(e)) from e
        return total


class _Sink:
    """A transport that keeps nothing: the self-check needs only the status."""

    def write(self, data: bytes) -> None:
        pass

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        return count


class LogEvery:
    """Says when a repeating failure is due a full log entry again: at most
    once per ``seconds``, counting the times in between."""

    __slots__ = ("seconds", "last", "skipped")

    def __init__(self, seconds: float = LOG_REPEATS_EVERY):
        self.seconds = seconds
        self.last = -seconds
        self.skipped = 0        # times not due since the last full entry

    def due(self, now: float) -> bool:
        if now - self.last < self.seconds:
            self.skipped += 1
            return False
        self.last = now
        return True


class MemoryBudget:
    """Bytes of requests still arriving that one worker holds in memory, over
    all its connections (see HTTPConnection's ``budget``). Charged by the
    loop and by pool threads (pipelined requests), hence the lock; it is
    only touched when a request does not arrive whole in one read."""

    __slots__ = ("limit", "held", "_lock")

    def __init__(self, limit: int):
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def charge(self, delta: int) -> None:
        with self._lock:
            self.held += delta

    @property
    def exhausted(self) -> bool:
        return self.held > self.limit

    @property
    def overrun(self) -> bool:
        return self.held > 2 * self.limit


class ConnState(enum.IntEnum):
    """Where a connection is in its life. Who owns it follows from the state:
    a pool thread in OWNED, the loop (armed in epoll) in every other one but
    CLOSED, so a connection is never touched by two threads at once."""

    NEW = 0         # accepted; its first request not complete yet (Worker.unread counts these)
    READING = 1     # a later request partly received: its head or its body
    IDLE = 2        # kept alive between two requests, nothing buffered
    OWNED = 3       # a complete request is with the pool: queued, served, answered
    DRAINING = 4    # idle while the worker stops: STOP_GRACE to send one more request
    LINGERING = 5   # answered an error, or drained at a stop: write side shut, input drained
    CLOSED = 6
    PROXY = 7       # accepted on a PROXY protocol listener; its PROXY header not complete yet


C = ConnState
# The members as plain module globals: on the request path, ``ConnState.X``
# costs an attribute lookup on the enum class, a global lookup a tenth of it.
NEW, READING, IDLE, OWNED, DRAINING, LINGERING, CLOSED, PROXY = ConnState


class Phase(enum.Enum):
    """Where the worker is in its life (the same words as the master's
    ServerState). Only :meth:`Worker.stop` moves it, and only forward:
    RUNNING -> GRACEFUL_STOP -> FAST_STOP, or RUNNING -> FAST_STOP."""

    RUNNING = "running"               # accepting and answering
    GRACEFUL_STOP = "graceful stop"   # no new connections; every request sent is answered
    FAST_STOP = "fast stop"           # close everything now


RUNNING, GRACEFUL_STOP, FAST_STOP = Phase


def _mask(*states: ConnState) -> int:
    return sum(1 << s for s in states)


# The states each state may go to (a bit per state: checked with two int
# operations, on every transition).
_NEXT = (
    _mask(C.OWNED, C.DRAINING, C.LINGERING, C.CLOSED),                      # NEW
    _mask(C.OWNED, C.LINGERING, C.CLOSED),                                  # READING
    _mask(C.READING, C.OWNED, C.DRAINING, C.LINGERING, C.CLOSED),           # IDLE
    _mask(C.READING, C.IDLE, C.DRAINING, C.LINGERING, C.CLOSED),            # OWNED
    _mask(C.READING, C.OWNED, C.LINGERING, C.CLOSED),                       # DRAINING
    _mask(C.CLOSED),                                                        # LINGERING
    0,                                                                      # CLOSED
    _mask(C.NEW, C.CLOSED),                                                 # PROXY
)
ARMED = frozenset((C.NEW, C.READING, C.IDLE, C.DRAINING, C.LINGERING, C.PROXY))   # the loop's


class Conn:
    """One client connection and whatever part of a request it has sent."""

    __slots__ = ("sock", "fd", "http", "peer", "base", "writer", "deadline", "state",
                 "registered", "body_since", "trusted", "pending")

    def __init__(self, sock: socket.socket, peer: tuple[str, str], base: dict[str, Any],
                 settings: WorkerSettings, now: float, budget: MemoryBudget | None = None):
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.base = base
        self.http = HTTPConnection(settings.limits, settings.spool_threshold,
                                   settings.tmp_upload_dir, budget)
        self.writer = SocketWriter(sock, settings.write_timeout)
        self.deadline = now + settings.header_timeout
        self.state = NEW
        self.registered = False   # known to epoll (armed again with modify)
        self.body_since = 0.0     # when the body under way began (0: none yet)
        self.trusted = False      # the peer is in forwarded_allow_ips
        self.pending = b""        # PROXY: the part of the PROXY header received so far


class Listener:
    __slots__ = ("sock", "fd", "base", "tcp", "backlog_seen")

    def __init__(self, sock: socket.socket, base: dict[str, Any]):
        self.sock = sock
        self.fd = sock.fileno()
        self.base = base
        self.tcp = sock.family in (socket.AF_INET, socket.AF_INET6)
        self.backlog_seen = False   # had a connection waiting at the last backlog check


def listener_environ(sock: socket.socket, settings: WorkerSettings) -> dict[str, Any]:
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        host, port = sock.getsockname()[:2]
        return base_environ(host, str(port), settings.root_path, settings.multiprocess)
    return base_environ("localhost", "0", settings.root_path, settings.multiprocess)


class Worker:
    """Serves ``app`` on already-bound listening sockets until stopped.

    ``run()`` blocks in the calling thread (the process's main thread when
    signals are to be handled). ``stop()`` may be called from any thread or a
    signal handler.
    """

    def __init__(self, app: Callable[..., Any], listeners: list[socket.socket],
                 settings: WorkerSettings | None = None, slot: Slot | None = None,
                 parent_pid: int | None = None):
        self.app = app
        self.slot = slot
        self.parent_pid = parent_pid
        self.settings = s = settings or WorkerSettings()
        self.listeners = [Listener(sock, listener_environ(sock, s)) for sock in listeners]
        self.conns: dict[int, Conn] = {}
        self.budget = MemoryBudget(s.buffer_memory) if s.buffer_memory else None
        self.handlers: dict[int, Any] = {}
        self.queue: SimpleQueue[tuple[Conn, BufferedRequest] | None] = SimpleQueue()
        # Requests read and not yet handed to the pool (see _dispatch).
        self.ready: list[tuple[Conn, BufferedRequest]] = []
        self.lock = threading.Lock()
        self.busy = 0
        # Connections accepted whose first request has not been read yet
        # (NEW and PROXY): work on its way, which a burst of connections is
        # shared out by.
        self.unread = 0
        self.accepting = False
        self.accept_paused_until = 0.0   # listeners out of epoll until then (out of fds)
        self._accept_failures = LogEvery()
        self._proxy_refusals = LogEvery()
        self.phase = RUNNING
        self._fast_stop = False          # set before phase: see stop()
        self.now = time.monotonic()
        self.ep: Any = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._threads: list[threading.Thread] = []
        # What each pool thread is running: (start, head) or None. Read by the
        # heartbeat for the in-flight count and the oldest request's age.
        self.current: list[Any] = [None] * self.settings.threads
        # The metrics' counters (scoreboard.N_COUNTERS), one row per pool
        # thread and a last one for the loop thread: each thread writes only
        # its own, so no update is lost (+= on a shared int can be). The
        # beat sums the rows into the slot.
        self.counts = [[0] * N_COUNTERS for _ in range(self.settings.threads + 1)]
        self.loop_counts = self.counts[-1]
        # Server hooks, set by the master: (worker_view, environ[, status]).
        self.pre_request: Callable[..., Any] | None = None
        self.post_request: Callable[..., Any] | None = None
        self.hook_view: Any = None
        self.access_log: AccessLog | None = None
        # The signal the master asks for stacks with (faulthandler, set up by
        # the master's fork); None when the worker is embedded on its own.
        self.dump_signal: int | None = None
        self._last_beat = 0.0
        self._read_failures = LogEvery()

    # -- lifecycle ---------------------------------------------------------

    def stop(self, graceful: bool = True) -> None:
        """Begin a graceful stop (or a fast one). Any thread, or a signal
        handler: it sets the phase and wakes the loop, which does the rest."""
        if not graceful:
            self._fast_stop = True
            self.phase = FAST_STOP
        elif self.phase is RUNNING:
            self.phase = GRACEFUL_STOP
            # A fast stop (the INT handler, another thread) may have come
            # between the test and the write above: it never goes back.
            if self._fast_stop:
                self.phase = FAST_STOP
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass

    def stop_requested(self) -> bool:
        """True once a stop has begun: every answer from then on says
        ``Connection: close`` (the Exchange asks, when its head goes out)."""
        return self.phase is not RUNNING

    def install_signals(self) -> None:
        """TERM: graceful stop; INT/QUIT: fast stop. Main thread only."""
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, lambda *_: self.stop(graceful=True))
        signal.signal(signal.SIGINT, lambda *_: self.stop(graceful=False))
        signal.signal(signal.SIGQUIT, lambda *_: self.stop(graceful=False))
        signal.signal(signal.SIGUSR1, lambda *_: self.reopen_logs())

    def reopen_logs(self) -> None:
        """USR1: logrotate moved the files; open them again."""
        reopen_error_log()
        if self.dump_signal is not None:
            dump_stacks_to_error_log(self.dump_signal)   # it held the old file's fd
        if self.access_log is not None:
            self.access_log.reopen()

    def self_check(self, path: str) -> str:
        """Send the app ``GET path`` through the request path the clients'
        requests take (parser, environ, the app, response framing), before
        this worker accepts anything. Returns what is wrong ("" when the
        answer is a 2xx or 3xx)."""
        raw = (f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: prefork-ready-check\r\n"
               "Connection: close\r\n\r\n").encode("latin-1", "replace")
        http = HTTPConnection(self.settings.limits, self.settings.spool_threshold, None)
        try:
            http.receive(raw)
            req = http.next_request()
        except RequestError as e:
            return f"ready_path {path!r} is not a valid request target: {e}"
        assert req is not None
        sink = _Sink()
        exchange = Exchange(sink, "GET", req.head.version, False, None)
        base = self.listeners[0].base if self.listeners else base_environ("localhost", "0")
        try:
            run_app(self.app, make_environ(req, base, ("127.0.0.1", "0")), exchange)
        except ClientGone as e:
            return f"GET {path} failed: {e}"
        finally:
            req.body.close()
        if not 200 <= exchange.code < 400:
            return f"GET {path} answered {exchange.status or 'nothing'}"
        return ""

    def run(self) -> None:
        s = self.settings
        if s.accesslog:
            self.access_log = AccessLog(s.accesslog, s.access_log_format or DEFAULT_ACCESS_FORMAT)
        self.ep = ep = select.epoll()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        ep.register(self._wake_r.fileno(), EPOLLIN)
        self.handlers[self._wake_r.fileno()] = self._wake_r
        for lst in self.listeners:
            lst.sock.setblocking(False)
            self.handlers[lst.fd] = lst
        for i in range(s.threads):
            # The app runs here: nothing blocked, or its subprocesses inherit it (threads.py).
            self._threads.append(start_thread(self._thread_main, f"prefork-{i}", (i,),
                                              block_signals=False))
        with self.lock:
            self._update_accepting()
        if self.slot is not None:
            self._beat(time.monotonic())
            self.slot.set_state(READY)
        backlog = select.poll()
        for lst in self.listeners:
            backlog.register(lst.fd, select.POLLIN)
        next_sweep = time.monotonic() + SWEEP_INTERVAL
        next_backlog_check = 0.0
        stop_deadline = None
        conns, handlers = self.conns, self.handlers
        threads = s.threads
        try:
            while True:
                if self.ready:
                    self._dispatch()
                saturated = self.busy >= threads and self.phase is RUNNING
                events = ep.poll(BACKLOG_CHECK if saturated else SWEEP_INTERVAL)
                self.now = now = time.monotonic()
                for fd, _ in events:
                    obj = handlers.get(fd)
                    if obj is None:
                        obj = conns.get(fd)
                        if obj is None:
                            continue
                        try:
                            if obj.state is LINGERING:
                                self._drain(obj)
                            else:
                                self._read(obj)
                        except Exception as e:      # one connection's failure is its own
                            self._failed(obj, e)
                    elif type(obj) is Listener:
                        try:
                            self._accept(obj)
                        except Exception:
                            log.exception("unexpected error accepting connections")
                    else:
                        self._drain_wakeups()
                if self.phase is not RUNNING:
                    if self.phase is FAST_STOP:
                        break
                    if stop_deadline is None:
                        stop_deadline = now + s.graceful_timeout
                        self._begin_graceful_stop()
                    if (self.busy == 0 and not conns) or now >= stop_deadline:
                        break
                if self.accept_paused_until and now >= self.accept_paused_until:
                    self.accept_paused_until = 0.0
                    with self.lock:
                        self._update_accepting()
                if saturated and now >= next_backlog_check and not self.accept_paused_until:
                    next_backlog_check = now + BACKLOG_CHECK
                    self._take_waiting(backlog)
                if now - self._last_beat >= BEAT_INTERVAL:
                    self._beat(now)
                if now >= next_sweep:
                    next_sweep = now + SWEEP_INTERVAL
                    self._sweep(now)
        finally:
            self._shutdown()

    def _beat(self, now: float) -> None:
        """Tell the master the loop is alive, and what the threads are doing."""
        self._last_beat = now
        if self.parent_pid is not None and os.getppid() != self.parent_pid:
            log.warning("the master (pid %d) is gone; stopping", self.parent_pid)
            self.parent_pid = None
            self.stop(graceful=True)
        if self.slot is None:
            return
        in_flight, oldest, oldest_req = 0, 0.0, ""
        for item in self.current:
            if item is not None:
                in_flight += 1
                if not oldest or item[0] < oldest:
                    oldest = item[0]
                    oldest_req = f"{item[1].method} {item[1].target}"
        totals = [sum(column) for column in zip(*self.counts, strict=True)]
        # Requests that reached the application (every status class, and
        # none), and of those the 5xx (a reload's canary is judged by them).
        self.slot.beat(now, sum(totals[C_STATUS:C_METHOD]), in_flight, oldest, oldest_req,
                       totals[C_STATUS + 4], len(self.conns), totals)

    def _begin_graceful_stop(self) -> None:
        grace = time.monotonic() + STOP_GRACE
        for conn in list(self.conns.values()):
            # Idle (just accepted, or kept alive): STOP_GRACE for the request
            # that may be on its way. A request half-received keeps its own
            # deadline (within graceful_timeout); one with the pool gets its
            # grace when it is answered (_wait_for_more).
            if conn.state in (NEW, IDLE) and conn.http.idle:
                self._enter(conn, DRAINING)
                conn.deadline = min(conn.deadline, grace)
            elif conn.state is PROXY:
                conn.deadline = min(conn.deadline, grace)   # closed then if still silent
        with self.lock:
            self._update_accepting()
        for lst in self.listeners:
            # Out of the handlers first: a later descriptor with the same
            # number (a spooled body's file) must never be taken for it.
            self.handlers.pop(lst.fd, None)
            try:
                lst.sock.close()
            except OSError:
                pass
        if self.slot is not None:
            # Only now: STOPPING tells the master this worker takes no new connections.
            self.slot.set_state(STOPPING)

    def _shutdown(self) -> None:
        fast = self.phase is FAST_STOP
        if not fast:
            self._dispatch()
        for _ in self._threads:
            self.queue.put(None)
        for conn in list(self.conns.values()):
            if conn.state is not OWNED or fast:
                self._close(conn)
        deadline = time.monotonic() + (0.5 if fast else 2.0)
        for t in self._threads:
            t.join(max(deadline - time.monotonic(), 0))
        self._beat(time.monotonic())     # the last counts, for the master's totals
        if self.access_log is not None:
            self.access_log.close()
        if self.ep is not None:
            self.ep.close()

    def _drain_wakeups(self) -> None:
        try:
            while self._wake_r.recv(512):
                pass
        except OSError:
            pass

    # -- the loop's side: accept, read, dispatch ---------------------------

    def _update_accepting(self, rejoin: bool = False) -> None:
        """Listen only while a thread and a connection slot are free (and
        accepting is not paused). With ``rejoin``, a listener already in
        epoll is registered again, which moves this worker to the back of
        the listener's wait queue (see _accept). Lock held."""
        want = (self.phase is RUNNING and self.busy < self.settings.threads
                and len(self.conns) < self.settings.max_connections
                and not self.accept_paused_until)
        if want == self.accepting and not (want and rejoin):
            return
        self.accepting = want
        for lst in self.listeners:
            try:
                if want:
                    try:
                        self.ep.register(lst.fd, LISTEN_EVENTS)
                    except FileExistsError:     # rotating: leave, then rejoin at the back
                        self.ep.unregister(lst.fd)
                        self.ep.register(lst.fd, LISTEN_EVENTS)
                else:
                    self.ep.unregister(lst.fd)
            except (OSError, ValueError):
                pass

    def _accept(self, lst: Listener, limit: int = 0) -> None:
        """Accept what is waiting, up to ``limit`` connections. By default
        that is 64 for a lone worker; with several, as many as there are idle
        threads, less the new connections whose first request is still on
        its way: a burst of connections (a proxy's pool, a load test) is then
        shared out, the next arrivals waking another worker, instead of taken
        whole by the first worker awake. That matters because kept-alive
        connections stay where they were accepted."""
        s = self.settings
        if not limit:
            limit = max(1, s.threads - self.busy - self.unread) if s.multiprocess else 64
        for _ in range(limit):
            if len(self.conns) >= s.max_connections:
                break
            try:
                sock, addr = lst.sock.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as e:
                if e.errno in _OUT_OF_RESOURCES:
                    self._pause_accepting(e)
                elif e.errno not in (errno.ECONNABORTED, errno.EPROTO):
                    log.error("accept() failed: %s", e)
                break
            try:
                sock.setblocking(False)
                if lst.tcp:
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:         # reset before we got to it
                sock.close()
                continue
            self.loop_counts[C_ACCEPTED] += 1
            peer = (addr[0], str(addr[1])) if lst.tcp else ("", "")
            conn = Conn(sock, peer, lst.base, s, self.now, self.budget)
            if s.proxy_protocol != "off":
                if s.proxy_allow is None or not s.proxy_allow.trusts(peer[0]):
                    self._refuse_proxy(sock, peer)
                    continue
                conn.state = PROXY
            elif s.forwarding is not None:
                conn.trusted = s.forwarding.trusted.trusts(peer[0])
            self.conns[conn.fd] = conn
            self.unread += 1
            # The request often arrives with the connection: try it at once.
            try:
                self._read(conn)
            except Exception as e:
                self._failed(conn, e)
        with self.lock:
            # EPOLLEXCLUSIVE wakes the first idle waiter on the listener's
            # queue, so one worker would take every connection while it
            # keeps up. Re-registering moves this worker to the back of the
            # queue: idle workers take turns (gunicorn #3433).
            self._update_accepting(rejoin=s.multiprocess)

    def _pause_accepting(self, err: OSError) -> None:
        """Out of file descriptors (or kernel memory): stop accepting for
        ACCEPT_PAUSE. The waiting connections stay in the backlog, where
        another worker can take them; the connections open here go on."""
        self.accept_paused_until = self.now + ACCEPT_PAUSE
        failures = self._accept_failures
        if failures.due(self.now):
            log.error("accept() failed: %s, with %d connections open; not accepting for %.1f s "
                      "(%d such failures since the last message). Raise the open-files limit "
                      "(LimitNOFILE=) or lower max_connections.", err, len(self.conns),
                      ACCEPT_PAUSE, failures.skipped + 1)
            failures.skipped = 0

    def _refuse_proxy(self, sock: socket.socket, peer: tuple[str, str]) -> None:
        """A connection to a PROXY protocol listener from a peer outside
        proxy_allow_ips: it could claim any client address, so it is closed
        before a byte is read."""
        sock.close()
        self.loop_counts[_REJECTED["proxy"]] += 1
        if self._proxy_refusals.due(self.now):
            log.warning("refused a connection from %s: not in proxy_allow_ips, and "
                        "proxy_protocol is on (%d more since the last message)",
                        peer[0] or "a unix socket peer", self._proxy_refusals.skipped)
            self._proxy_refusals.skipped = 0

    def _proxy_header(self, conn: Conn, data: bytes) -> bytes | None:
        """``data`` read in PROXY: take the PROXY header from it. Returns the
        bytes after the header (the start of the HTTP request), or None when
        there are none yet or the connection was closed."""
        buf = conn.pending + data if conn.pending else data
        try:
            got = parse_proxy_header(buf, self.settings.proxy_protocol)
        except ProxyError as e:
            log.debug("closed a connection from %s: %s", conn.peer[0] or "a unix socket peer", e)
            self._close(conn)
            return None
        if got is None:
            conn.pending = buf      # bounded: the parser refuses a header over its limit
            self._arm(conn)
            return None
        header, used = got
        conn.pending = b""
        proxy_peer = conn.peer
        if header.source is not None:
            conn.peer = header.source
        conn.base = header.environ(conn.base, proxy_peer)
        forwarding = self.settings.forwarding
        if forwarding is not None:
            conn.trusted = forwarding.trusted.trusts(conn.peer[0])
        self._enter(conn, NEW)
        rest = buf[used:]
        if not rest:
            self._arm(conn)
            return None
        return rest

    def _take_waiting(self, backlog: select.poll) -> None:
        """Every thread is busy and the listeners are out of epoll. A
        connection found waiting in the backlog at two checks in a row was not
        taken by an idle worker: accept it (and queue its request) rather than
        let busy kept-alive clients starve it. Among several busy workers each
        takes a pool's worth, so they share them out; a lone worker takes as
        many as a wake-up does (a burst of new clients would otherwise wait
        two checks per ``threads`` of them, hundreds of ms for a few hundred).
        Lone is as configured (``workers = 1``): after TTIN, or while a reload
        overlaps, the busy worker may take more than its share, but only of
        connections no idle worker took in two checks."""
        if self.accepting:
            return
        ready = {fd for fd, _ in backlog.poll(0)}
        share = self.settings.threads if self.settings.multiprocess else 0
        for lst in self.listeners:
            if lst.fd not in ready:
                lst.backlog_seen = False
            elif not lst.backlog_seen:
                lst.backlog_seen = True
            else:
                lst.backlog_seen = False
                self._accept(lst, share)

    def _enter(self, conn: Conn, state: ConnState) -> None:
        """Every change of a connection's state goes through here."""
        old = conn.state
        if not _NEXT[old] >> state & 1:
            raise AssertionError(f"connection state {old.name} -> {state.name}")
        if old is NEW or (old is PROXY and state is not NEW):
            self.unread -= 1    # only the loop owns a NEW connection: no race
        if state is OWNED:
            conn.body_since = 0.0
        conn.state = state

    def _arm(self, conn: Conn, state: ConnState | None = None) -> None:
        """Give ``conn`` back to epoll, in ``state`` when it changes: the
        state is set before the connection can fire again."""
        if state is not None and state is not conn.state:
            self._enter(conn, state)
        try:
            if conn.registered:
                self.ep.modify(conn.fd, ARMED_EVENTS)
            else:
                conn.registered = True
                self.ep.register(conn.fd, ARMED_EVENTS)
        except (OSError, ValueError):
            self._close(conn)

    def _read(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            self._arm(conn)
            return
        except OSError:
            self._close(conn)
            return
        if not data:
            self._close(conn)
            return
        self.loop_counts[C_BYTES_IN] += len(data)
        if conn.state is PROXY:
            rest = self._proxy_header(conn, data)
            if rest is None:
                return
            data = rest
        http = conn.http
        was_idle = http.idle
        try:
            http.receive(data)      # feeds a body under way: may raise too
            req = http.next_request()
        except RequestError as e:
            self._reject(conn, e)
            return
        if req is None:
            if http.idle:
                # Only empty lines (or a lone CR): not a request, so the
                # deadline it is under stays where it was.
                self._arm(conn)
            else:
                self._wait_for_more(conn, self.now, was_idle)
            return
        self._enter(conn, OWNED)
        with self.lock:
            self.busy += 1
            if self.accepting and self.busy >= self.settings.threads:
                self._update_accepting()
        self.ready.append((conn, req))
        if len(self.ready) >= self.settings.threads:
            self._dispatch()

    def _dispatch(self) -> None:
        """Hand the requests read so far to the pool.

        The loop calls this just before epoll_wait, or as soon as it holds a
        request for every thread, rather than after each request: a woken
        thread needs the GIL, so each accept() or recv() the loop made after
        waking it would let the thread in and then wait to get the GIL back
        (the convoy effect). Batching by the pool's size keeps the threads fed
        while the loop reads on (docs/benchmarks.md has the measurement)."""
        put = self.queue.put
        for item in self.ready:
            put(item)
        self.ready.clear()

    def _wait_for_more(self, conn: Conn, now: float, new_request: bool) -> None:
        """No complete request is buffered: set the deadline for what is
        missing, answer ``Expect: 100-continue``, and give the connection back
        to epoll. Called by the loop after a read and by a pool thread after a
        response."""
        http, s = conn.http, self.settings
        state = NEW if conn.state is NEW else READING
        if http.waiting_for_body:
            if not conn.body_since:
                conn.body_since = now
            conn.deadline = now + s.body_timeout
            if s.body_min_rate:
                # Apache's MinRate: body_timeout from the start, and one more
                # second for every body_min_rate bytes received. A drip of
                # bytes that never pauses for body_timeout still ends.
                earned = conn.body_since + s.body_timeout + http.body_received / s.body_min_rate
                if earned < conn.deadline:
                    conn.deadline = earned
            if http.continue_needed:
                http.continue_needed = False
                try:
                    conn.sock.send(CONTINUE)    # 25 bytes: fits any socket buffer
                except OSError:
                    self._close(conn)
                    return
        elif http.idle:     # a request answered: kept alive
            state = IDLE
            conn.deadline = now + s.keepalive
            if self.phase is not RUNNING:
                state = DRAINING
                conn.deadline = min(conn.deadline, now + STOP_GRACE)
        elif new_request:
            conn.deadline = now + s.header_timeout
        self._arm(conn, state)

    def _failed(self, conn: Conn, exc: Exception) -> None:
        """Something unexpected failed while the loop read, parsed or spooled
        ``conn`` (a bug, an OSError from the upload directory): log it once
        with its traceback, answer 500 if the connection is still open, close
        it. Nothing else is touched."""
        # A failure that repeats (a full disk under an upload flood) gets its
        # traceback once per LOG_REPEATS_EVERY seconds, one line after.
        full = self._read_failures.due(self.now)
        log.error("error reading a request from %s; answering 500 and closing that connection%s",
                  conn.peer[0] or "a unix socket peer",
                  "" if full else f": {type(exc).__name__}: {exc} (traceback logged before)",
                  exc_info=exc if full else None)
        if conn.fd not in self.conns:
            return
        if conn.state is LINGERING:
            self._close(conn)
            return
        try:
            self._reject(conn, InternalError("the server failed to read the request"))
        except Exception:
            log.exception("error while closing a failed connection")
            self.conns.pop(conn.fd, None)
            try:
                conn.sock.close()
            except OSError:
                pass

    def _reject(self, conn: Conn, err: RequestError, counts: list[int] | None = None) -> None:
        """Answer a request that cannot be served (``err``) and close the
        connection without losing the answer: the one way the worker answers
        an error of its own, from the loop or from a pool thread.

        The loop passes no ``counts`` (it counts in its own row) and sends
        once, without waiting: the answer is short, and the loop never waits
        on one client. A pool thread passes its row and writes through the
        connection's writer, which waits out a full socket buffer (a large
        response just before) up to write_timeout."""
        log.debug("rejected request from %s: %s", conn.peer[0], err)
        row = self.loop_counts if counts is None else counts
        row[_REJECT_COLUMN.get(err.status, _REJECTED["error"])] += 1
        self._drop_request(conn)
        answer = error_response(err.status, err.reason, err.detail)
        try:
            if counts is None:
                conn.sock.send(answer)
            else:
                conn.writer.write(answer)
        except (OSError, ClientGone):
            self._close(conn)
            return
        self._linger(conn)

    @staticmethod
    def _drop_request(conn: Conn) -> None:
        """Discard a half-received request; closing its spool file cannot fail the caller."""
        try:
            conn.http.close()
        except Exception:
            log.exception("error discarding a request body")

    def _linger(self, conn: Conn) -> None:
        # Closing with unread input makes the kernel send RST, which can
        # destroy the response before the client reads it: stop writing,
        # then drain what the client still sends for a short while.
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.deadline = time.monotonic() + LINGER_SECONDS
        self._arm(conn, LINGERING)

    def _drain(self, conn: Conn) -> None:
        try:
            while conn.sock.recv(65536):
                pass
        except (BlockingIOError, InterruptedError):
            self._arm(conn)
            return
        except OSError:
            pass
        self._close(conn)

    def _close(self, conn: Conn) -> None:
        if self.conns.pop(conn.fd, None) is None:
            return
        self._enter(conn, CLOSED)
        self._drop_request(conn)
        try:
            conn.sock.close()   # also drops it from epoll
        except OSError:
            pass
        if not self.accepting:
            with self.lock:
                self._update_accepting()

    def _sweep(self, now: float) -> None:
        """Close connections past their deadline (idle, slow head, slow body);
        with the memory budget exhausted, move bodies still arriving to disk
        (a stalled body must not keep memory others need for their heads)."""
        budget = self.budget
        if budget is not None and budget.exhausted:
            for conn in list(self.conns.values()):
                if conn.state in (NEW, READING) and conn.http.waiting_for_body:
                    try:
                        conn.http.spill()
                    except Exception as e:
                        self._failed(conn, e)
        for conn in list(self.conns.values()):
            state = conn.state
            if state not in ARMED or conn.deadline > now:
                continue
            if state is DRAINING:
                # The stop's grace is over: a lingering close, so a request
                # sent at this very moment meets a FIN, not a reset.
                self._linger(conn)
            elif state is LINGERING or conn.http.idle:
                self._close(conn)
            else:
                # A head or body that did not arrive in time.
                self._reject(conn, RequestTimeout())

    # -- the pool's side: run the app, answer pipelined requests -----------

    def _thread_main(self, index: int) -> None:
        get = self.queue.get
        while True:
            item = get()
            if item is None:
                return
            conn, req = item
            try:
                self._serve(conn, req, index)
            except BaseException:
                log.exception("unexpected error serving a connection")
                self._close(conn)
            finally:
                with self.lock:
                    self.busy -= 1
                    if not self.accepting:
                        self._update_accepting()

    def _serve(self, conn: Conn, req: BufferedRequest, index: int) -> None:
        app = self.app
        http = conn.http
        current = self.current
        counts = self.counts[index]
        access_log = self.access_log
        request_ids = self.settings.request_ids
        must_close = self.stop_requested
        while True:
            head = req.head
            start = time.monotonic()
            current[index] = (start, head)
            exchange = Exchange(conn.writer, head.method, head.version,
                                head.keep_alive, must_close)
            environ = make_environ(req, conn.base, conn.peer)
            if conn.trusted:
                try:
                    self.settings.forwarding.apply(environ)  # type: ignore[union-attr]
                except RequestError as e:
                    req.body.close()
                    current[index] = None
                    self._reject(conn, e, counts)
                    return
            if request_ids is not None:
                request_ids.assign(environ, conn.trusted)
            try:
                if self.pre_request is not None:
                    self._call_hook(self.pre_request, environ)
                keep = run_app(app, environ, exchange)
                if self.post_request is not None:
                    self._call_hook(self.post_request, environ, exchange.status)
            except ClientGone as e:
                log.debug("client %s gone while writing: %s", conn.peer[0], e)
                keep = False
            finally:
                current[index] = None
                req.body.close()
            end = time.monotonic()
            if access_log is not None:
                access_log.log(environ, exchange.status, exchange.bytes_sent, exchange.headers,
                               start, end)
            code = exchange.code
            counts[C_STATUS + code // 100 - 1 if 100 <= code < 600 else C_STATUS + 5] += 1
            counts[_METHOD_COLUMN.get(head.method, _OTHER_METHOD)] += 1
            took = end - start
            counts[C_LATENCY + bisect_left(LATENCY_BOUNDS, took)] += 1
            counts[C_LATENCY_SUM_US] += int(took * 1e6)
            counts[C_BYTES_OUT] += exchange.bytes_sent
            if not keep:
                self._close(conn)
                return
            # Kept alive, even if a stop began since the head went out: the
            # client was promised the connection and may be sending its next
            # request already. It gets STOP_GRACE for it (_wait_for_more),
            # and the answer says "Connection: close".
            try:
                nxt = http.next_request()
                if nxt is None and self._await_next(conn, counts):
                    nxt = http.next_request()
            except RequestError as e:
                self._reject(conn, e, counts)
                return
            except Exception:
                log.exception("error reading a pipelined request from %s; answering 500",
                              conn.peer[0] or "a unix socket peer")
                self._reject(conn, InternalError("the server failed to read the request"), counts)
                return
            if nxt is None:
                break
            req = nxt
            conn.body_since = 0.0
        self._wait_for_more(conn, time.monotonic(), True)

    def _await_next(self, conn: Conn, counts: list[int]) -> bool:
        """When this is the worker's only connection, wait a moment for its
        next request in this thread. True when bytes arrived (already fed to
        the parser); anything else (no bytes in time, end of file, an error)
        is left for the loop to find."""
        if len(self.conns) != 1 or self.phase is not RUNNING:
            return False
        poller = select.poll()
        poller.register(conn.fd, select.POLLIN)
        if not poller.poll(NEXT_REQUEST_WAIT_MS):
            return False
        try:
            data = conn.sock.recv(65536)
        except OSError:
            return False
        if not data:
            return False
        counts[C_BYTES_IN] += len(data)
        conn.http.receive(data)
        return True

    def _call_hook(self, hook: Callable[..., Any], *args: Any) -> None:
        try:
            hook(self.hook_view, *args)
        except Exception:
            log.exception("a request hook raised; carrying on")
