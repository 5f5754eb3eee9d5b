"""Events that overlap, as they do in production: a second deploy while the
first is rolling out, an upgrade of an upgraded master, and reloads, scaling,
recycling and log reopening all at once, under load.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from collections import Counter

import psutil
import pytest

from tests.chaos.kit import ChaosLoad, chaos_server
from tests.server import HTTPReader, ServerProcess, wait_until, workers_of


def _version_and_pid(srv: ServerProcess) -> tuple[str, int]:
    with socket.create_connection((srv.host, srv.port), timeout=5) as c:
        c.sendall(b"GET /blob?size=10 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        r = HTTPReader(c).read_response()
    assert r.status == 200, r
    return r.header("x-app-version") or "", int(r.header("x-worker-pid") or 0)


def _all_serve(srv: ServerProcess, version: str, tries: int = 20) -> bool:
    return all(_version_and_pid(srv)[0] == version for _ in range(tries))


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.timeout(60)
def test_a_hup_sent_while_a_reload_is_under_way_is_not_lost(tmp_path):
    # Two deploys a moment apart (a CI pipeline, or a deploy and its config
    # change): the second HUP arrives while the first reload's canary is
    # still importing v2. Whatever is on disk at the last HUP must end up
    # serving; silently keeping v2 leaves stale code in production.
    version = tmp_path / "VERSION"
    version.write_text("v1")
    env = {"CHAOS_VERSION_FILE": str(version), "CHAOS_BOOT_DELAY": "2"}
    with chaos_server("--workers", "2", "--threads", "4", env=env) as s:
        assert _all_serve(s, "v1")
        with ChaosLoad(s.host, s.port, threads=4) as load:
            load.wait_for_ok(50)
            version.write_text("v2")
            s.signal(signal.SIGHUP)
            s.wait_for_log(r"reload: booting a canary worker")
            time.sleep(0.5)           # the canary has read v2 and is still importing
            version.write_text("v3")
            s.signal(signal.SIGHUP)
            deadline = time.monotonic() + 15
            while not _all_serve(s, "v3") and time.monotonic() < deadline:
                time.sleep(0.5)
            load.stop()
            served = Counter(_version_and_pid(s)[0] for _ in range(20))
            hups = [line for line in s.log.splitlines() if "HUP" in line or "reload" in line]
            assert served == {"v3": 20}, (f"15 s after the second HUP, 20 requests were "
                                          f"answered by {dict(served)}:\n" + "\n".join(hups))
        load.assert_clean(min_ok=100)


@pytest.mark.timeout(60)
def test_two_upgrades_in_a_row_under_load(tmp_path):
    # The master a USR2 started must itself be upgradable: it adopted its
    # listeners from PREFORK_FDS and has to hand them on again.
    pidfile = tmp_path / "prefork.pid"
    with chaos_server("--workers", "2", "--threads", "4", "--pidfile", str(pidfile)) as s:
        masters = [s.proc.pid]
        try:
            with ChaosLoad(s.host, s.port, threads=6) as load:
                load.wait_for_ok(100)
                for _ in range(2):
                    old = masters[-1]
                    os.kill(old, signal.SIGUSR2)
                    new = int(wait_until(lambda old=old: pidfile.exists() and
                                         (p := int(pidfile.read_text() or 0)) != old and p,
                                         timeout=20))
                    masters.append(new)
                    s.wait_for_log(rf"Upgrade: the new master \(pid {new}\) is ready", timeout=20)
                    os.kill(old, signal.SIGTERM)
                    wait_until(lambda old=old: _gone(old), timeout=20)
                    load.wait_for_ok(200)
            load.assert_clean(min_ok=500)
            last = masters[-1]
            workers = {p.pid for p in psutil.Process(last).children()}
            assert len(workers) == 2
            assert all(_version_and_pid(s)[1] in workers for _ in range(10))
        finally:
            for pid in masters[1:]:
                if not _gone(pid):
                    os.kill(pid, signal.SIGTERM)
                    wait_until(lambda pid=pid: _gone(pid), timeout=20)


@pytest.mark.timeout(60)
def test_reloads_scaling_recycling_and_log_reopening_at_once_lose_no_request(tmp_path):
    errorlog, accesslog = tmp_path / "error.log", tmp_path / "access.log"
    with chaos_server("--workers", "2", "--threads", "4", "--max-requests", "150",
                      "--max-requests-jitter", "50", "--errorlog", str(errorlog),
                      "--accesslog", str(accesslog), log_files=[errorlog]) as s:
        with ChaosLoad(s.host, s.port, threads=6) as load:
            load.wait_for_ok(100)
            # Each signal a little after the last, without waiting for it to
            # finish: they land on a reload, a recycling or a scale-up in flight.
            events = [signal.SIGHUP, signal.SIGTTIN, signal.SIGUSR1, signal.SIGHUP,
                      signal.SIGTTOU, signal.SIGHUP, signal.SIGTTIN, signal.SIGUSR1,
                      signal.SIGTTOU, signal.SIGHUP]
            for n, sig in enumerate(events):
                if sig == signal.SIGUSR1:
                    errorlog.rename(tmp_path / f"error.log.{n}")
                    accesslog.rename(tmp_path / f"access.log.{n}")
                s.signal(sig)
                time.sleep(0.7)
            # (Recycling never stops, so the process count is rarely exactly
            # 2 for long: a replacement boots while its predecessor retires.)
            changes = re.findall(r"Number of workers: \d+ -> (\d+)", s.log)
            assert changes and changes[-1] == "2", changes
            load.wait_for_ok(300)
        load.assert_clean(min_ok=1000)
        assert len(workers_of(s)) >= 2
        assert errorlog.exists() and accesslog.exists()
