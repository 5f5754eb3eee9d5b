"""Where the microseconds of one keep-alive hello-world request go.

Times each stage of prefork's request path in isolation, in this process:
parsing, environ, the app call and response framing, the hand-off between
the loop and a pool thread, and the socket system calls. Each figure is the
median of several runs of many iterations, in microseconds per request.

    taskset -c 0 python bench/hot_path.py   # pinned, as the server is in make bench
"""

from __future__ import annotations

import socket
import statistics
import sys
import threading
import time
import timeit
from queue import SimpleQueue

from prefork.http.connection import HTTPConnection
from prefork.http.parser import Limits, find_head_end, parse_head
from prefork.http.wsgi import Exchange, base_environ, make_environ, run_app
from prefork.log import DEFAULT_ACCESS_FORMAT, compile_format

REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n")
BROWSER = (b"GET /articles/2024/?page=2 HTTP/1.1\r\nHost: example.org\r\nUser-Agent: Mozilla/5.0 "
           b"(X11; Linux x86_64) Gecko/20100101 Firefox/120.0\r\nAccept: text/html,application/"
           b"xhtml+xml\r\nAccept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n"
           b"Cookie: sessionid=abc123; csrftoken=xyz\r\nConnection: keep-alive\r\n\r\n")


def hello(environ, start_response):  # type: ignore[no-untyped-def]
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]


class NullTransport:
    def write(self, data: bytes) -> None:
        pass

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        return count


def per_call(fn, number: int = 20000, repeat: int = 7) -> float:  # type: ignore[no-untyped-def]
    return statistics.median(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def handoff_roundtrip(n: int = 20000) -> float:
    """Loop thread puts a request on the queue; a pool thread takes it and signals back."""
    q: SimpleQueue[object] = SimpleQueue()
    back: SimpleQueue[object] = SimpleQueue()

    def pool() -> None:
        while (item := q.get()) is not None:
            back.put(item)

    t = threading.Thread(target=pool, daemon=True)
    t.start()
    t0 = time.perf_counter()
    for i in range(n):
        q.put(i)
        back.get()
    elapsed = time.perf_counter() - t0
    q.put(None)
    t.join()
    return elapsed / n * 1e6 / 2   # one direction


def syscalls(n: int = 20000) -> dict[str, float]:
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    import select
    ep = select.epoll()
    ep.register(b.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
    payload = b"x" * 150
    out = {}
    t0 = time.perf_counter()
    for _ in range(n):
        a.send(payload)
        b.recv(65536)
    out["send + recv (150 B)"] = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        ep.modify(b.fileno(), select.EPOLLIN | select.EPOLLONESHOT)
    out["epoll_ctl re-arm"] = (time.perf_counter() - t0) / n * 1e6
    t0 = time.perf_counter()
    for _ in range(n):
        ep.poll(0)
    out["epoll_wait (nothing ready)"] = (time.perf_counter() - t0) / n * 1e6
    a.close()
    b.close()
    ep.close()
    return out


def main() -> int:
    limits = Limits()
    base = base_environ("127.0.0.1", "8000")
    conn = HTTPConnection(limits)

    def parse_only() -> None:
        parse_head(REQUEST[:find_head_end(REQUEST, limits)], limits)

    def parse_browser() -> None:
        parse_head(BROWSER[:find_head_end(BROWSER, limits)], limits)

    def assemble() -> None:
        conn.receive(REQUEST)
        conn.next_request()

    conn.receive(REQUEST)
    req = conn.next_request()
    assert req is not None

    def environ() -> None:
        make_environ(req, base, ("127.0.0.1", "5555"))

    transport = NullTransport()

    def app_and_framing() -> None:
        ex = Exchange(transport, "GET", "HTTP/1.1", True)
        run_app(hello, make_environ(req, base, ("127.0.0.1", "5555")), ex)

    line = compile_format(DEFAULT_ACCESS_FORMAT)
    env = make_environ(req, base, ("127.0.0.1", "5555"))
    now = time.time()

    rows = [
        ("parse head (wrk's 2-line request)", per_call(parse_only)),
        ("parse head (browser, 8 headers)", per_call(parse_browser)),
        ("HTTPConnection receive + next_request", per_call(assemble)),
        ("make_environ", per_call(environ)),
        ("environ + app + framing (run_app)", per_call(app_and_framing)),
        ("access log line (default format)", per_call(lambda: line(env, "200 OK", 13, [], 0.0001, now))),
        ("loop -> pool thread hand-off (one way)", handoff_roundtrip()),
    ]
    rows += list(syscalls().items())
    print(f"Python {sys.version.split()[0]}; microseconds per request, median of 7 runs")
    for name, us in rows:
        print(f"  {name:42} {us:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
