"""prefork/metrics.py: the exposition (parsed with prometheus_client's own
parser) and the master's small HTTP server, driven over real sockets."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from prefork import metrics
from prefork.metrics import ListenQueue, MetricsServer, MetricsView, WorkerSample, render
from prefork.scoreboard import (
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
    REJECT_REASONS,
)

pytestmark = pytest.mark.timeout(30)


def counters(**at: int) -> list[int]:
    c = [0] * N_COUNTERS
    for name, value in at.items():
        c[int(name[1:])] = value
    return c


def parsed(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample by name, then by its sorted labels."""
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def view(**kw: object) -> MetricsView:
    base: dict[str, object] = dict(workers=[], retired=[0] * N_COUNTERS,
                                   exits={"crash": 0, "max_requests": 0}, request_timeouts=0,
                                   wanted=2, generation=1, ready=True, started=1000.0)
    base.update(kw)
    return MetricsView(**base)  # type: ignore[arg-type]


def test_render_sums_live_and_exited_workers_and_parses():
    live = counters()
    live[C_STATUS + 1] = 7          # 2xx
    live[C_STATUS + 4] = 1          # 5xx
    live[C_METHOD + METHODS.index("GET")] = 6
    live[C_METHOD + METHODS.index("POST")] = 2
    live[C_LATENCY + 0] = 5         # <= 5 ms
    live[C_LATENCY + 3] = 2         # <= 50 ms
    live[C_LATENCY + len(LATENCY_BOUNDS)] = 1   # over 10 s
    live[C_LATENCY_SUM_US] = 12_500_000
    live[C_BYTES_OUT] = 1000
    live[C_BYTES_IN] = 300
    live[C_ACCEPTED] = 4
    live[C_REJECTED + REJECT_REASONS.index("too_large")] = 3
    retired = counters()
    retired[C_STATUS + 1] = 10
    retired[C_METHOD] = 10
    retired[C_LATENCY + 1] = 10
    retired[C_ACCEPTED] = 10
    w = WorkerSample(slot=3, number=9, generation=2, state="ready", in_flight=2, connections=5,
                     counters=live, rss=50_000_000)
    booting = WorkerSample(slot=4, number=10, generation=2, state="booting", in_flight=0,
                           connections=0, counters=[0] * N_COUNTERS, rss=None)
    text = render(view(workers=[w, booting], retired=retired,
                       exits={"crash": 1, "max_requests": 4}, request_timeouts=2,
                       listen_queues=[ListenQueue("http://127.0.0.1:80", 3, 128)]))
    m = parsed(text)
    assert m["prefork_requests_total"][(("status", "2xx"),)] == 17
    assert m["prefork_requests_total"][(("status", "5xx"),)] == 1
    assert m["prefork_request_methods_total"][(("method", "GET"),)] == 16
    assert m["prefork_request_methods_total"][(("method", "POST"),)] == 2
    buckets = m["prefork_request_duration_seconds_bucket"]
    assert buckets[(("le", "0.005"),)] == 5
    assert buckets[(("le", "0.01"),)] == 15
    assert buckets[(("le", "0.05"),)] == 17
    assert buckets[(("le", "10.0"),)] == 17
    assert buckets[(("le", "+Inf"),)] == 18
    assert m["prefork_request_duration_seconds_count"][()] == 18
    assert m["prefork_request_duration_seconds_sum"][()] == pytest.approx(12.5)
    assert m["prefork_requests_in_flight"][()] == 2
    assert m["prefork_connections_open"][()] == 5
    assert m["prefork_connections_accepted_total"][()] == 14
    assert m["prefork_received_bytes_total"][()] == 300
    assert m["prefork_response_body_bytes_total"][()] == 1000
    assert m["prefork_rejected_requests_total"][(("reason", "too_large"),)] == 3
    assert m["prefork_worker_exits_total"][(("cause", "max_requests"),)] == 4
    assert m["prefork_request_timeouts_total"][()] == 2
    assert m["prefork_workers"] == {(("state", "booting"),): 1, (("state", "ready"),): 1}
    assert m["prefork_worker_memory_rss_bytes"] == {(("slot", "3"),): 50_000_000}
    assert m["prefork_listen_queue"][(("listener", "http://127.0.0.1:80"),)] == 3
    assert m["prefork_listen_queue_limit"][(("listener", "http://127.0.0.1:80"),)] == 128
    assert m["prefork_ready"][()] == 1 and m["prefork_generation"][()] == 1


