"""At the open-files limit a worker stops accepting for a moment instead of
spinning on accept(): before, it burned most of a CPU and wrote hundreds of
thousands of identical log lines a second while the connections it already
had waited for the loop.
"""

from __future__ import annotations

import socket
import sys
import time

import psutil
import pytest

from tests.hostile.kit import HELLO, exchange
from tests.server import HTTPReader, ServerProcess, wait_until, workers_of

pytestmark = pytest.mark.timeout(60)

NOFILE = 48     # soft and hard: prefork cannot raise it


@pytest.mark.parametrize("workers", [1, 2])
def test_out_of_file_descriptors_pauses_accepting_and_recovers(tmp_path, workers):
    # With several workers, accepting rotates between them (a listener is
    # re-registered after each accept): the pause must still take it out.
    wrapper = ("import os, resource, sys; "
               f"resource.setrlimit(resource.RLIMIT_NOFILE, ({NOFILE}, {NOFILE})); "
               "os.execv(sys.executable, [sys.executable, '-m', 'prefork'] + sys.argv[1:])")
    srv = ServerProcess([], command=[sys.executable, "-c", wrapper, "start", "testapp:app",
                                     "--bind", "127.0.0.1:0", "--workers", str(workers),
                                     "--control-socket", str(tmp_path / "ctl")])
    held: list[socket.socket] = []
    try:
        pids = wait_until(lambda: len(workers_of(srv)) == workers and workers_of(srv))
        # One kept-alive client already being served must go on being served.
        client = srv.connect()
        reader = HTTPReader(client)
        client.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        assert reader.read_response().status == 200
        for _ in range(workers * NOFILE + 20):  # more than the workers can hold
            held.append(socket.create_connection((srv.host, srv.port), timeout=5))
        srv.wait_for_log(r"accept\(\) failed: \[Errno 24\]", timeout=10)
        procs = [psutil.Process(pid) for pid in pids]

        def cpu() -> float:
            return sum(sum(p.cpu_times()[:2]) for p in procs)

        cpu0, t0 = cpu(), time.monotonic()
        for _ in range(20):                     # the kept-alive client meanwhile
            client.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert reader.read_response().status == 200
            time.sleep(0.1)
        busy = (cpu() - cpu0) / (time.monotonic() - t0)
        assert busy < 0.3 * workers, f"the workers used {busy:.0%} of a CPU while out of fds"
        assert srv.log.count("accept() failed") <= 2 * workers, srv.log[-2000:]
        # Once the idle connections go, everything waiting is served again.
        for s in held:
            s.close()
        held.clear()
        deadline = time.monotonic() + 10
        while (r := exchange(srv, HELLO)) is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert r is not None and r.status == 200
        assert workers_of(srv) == pids
        client.close()
    finally:
        for s in held:
            s.close()
        srv.stop()
