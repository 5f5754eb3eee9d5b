"""Prometheus metrics and health checks, served by the master on ``metrics_bind``.

Everything comes from the scoreboard: each worker sums its threads' counters
into its slot at every beat (scoreboard.py names them), the master adds the
counters of the workers that have exited (their slots' last state, read when
they are reaped) and its own: the supervisor's worker exits by cause and
request timeouts, the listen queues, the workers' memory. No multiprocess
directory, no lock shared with the workers, nothing written per request but
a few list items in the thread that served it.

Three paths: ``/metrics`` (the text exposition format, version 0.0.4),
``/livez`` (200 while the master's loop turns: it is the loop that answers)
and ``/readyz`` (200 once every worker of the first generation has booted
and while no stop has begun, else 503 with the reason), for a load balancer
or Kubernetes probes.

The server runs in the master's select loop and must never stall it: its
sockets never block, a client has ``CLIENT_TIMEOUT`` seconds to send its
request head (at most ``MAX_HEAD`` bytes) and read the answer, and at most
``MAX_CLIENTS`` are served at once (more are closed at once). One request
per connection.

:func:`render` and :class:`MetricsView` make no system call; the master
builds the view from its :class:`~prefork.supervisor.MasterSnapshot`
(``Master.metrics_view``), and /readyz's reason is the snapshot's
``not_ready``, the supervisor's.
"""

from __future__ import annotations

import logging
import socket
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from . import scoreboard
from ._version import __version__

log = logging.getLogger("prefork.error")

MAX_CLIENTS = 32
MAX_HEAD = 8192
CLIENT_TIMEOUT = 5.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")


@dataclass(frozen=True)
class WorkerSample:
    """One live worker as the master sees it."""

    slot: int
    number: int
    generation: int
    state: str                      # supervisor.WorkerState's value
    in_flight: int
    connections: int
    counters: Sequence[int]
    rss: int | None = None          # bytes; None when it could not be read


@dataclass(frozen=True)
class ListenQueue:
    address: str
    queued: int                     # connections waiting to be accepted
    limit: int                      # the backlog the kernel allows


@dataclass(frozen=True)
class MetricsView:
    workers: Sequence[WorkerSample]
    retired: Sequence[int]          # counters of the workers that have exited, summed
    exits: Mapping[str, int]        # supervisor.Supervisor.exits
    request_timeouts: int
    wanted: int
    generation: int
    ready: bool
    started: float                  # the master's start, Unix time
    listen_queues: Sequence[ListenQueue] = field(default_factory=tuple)


def totals(view: MetricsView) -> list[int]:
    """Every counter, summed over the live and the exited workers."""
    out = list(view.retired) if view.retired else [0] * scoreboard.N_COUNTERS
    for w in view.workers:
        for i, n in enumerate(w.counters):
            out[i] += n
    return out


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(x: float) -> str:
    if isinstance(x, int):
        return str(x)
    return repr(float(x))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            text = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{text}}} {_number(value)}")
        else:
            self.lines.append(f"{name} {_number(value)}")


