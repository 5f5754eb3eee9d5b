"""USR2 under load: a new master from the same command line takes the
listening sockets over, its workers boot, the old master is TERMed and exits,
and the new one goes on serving. No request may be lost on the way.
"""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from tests.chaos.kit import ChaosLoad, chaos_server
from tests.server import HTTPReader, wait_until


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _answering_pid(host: str, port: int) -> int:
    import socket
    with socket.create_connection((host, port), timeout=5) as c:
        c.sendall(b"GET /blob?size=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = HTTPReader(c).read_response()
    assert r.status == 200, r
    return int(r.header("x-worker-pid") or 0)


@pytest.mark.timeout(60)
def test_usr2_then_term_of_the_old_master_under_load_loses_no_request(tmp_path):
    pidfile = tmp_path / "prefork.pid"
    with chaos_server("--workers", "2", "--threads", "4", "--pidfile", str(pidfile)) as s:
        old = s.proc.pid
        assert int(pidfile.read_text()) == old
        new = 0
        try:
            with ChaosLoad(s.host, s.port, threads=6) as load:
                load.wait_for_ok(100)
                s.signal(signal.SIGUSR2)
                # The new master names itself in the pidfile; its workers boot
                # and it reports ready (the old master logs the hand-over).
                new = int(wait_until(lambda: pidfile.exists() and
                                     (pid := int(pidfile.read_text() or 0)) != old and pid,
                                     timeout=20))
                s.wait_for_log(rf"Upgrade: the new master \(pid {new}\) is ready", timeout=20)
                wait_until(lambda: len(psutil.Process(new).children()) == 2, timeout=10)
                load.wait_for_ok(100)
                os.kill(old, signal.SIGTERM)
                assert s.proc.wait(20) == 0
                handed_over = time.monotonic()
                load.wait_for_ok(300)
            load.assert_clean(min_ok=500)
            assert load.stats.ok_after(handed_over) >= 300
            new_workers = {p.pid for p in psutil.Process(new).children()}
            assert len(new_workers) == 2
            assert all(_answering_pid(s.host, s.port) in new_workers for _ in range(10))
            assert int(pidfile.read_text()) == new
        finally:
            if new:
                os.kill(new, signal.SIGTERM)
                wait_until(lambda: _gone(new), timeout=20)
        assert not pidfile.exists()     # the last master removes it
