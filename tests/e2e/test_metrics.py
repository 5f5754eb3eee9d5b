"""metrics_bind against a real server: /metrics counts what clients saw,
/readyz flips at the right moments under load, the socket outlives a
worker's recycling and the master's upgrade."""

from __future__ import annotations

import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.server import (
    ROOT,
    HTTPReader,
    LoadLoop,
    ServerProcess,
    get,
    request,
    running,
    wait_until,
)

pytestmark = pytest.mark.timeout(90)

METRICS_RE = r"Metrics and health checks at: http://127\.0\.0\.1:(\d+)"
METRICS = ("--metrics-bind", "127.0.0.1:0")


def metrics_port(srv: ServerProcess) -> int:
    return int(srv.wait_for_log(METRICS_RE).group(1))


def fetch(port: int | str, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """GET ``path`` from the metrics address (a port, or a unix socket path)."""
    if isinstance(port, str):
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        sock.connect(port)
    else:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\n\r\n".encode())
        r = HTTPReader(sock).read_response()
    return r.status, r.body


def samples(port: int | str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    status, body = fetch(port, "/metrics")
    assert status == 200
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def by(m, name: str, **labels: str) -> float:
    return m[name].get(tuple(sorted(labels.items())), 0.0)


def test_metrics_count_what_the_clients_saw():
    with running("testapp:app", "--workers", "2", *METRICS) as srv:
        port = metrics_port(srv)
        for _ in range(5):
            assert get(srv, "/hello").status == 200
        for _ in range(2):
            r = request(srv, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n"
                             b"Connection: close\r\n\r\nabc", "POST")
            assert r.status == 200
        assert get(srv, "/status/404").status == 404
        assert get(srv, "/error").status == 500
        assert get(srv, "/sleep?s=0.3").status == 200
        assert request(srv, b"GARBAGE\r\n\r\n").status == 400
        assert request(srv, b"GET /hello HTTP/1.1\r\nHost: t\r\nX: " + b"a" * 70000
                       + b"\r\n\r\n").status == 431

        def settled():
            m = samples(port)
            return m if (by(m, "prefork_requests_total", status="2xx") == 8
                         and by(m, "prefork_rejected_requests_total", reason="too_large")) else None
        m = wait_until(settled, timeout=5)
        assert by(m, "prefork_requests_total", status="4xx") == 1
        assert by(m, "prefork_requests_total", status="5xx") == 1
        assert by(m, "prefork_request_methods_total", method="GET") == 8
        assert by(m, "prefork_request_methods_total", method="POST") == 2
        assert by(m, "prefork_rejected_requests_total", reason="bad_request") == 1
        assert by(m, "prefork_rejected_requests_total", reason="too_large") == 1
        assert by(m, "prefork_request_duration_seconds_count") == 10
        # The 0.3 s sleep is the only request slower than 0.25 s.
        assert by(m, "prefork_request_duration_seconds_bucket", le="0.25") == 9
        assert by(m, "prefork_request_duration_seconds_bucket", le="0.5") == 10
        assert by(m, "prefork_request_duration_seconds_sum") >= 0.3
        assert by(m, "prefork_connections_accepted_total") == 12
        assert by(m, "prefork_received_bytes_total") > 70000
        assert by(m, "prefork_response_body_bytes_total") >= 5 * len(b"Hello, World!")
        assert by(m, "prefork_workers", state="ready") == 2
        assert by(m, "prefork_ready") == 1
        rss = m["prefork_worker_memory_rss_bytes"]
        assert len(rss) == 2 and all(v > 1_000_000 for v in rss.values())
        queue = m["prefork_listen_queue_limit"]
        assert list(queue.values()) == [2048]
        # Open and in flight, seen from outside: two idle kept-alive
        # connections and a request the app is running.
        idle = [srv.connect() for _ in range(2)]
        slow = srv.connect()
        slow.sendall(b"GET /sleep?s=2 HTTP/1.1\r\nHost: t\r\n\r\n")
        try:
            m = wait_until(lambda: (lambda m: m if by(m, "prefork_requests_in_flight") == 1
                                    and by(m, "prefork_connections_open") == 3 else None)(
                samples(port)), timeout=5)
            assert m
            assert HTTPReader(slow).read_response().status == 200
        finally:
            for s in idle + [slow]:
                s.close()


def test_counters_never_go_down_when_workers_are_recycled():
    with running("testapp:app", "--max-requests", "5", "--max-requests-jitter", "0",
                 *METRICS) as srv:
        port = metrics_port(srv)
        seen = []
        for i in range(30):
            assert get(srv, "/hello").status == 200
            time.sleep(0.1)     # time for the master to see the count and recycle
            if i % 3 == 0:
                seen.append(by(samples(port), "prefork_requests_total", status="2xx"))
        m = wait_until(lambda: (lambda m: m if by(m, "prefork_requests_total", status="2xx")
                                == 30 else None)(samples(port)), timeout=10)
        seen.append(by(m, "prefork_requests_total", status="2xx"))
        assert seen == sorted(seen), seen
        m = wait_until(lambda: (lambda m: m if by(m, "prefork_worker_exits_total",
                                                   cause="max_requests") >= 3 else None)(
            samples(port)), timeout=20)
        assert by(m, "prefork_requests_total", status="2xx") == 30
        assert by(m, "prefork_worker_exits_total", cause="crash") == 0


class Prober(threading.Thread):
    """Polls /readyz every 50 ms and keeps what it saw, with the time."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.seen: list[tuple[float, int | str]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                status, _ = fetch(self.port, "/readyz", timeout=2)
            except (OSError, EOFError) as e:
                status = type(e).__name__
            self.seen.append((time.monotonic(), status))
            time.sleep(0.05)

    def stop(self) -> list[int | str]:
        self.done.set()
        self.join(5)
        return [s for _, s in self.seen]


def test_readyz_is_ready_only_between_boot_and_stop_and_holds_through_a_reload():
    srv = ServerProcess(["start", "slowboot:app", "--bind", "127.0.0.1:0", "--workers", "2",
                         "--control-socket", "", *METRICS], wait_ready=False)
    try:
        port = metrics_port(srv)
        status, body = fetch(port, "/readyz")
        assert (status, body) == (503, b"not ready: workers are booting\n")
        assert fetch(port, "/livez") == (200, b"ok\n")
        srv.wait_for_log(r"Ready: 2 workers serving", timeout=20)
        assert fetch(port, "/readyz") == (200, b"ready\n")

        # A reload under load: the old workers serve until the new ones are
        # ready, so the server never stops being ready.
        probe = Prober(port)
        probe.start()
        load = LoadLoop(srv, "/", threads=4, strict=True)
        try:
            time.sleep(0.3)
            srv.signal(signal.SIGHUP)
            srv.wait_for_log(r"reload: the canary booted", timeout=30)
            wait_until(lambda: len(psutil.Process(srv.proc.pid).children()) == 2, timeout=30)
            time.sleep(0.3)
        finally:
            load.stop()
            seen = probe.stop()
        assert load.lost == [] and load.ok > 50
        assert set(seen) == {200}, seen

        # A graceful stop: not ready at once, while the request in flight finishes.
        slow = srv.connect(10)
        slow.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
        assert HTTPReader(slow).read_response().status == 200
        probe = Prober(port)
        probe.start()
        wait_until(lambda: probe.seen, timeout=5)
        srv.signal(signal.SIGTERM)
        start = time.monotonic()
        wait_until(lambda: probe.seen[-1][1] == 503, timeout=2)
        assert time.monotonic() - start < 1.0
        assert fetch(port, "/readyz") == (503, b"not ready: stopping\n")
        assert srv.proc.wait(20) == 0
        seen = probe.stop()
        first_503 = seen.index(503)
        assert set(seen[:first_503]) == {200}
        assert all(s in (503, "ConnectionRefusedError") for s in seen[first_503:]), seen
    finally:
        srv.stop()


def test_a_slow_metrics_client_does_not_stall_supervision():
    with running("testapp:app", *METRICS) as srv:
        port = metrics_port(srv)
        tricklers = []
        for _ in range(40):          # more than MAX_CLIENTS, each sending half a head
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /metr")
            tricklers.append(s)
        try:
            # The master still reaps and respawns: kill the worker.
            (worker,) = psutil.Process(srv.proc.pid).children()
            os.kill(worker.pid, signal.SIGKILL)
            wait_until(lambda: [c.pid for c in psutil.Process(srv.proc.pid).children()
                                if c.pid != worker.pid], timeout=5)
            wait_until(lambda: get(srv, "/hello").status == 200, timeout=5)
            # And a probe gets through once the tricklers have been dropped.
            wait_until(lambda: _try(port) == 200, timeout=10)
        finally:
            for s in tricklers:
                s.close()


def _try(port: int) -> int | None:
    try:
        return fetch(port, "/livez", timeout=1)[0]
    except (OSError, EOFError):     # refused, or closed: too many clients at once
        return None


def test_the_metrics_socket_is_handed_over_by_usr2(tmp_path):
    with running("testapp:app", "--workers", "1", *METRICS) as srv:
        port = metrics_port(srv)
        first = samples(port)["prefork_start_time_seconds"][()]
        failures: list[str] = []
        stop = threading.Event()

        def probe():
            while not stop.is_set():
                try:
                    fetch(port, "/livez", timeout=2)
                except OSError as e:
                    failures.append(f"{type(e).__name__}: {e}")
                time.sleep(0.02)
        t = threading.Thread(target=probe, daemon=True)
        t.start()
        new_master = None
        try:
            srv.signal(signal.SIGUSR2)
            new_master = int(srv.wait_for_log(r"Upgrade: started a new master \(pid (\d+)\)")
                             .group(1))
            assert srv.proc.wait(30) == 0
            wait_until(lambda: samples(port)["prefork_start_time_seconds"][()] != first,
                       timeout=10)
            m = samples(port)
            assert by(m, "prefork_ready") == 1
            time.sleep(0.3)
        finally:
            stop.set()
            t.join(5)
            if new_master is not None:
                try:
                    os.kill(new_master, signal.SIGTERM)
                    wait_until(lambda: not psutil.pid_exists(new_master)
                               or psutil.Process(new_master).status() == psutil.STATUS_ZOMBIE,
                               timeout=15)
                except ProcessLookupError:
                    pass
        assert failures == []


def test_metrics_on_a_unix_socket(tmp_path):
    path = str(tmp_path / "metrics.sock")
    with running("testapp:app", "--metrics-bind", f"unix:{path}") as srv:
        srv.wait_for_log(re.escape(f"Metrics and health checks at: unix:{path}"))
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert fetch(path, "/livez") == (200, b"ok\n")
        assert "prefork_listen_queue" in samples(path)
    assert not os.path.exists(path)


@pytest.mark.parametrize("value, message", [
    ("nonsense", "invalid value for setting 'metrics_bind'"),
    ("fd://3", "an inherited descriptor cannot be used here"),
])
def test_a_bad_metrics_bind_stops_start_up_with_one_line(value, message):
    out = subprocess.run([sys.executable, "-m", "prefork", "check", "testapp:app",
                          "--metrics-bind", value], capture_output=True, text=True, timeout=30,
                         cwd=ROOT, env=dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT}/tests/apps"))
    assert out.returncode != 0
    assert message in out.stderr, out.stderr


def test_a_metrics_port_in_use_is_a_clear_start_up_error():
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        srv = ServerProcess(["start", "testapp:app", "--bind", "127.0.0.1:0",
                             "--control-socket", "", "--metrics-bind", f"127.0.0.1:{port}"],
                            wait_ready=False)
        try:
            assert srv.proc.wait(20) == 1
            assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in srv.log
        finally:
            srv.stop()
    finally:
        taken.close()