def test_label_values_are_escaped():
    text = render(view(listen_queues=[ListenQueue('unix:/tmp/a "b"\\c', 0, 5)]))
    m = parsed(text)
    assert m["prefork_listen_queue"] == {(("listener", 'unix:/tmp/a "b"\\c'),): 0}


def test_listen_queue_of_a_real_listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(7)
    clients = [socket.create_connection(sock.getsockname()) for _ in range(3)]
    try:
        assert metrics.listen_queue(sock) == (3, 7)
        sock.accept()[0].close()
        assert metrics.listen_queue(sock) == (2, 7)
    finally:
        for c in clients:
            c.close()
        sock.close()
    unix = socket.socket(socket.AF_UNIX)
    assert metrics.listen_queue(unix) is None
    unix.close()


@pytest.mark.parametrize("head, answer", [
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", ("GET", "/metrics")),
    (b"HEAD /readyz?verbose=1 HTTP/1.0\r\n\r\n", ("HEAD", "/readyz")),
    (b"GET /livez HTTP/1.1\n\n", ("GET", "/livez")),
    (b"GET /metrics HTTP/1.1\r\nHost: x\r\n", None),
    (b"GET", None),
])
def test_parse_head(head, answer):
    assert metrics.parse_head(head) == answer


@pytest.mark.parametrize("head, status", [
    (b"GARBAGE\r\n\r\n", b"400"),
    (b"GET metrics HTTP/1.1\r\n\r\n", b"400"),
    (b"GET /metrics SPDY/3\r\n\r\n", b"400"),
    (b"GET /m\xff HTTP/1.1\r\n\r\n", b"400"),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"431"),
    (b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 2000, b"431"),
])
def test_parse_head_refuses(head, status):
    answer = metrics.parse_head(head)
    assert isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 " + status)


# -- the server, in a thread standing in for the master's loop ----------------

