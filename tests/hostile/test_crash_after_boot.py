"""A worker that booted fine and then dies is a crash, not a boot failure:
the master respawns it (later each time it keeps happening), logs the cause,
shows it in ``prefork status``, and never stops the server for it.

Before, workers dying within 5 s of their start counted towards
``max_boot_failures``: a few requests that crashed their worker were enough
to make the master stop everything.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.hostile.kit import HELLO, exchange
from tests.server import running, wait_until, workers_of

pytestmark = pytest.mark.timeout(60)


def test_requests_that_crash_workers_do_not_stop_the_server():
    with running("testapp:control", "--workers", "2", "--max-boot-failures", "2") as srv:
        for _ in range(6):
            before = workers_of(srv)
            assert exchange(srv, b"GET /exit HTTP/1.1\r\nHost: x\r\n\r\n") is None
            # The master notices, respawns, and keeps its two workers.
            wait_until(lambda b=before: len(workers_of(srv)) == 2 and workers_of(srv) != b,
                       timeout=20)
        assert srv.proc.poll() is None, srv.log
        r = exchange(srv, HELLO)
        assert r is not None and r.status == 200
        assert "failed to boot" not in srv.log
        assert "exited with status 7" in srv.log
        assert "crashed after booting" in srv.log


def test_crashes_after_boot_back_off_and_show_in_status():
    with running("testapp:control", "--workers", "1") as srv:
        ctl = srv.args[srv.args.index("--control-socket") + 1]
        for _ in range(4):
            before = workers_of(srv)
            exchange(srv, b"GET /exit HTTP/1.1\r\nHost: x\r\n\r\n")
            wait_until(lambda b=before: workers_of(srv) and workers_of(srv) != b, timeout=20)
            wait_until(lambda: exchange(srv, HELLO) is not None, timeout=20)
        # The delay grows: 0.1, 0.2, 0.4, 0.8 s.
        assert "respawning in 0.8 s" in srv.log, srv.log
        out = subprocess.run([sys.executable, "-m", "prefork", "status", "--control-socket", ctl],
                             capture_output=True, text=True, timeout=20)
        assert out.returncode == 0, out.stderr
        assert "workers crashed after booting: 4" in out.stdout
        assert "exited with status 7" in out.stdout
        raw = subprocess.run([sys.executable, "-m", "prefork", "status", "--json",
                              "--control-socket", ctl], capture_output=True, text=True, timeout=20)
        master = json.loads(raw.stdout)["master"]
        assert master["crashes"] == 4 and master["boot_failures"] == 0