def render(view: MetricsView) -> str:
    """The metrics in the Prometheus text exposition format (0.0.4)."""
    c = totals(view)
    out = _Writer()
    out.family("prefork_info", "gauge", "The running prefork's version.")
    out.sample("prefork_info", 1, version=__version__)
    out.family("prefork_start_time_seconds", "gauge", "When the master started (Unix time).")
    out.sample("prefork_start_time_seconds", round(view.started, 3))
    out.family("prefork_ready", "gauge", "1 while /readyz answers 200.")
    out.sample("prefork_ready", int(view.ready))
    out.family("prefork_generation", "gauge", "The configuration generation serving "
               "(1, then one more per accepted reload).")
    out.sample("prefork_generation", view.generation)
    out.family("prefork_workers_wanted", "gauge", "Workers the master keeps running.")
    out.sample("prefork_workers_wanted", view.wanted)
    out.family("prefork_workers", "gauge", "Live workers by state.")
    states: dict[str, int] = {}
    for w in view.workers:
        states[w.state] = states.get(w.state, 0) + 1
    for state in sorted(states):
        out.sample("prefork_workers", states[state], state=state)

    out.family("prefork_requests_total", "counter", "Requests that reached the application, by "
               "the status class of the answer (none: the client left before it).")
    for i, cls in enumerate(STATUS_CLASSES):
        out.sample("prefork_requests_total", c[scoreboard.C_STATUS + i], status=cls)
    out.family("prefork_request_methods_total", "counter", "Requests that reached the "
               "application, by method.")
    for i, method in enumerate(scoreboard.METHODS):
        out.sample("prefork_request_methods_total", c[scoreboard.C_METHOD + i], method=method)
    out.family("prefork_request_duration_seconds", "histogram", "Time from a complete request "
               "head to the last byte of its answer, in the worker.")
    cumulative = 0
    for i, bound in enumerate(scoreboard.LATENCY_BOUNDS):
        cumulative += c[scoreboard.C_LATENCY + i]
        out.sample("prefork_request_duration_seconds_bucket", cumulative, le=_number(bound))
    cumulative += c[scoreboard.C_LATENCY + len(scoreboard.LATENCY_BOUNDS)]
    out.sample("prefork_request_duration_seconds_bucket", cumulative, le="+Inf")
    out.sample("prefork_request_duration_seconds_sum", c[scoreboard.C_LATENCY_SUM_US] / 1e6)
    out.sample("prefork_request_duration_seconds_count", cumulative)
    out.family("prefork_requests_in_flight", "gauge", "Requests the application is running now.")
    out.sample("prefork_requests_in_flight", sum(w.in_flight for w in view.workers))
    out.family("prefork_rejected_requests_total", "counter", "Requests the server answered "
               "itself (or connections it refused), by reason.")
    for i, reason in enumerate(scoreboard.REJECT_REASONS):
        out.sample("prefork_rejected_requests_total", c[scoreboard.C_REJECTED + i], reason=reason)
    out.family("prefork_received_bytes_total", "counter", "Bytes read from clients.")
    out.sample("prefork_received_bytes_total", c[scoreboard.C_BYTES_IN])
    out.family("prefork_response_body_bytes_total", "counter", "Response body bytes sent.")
    out.sample("prefork_response_body_bytes_total", c[scoreboard.C_BYTES_OUT])
    out.family("prefork_connections_accepted_total", "counter", "Client connections accepted.")
    out.sample("prefork_connections_accepted_total", c[scoreboard.C_ACCEPTED])
    out.family("prefork_connections_open", "gauge", "Client connections open now.")
    out.sample("prefork_connections_open", sum(w.connections for w in view.workers))

    out.family("prefork_worker_exits_total", "counter", "Workers that exited, by cause.")
    for cause in sorted(view.exits):
        out.sample("prefork_worker_exits_total", view.exits[cause], cause=cause)
    out.family("prefork_request_timeouts_total", "counter", "Requests that ran past "
               "request_timeout (their worker was replaced).")
    out.sample("prefork_request_timeouts_total", view.request_timeouts)
    out.family("prefork_worker_memory_rss_bytes", "gauge", "Resident memory of the worker in "
               "each scoreboard slot.")
    for w in sorted(view.workers, key=lambda x: x.slot):
        if w.rss is not None:
            out.sample("prefork_worker_memory_rss_bytes", w.rss, slot=str(w.slot))
    if view.listen_queues:
        out.family("prefork_listen_queue", "gauge", "Connections waiting in a listener's "
                   "accept queue.")
        for q in view.listen_queues:
            out.sample("prefork_listen_queue", q.queued, listener=q.address)
        out.family("prefork_listen_queue_limit", "gauge", "The most a listener's accept queue "
                   "holds (its backlog).")
        for q in view.listen_queues:
            out.sample("prefork_listen_queue_limit", q.limit, listener=q.address)
    return "\n".join(out.lines) + "\n"


# struct tcp_info (linux/tcp.h): eight one-byte fields, then 32-bit ones
# (rto, ato, snd_mss, rcv_mss, unacked, sacked, ...); for a listening socket
# tcpi_unacked is the accept queue's length and tcpi_sacked its limit.
_TCP_INFO_QUEUE = struct.Struct("=8x4x4x4x4xII")


def listen_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(queued, limit) of a listening TCP socket, or None where Linux does not tell."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    except OSError:
        return None
    if len(raw) < _TCP_INFO_QUEUE.size:
        return None
    unacked, sacked = _TCP_INFO_QUEUE.unpack_from(raw)
    return unacked, sacked


# -- the HTTP side -------------------------------------------------------------

Answer = tuple[int, str, bytes]     # status, content type, body
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable"}


