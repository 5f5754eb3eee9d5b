"""fork() failing (EAGAIN at a process limit) never kills the master: the
workers it has go on serving and it tries again.

The limit is real: the server runs in a cgroup-v1 ``pids`` group of its own
whose ``pids.max`` the test lowers to what is running (root only; skipped
with the reason elsewhere).
"""

from __future__ import annotations

import os
import signal
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.server import ServerProcess, get, wait_until, workers_of

pytestmark = pytest.mark.timeout(60)

PIDS = Path("/sys/fs/cgroup/pids")


@pytest.fixture
def pids_cgroup():
    if os.geteuid() != 0 or not PIDS.is_dir():
        pytest.skip("needs root and the cgroup-v1 pids controller at /sys/fs/cgroup/pids")
    group = PIDS / f"prefork-test-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
    except OSError as e:
        pytest.skip(f"cannot create a pids cgroup: {e}")
    try:
        yield group
    finally:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                group.rmdir()
                break
            except OSError:
                time.sleep(0.1)


def start_in(group: Path, tmp_path: Path, *args: str) -> ServerProcess:
    wrapper = ("import os, sys; "
               f"open({str(group / 'cgroup.procs')!r}, 'w').write(str(os.getpid())); "
               "os.execv(sys.executable, [sys.executable, '-m', 'prefork'] + sys.argv[1:])")
    return ServerProcess([], command=[sys.executable, "-c", wrapper, "start", "testapp:app",
                                      "--bind", "127.0.0.1:0", "--workers", "1", "--threads", "2",
                                      "--control-socket", str(tmp_path / "ctl"), *args])


def test_fork_failing_keeps_the_master_and_its_workers(pids_cgroup, tmp_path):
    srv = start_in(pids_cgroup, tmp_path)
    try:
        (first,) = workers_of(srv)
        current = int((pids_cgroup / "pids.current").read_text())
        (pids_cgroup / "pids.max").write_text(str(current))
        srv.signal(signal.SIGTTIN)                      # one more worker: fork() fails
        srv.wait_for_log(r"cannot fork a worker: \[Errno 11\]", timeout=10)
        time.sleep(1.5)                                 # a retry or two, failing too
        assert srv.proc.poll() is None, srv.log[-3000:]
        assert workers_of(srv) == [first]
        assert get(srv, "/hello").status == 200
        (pids_cgroup / "pids.max").write_text("max")
        wait_until(lambda: len(workers_of(srv)) == 2, timeout=10)
        assert get(srv, "/hello").status == 200
    finally:
        srv.stop()


def test_a_request_timeout_whose_replacement_cannot_start_is_reported_once(pids_cgroup, tmp_path):
    srv = start_in(pids_cgroup, tmp_path, "--request-timeout", "1", "--graceful-timeout", "2")
    try:
        (first,) = workers_of(srv)
        (pids_cgroup / "pids.max").write_text((pids_cgroup / "pids.current").read_text())
        with srv.connect() as c:
            c.sendall(b"GET /sleep?s=4 HTTP/1.1\r\nHost: x\r\n\r\n")
            srv.wait_for_log(r"cannot fork a worker", timeout=10)
            time.sleep(1.5)
            # Before, the stacks were dumped and the line logged every 0.25 s
            # for as long as the replacement could not start.
            assert srv.log.count("has run for") == 1, srv.log[-3000:]
            (pids_cgroup / "pids.max").write_text("max")
            wait_until(lambda: (w := workers_of(srv)) and first not in w, timeout=15)
        assert get(srv, "/hello").status == 200
    finally:
        srv.stop()