class Loop:
    def __init__(self, answer=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.address = self.sock.getsockname()
        self.calls: list[str] = []
        self.server = MetricsServer(self.sock, answer or self._answer)
        self.turns = 0
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _answer(self, path):
        self.calls.append(path)
        if path == "/boom":
            raise RuntimeError("boom")
        if path == "/big":
            return 200, "text/plain", b"x" * 8_000_000
        return metrics.health(path, lambda: view(), lambda: "")

    def _run(self):
        import select
        while not self._stop.is_set():
            r, w, _ = select.select(self.server.fds(), self.server.write_fds(), [], 0.05)
            self.server.handle(r, w, time.monotonic())
            self.server.expire(time.monotonic())
            self.turns += 1

    def close(self):
        self._stop.set()
        self.thread.join(5)
        self.server.close()


@pytest.fixture
def loop() -> Iterator[Loop]:
    lp = Loop()
    yield lp
    lp.close()


def fetch(address, raw: bytes, timeout: float = 5.0) -> bytes:
    with socket.create_connection(address, timeout=timeout) as s:
        s.sendall(raw)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data


def test_routes(loop):
    assert fetch(loop.address, b"GET /livez HTTP/1.1\r\n\r\n").endswith(b"\r\n\r\nok\n")
    assert fetch(loop.address, b"GET /readyz HTTP/1.1\r\n\r\n").endswith(b"\r\n\r\nready\n")
    body = fetch(loop.address, b"GET /metrics HTTP/1.1\r\n\r\n")
    head, _, text = body.partition(b"\r\n\r\n")
    assert b"Content-Type: text/plain; version=0.0.4" in head
    assert parsed(text.decode())["prefork_ready"][()] == 1
    assert fetch(loop.address, b"GET /nope HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 404")
    assert fetch(loop.address, b"POST /metrics HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    head_only = fetch(loop.address, b"HEAD /livez HTTP/1.1\r\n\r\n")
    assert head_only.startswith(b"HTTP/1.1 200") and head_only.endswith(b"\r\n\r\n")
    assert b"Content-Length: 3\r\n" in head_only


def test_a_failing_answer_is_a_500_and_the_server_goes_on(loop):
    assert fetch(loop.address, b"GET /boom HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 500")
    assert fetch(loop.address, b"GET /livez HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_a_slow_client_does_not_hold_up_others(loop, monkeypatch):
    trickler = socket.create_connection(loop.address)
    trickler.sendall(b"GET /metr")
    try:
        for _ in range(5):
            assert fetch(loop.address, b"GET /livez HTTP/1.1\r\n\r\n",
                         timeout=1.0).startswith(b"HTTP/1.1 200")
    finally:
        trickler.close()


def test_a_client_that_never_finishes_gets_408(monkeypatch):
    monkeypatch.setattr(metrics, "CLIENT_TIMEOUT", 0.3)
    lp = Loop()
    try:
        with socket.create_connection(lp.address, timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\n")
            start = time.monotonic()
            data = s.recv(4096)
            assert data.startswith(b"HTTP/1.1 408")
            assert time.monotonic() - start < 3
        wait = time.monotonic() + 5     # the loop thread closes it on its next turn
        while lp.server.clients and time.monotonic() < wait:
            time.sleep(0.01)
        assert not lp.server.clients
    finally:
        lp.close()


def test_a_client_not_reading_its_answer_is_dropped(monkeypatch):
    monkeypatch.setattr(metrics, "CLIENT_TIMEOUT", 0.5)
    lp = Loop()
    try:
        s = socket.create_connection(lp.address, timeout=5)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b"GET /big HTTP/1.1\r\n\r\n")
        wait = time.monotonic() + 5
        while lp.server.write_fds() == [] and time.monotonic() < wait:
            time.sleep(0.01)
        assert lp.server.write_fds(), "the answer should wait for the socket"
        turns = lp.turns
        assert fetch(lp.address, b"GET /livez HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200")
        wait = time.monotonic() + 5
        while lp.server.clients and time.monotonic() < wait:
            time.sleep(0.05)
        assert not lp.server.clients
        assert lp.turns > turns
        s.close()
    finally:
        lp.close()


def test_a_big_answer_arrives_whole_to_a_reading_client(loop):
    data = fetch(loop.address, b"GET /big HTTP/1.1\r\n\r\n", timeout=10)
    assert data.endswith(b"x" * 1000) and len(data.partition(b"\r\n\r\n")[2]) == 8_000_000


def test_too_many_clients_at_once_are_closed_not_queued(loop):
    idle = [socket.create_connection(loop.address) for _ in range(metrics.MAX_CLIENTS + 5)]
    try:
        wait = time.monotonic() + 5
        while len(loop.server.clients) < metrics.MAX_CLIENTS and time.monotonic() < wait:
            time.sleep(0.02)
        assert len(loop.server.clients) == metrics.MAX_CLIENTS
        closed = 0
        for s in idle:
            s.settimeout(0.01)
            try:
                if s.recv(1) == b"":
                    closed += 1
            except (TimeoutError, BlockingIOError):
                pass
        assert closed >= 5
    finally:
        for s in idle:
            s.close()
    wait = time.monotonic() + 5
    while loop.server.clients and time.monotonic() < wait:
        time.sleep(0.02)
    assert fetch(loop.address, b"GET /livez HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 200")


def test_readyz_says_why_not():
    code, _, body = metrics.health("/readyz", lambda: view(), lambda: "stopping")
    assert code == 503 and body == b"not ready: stopping\n"


def test_docs_list_every_metric_and_only_those():
    from pathlib import Path
    doc = (Path(__file__).parent.parent / "docs" / "metrics.md").read_text()
    table = doc.split("<!-- metrics:begin -->")[1].split("<!-- metrics:end -->")[0]
    documented = set(re.findall(r"^\| `(prefork_\w+)`", table, re.M))
    text = render(view(workers=[WorkerSample(0, 1, 1, "ready", 0, 0, [0] * N_COUNTERS, 1)],
                       listen_queues=[ListenQueue("http://127.0.0.1:1", 0, 1)]))
    # The parser names a counter's family without its _total.
    rendered = {f.name + ("_total" if f.type == "counter" else "")
                for f in text_string_to_metric_families(text)}
    assert documented == rendered