def respond(code: int, content_type: str, body: bytes, head_only: bool = False) -> bytes:
    head = (f"HTTP/1.1 {code} {_REASONS.get(code, 'Unknown')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode()
    return head if head_only else head + body


def _text(code: int, text: str) -> bytes:
    return respond(code, "text/plain; charset=utf-8", text.encode())


def parse_head(data: bytes) -> tuple[str, str] | bytes | None:
    """(method, path) of a complete request head in ``data``; None while it
    is incomplete; the bytes of an error answer when it is malformed."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    if end < 0:
        return _text(431, "request head too large\n") if len(data) > MAX_HEAD else None
    if end > MAX_HEAD:
        return _text(431, "request head too large\n")
    line = data[:data.find(b"\n")].rstrip(b"\r")
    parts = line.split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1.") or not parts[1].startswith(b"/"):
        return _text(400, "bad request line\n")
    try:
        method, target = parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return _text(400, "bad request line\n")
    return method, target.split("?", 1)[0]


class _Client:
    __slots__ = ("sock", "deadline", "data", "out")

    def __init__(self, sock: socket.socket, now: float):
        self.sock = sock
        self.deadline = now + CLIENT_TIMEOUT
        self.data = b""
        self.out = b""              # the answer, while it does not fit the socket buffer


class MetricsServer:
    """The master's end: wait on ``fds()`` for reading and ``write_fds()``
    for writing, then call ``handle(readable, writable, now)``; ``expire(now)``
    on every turn of the loop. ``answer(path)`` makes the answer to a GET."""

    def __init__(self, sock: socket.socket, answer: Callable[[str], Answer]):
        self.sock = sock
        sock.setblocking(False)
        self.answer = answer
        self.clients: dict[int, _Client] = {}

    def fds(self) -> list[int]:
        return [self.sock.fileno(), *(fd for fd, c in self.clients.items() if not c.out)]

    def write_fds(self) -> list[int]:
        return [fd for fd, c in self.clients.items() if c.out]

    def handle(self, readable: Sequence[int], writable: Sequence[int], now: float) -> None:
        if self.sock.fileno() in readable:
            self._accept(now)
        for fd in readable:
            client = self.clients.get(fd)
            if client is not None and not client.out:
                self._read(client)
        for fd in writable:
            client = self.clients.get(fd)
            if client is not None and client.out:
                self._send(client, client.out)

    def expire(self, now: float) -> None:
        for client in [c for c in self.clients.values() if now >= c.deadline]:
            if client.out:
                self._close(client)     # not reading its answer: give up on it
            else:
                self._send(client, _text(408, "no complete request in time\n"))

    def _accept(self, now: float) -> None:
        for _ in range(MAX_CLIENTS):
            try:
                sock, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                log.warning("metrics: accept() failed: %s", e)
                return
            if len(self.clients) >= MAX_CLIENTS:
                sock.close()        # too many at once: a probe retries
                continue
            sock.setblocking(False)
            client = _Client(sock, now)
            self.clients[sock.fileno()] = client
            self._read(client)

    def _read(self, client: _Client) -> None:
        try:
            chunk = client.sock.recv(MAX_HEAD + 1)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client)
            return
        if not chunk:
            self._close(client)
            return
        client.data += chunk
        parsed = parse_head(client.data)
        if parsed is None:
            return
        if isinstance(parsed, bytes):
            self._send(client, parsed)
            return
        method, path = parsed
        if method not in ("GET", "HEAD"):
            self._send(client, _text(405, "only GET and HEAD\n"))
            return
        try:
            code, ctype, body = self.answer(path)
        except Exception:
            log.exception("metrics: answering %s failed", path)
            code, ctype, body = 500, "text/plain; charset=utf-8", b"internal error\n"
        self._send(client, respond(code, ctype, body, head_only=method == "HEAD"))

    def _send(self, client: _Client, data: bytes) -> None:
        try:
            sent = client.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._close(client)
            return
        client.out = data[sent:]
        if not client.out:
            self._close(client)

    def _close(self, client: _Client) -> None:
        self.clients.pop(client.sock.fileno(), None)
        try:
            client.sock.shutdown(socket.SHUT_WR)
            while client.sock.recv(4096):     # what it sent after its head: no RST
                pass
        except OSError:
            pass
        client.sock.close()

    def socks(self) -> list[socket.socket]:
        """Every socket it holds (a forked worker closes them)."""
        return [self.sock, *(c.sock for c in self.clients.values())]

    def close(self) -> None:
        for client in list(self.clients.values()):
            client.sock.close()
        self.clients.clear()
        self.sock.close()


def health(path: str, view: Callable[[], MetricsView], not_ready: Callable[[], str]) -> Answer:
    """The answer to GET ``path``: /metrics, /livez, /readyz, else 404."""
    if path == "/metrics":
        started = time.perf_counter()
        body = render(view())
        log.debug("metrics rendered in %.1f ms", (time.perf_counter() - started) * 1e3)
        return 200, CONTENT_TYPE, body.encode()
    if path == "/livez":
        return 200, "text/plain; charset=utf-8", b"ok\n"
    if path == "/readyz":
        why = not_ready()
        if why:
            return 503, "text/plain; charset=utf-8", f"not ready: {why}\n".encode()
        return 200, "text/plain; charset=utf-8", b"ready\n"
    return 404, "text/plain; charset=utf-8", b"not found: /metrics, /livez, /readyz\n"
