"""A worker SIGKILLed under load (the OOM killer, an operator's mistake).

Its in-flight requests are lost, nothing can save them: the test bounds them
by what could have been in flight on it and checks that nothing else is:
each client thread has at most one request outstanding, so at most
``threads`` requests fail; every kept-alive connection that fails was served
by the killed worker; no request begun after the kill fails; a replacement
boots and answers.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.chaos.kit import ChaosLoad, chaos_server
from tests.server import wait_until, workers_of

# The kernel closes a killed process's sockets once it has been scheduled to
# die: on a loaded machine a client may send on one of them a moment after
# kill() returned. Such a request was still in flight on the dead worker.
TEARDOWN_MARGIN = 0.5


@pytest.mark.timeout(60)
def test_sigkill_of_one_worker_loses_only_its_in_flight_requests():
    with chaos_server("--workers", "2", "--threads", "4") as s:
        victim, survivor = wait_until(lambda: len(w := workers_of(s)) == 2 and w)
        with ChaosLoad(s.host, s.port, threads=8) as load:
            wait_until(lambda: load.stats.pids[victim] >= 100 and load.stats.pids[survivor] >= 100,
                       timeout=20)
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            replacement = wait_until(
                lambda: len(w := workers_of(s)) == 2 and victim not in w and
                (set(w) - {survivor}).pop(), timeout=10)
            recovered = time.monotonic()
            wait_until(lambda: load.stats.pids[replacement] >= 100, timeout=20)
            load.wait_for_ok(200)
        stats, report = load.stats, load.report()
        assert len(stats.failures) <= load.threads, report
        for f in stats.failures:
            assert f.started < killed_at + TEARDOWN_MARGIN, f"begun after the kill: {report}"
            assert not f.reused or f.pid == victim, f"a connection to another worker failed: {report}"
        assert stats.ok_after(recovered) >= 200, report
        s.wait_for_log(rf"\(pid {victim}\) was killed by SIGKILL")
