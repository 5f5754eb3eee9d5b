"""Signals under load: reload (HUP), scale (TTIN/TTOU) and recycling
(max_requests), each while :class:`tests.chaos.kit.ChaosLoad` clients verify every
response. The promise tested is the one docs/reliability.md makes: none of
these loses a request, and no client that does not retry sees an error.
"""

from __future__ import annotations

import signal
import time

import pytest

from tests.chaos.kit import ChaosLoad, chaos_server
from tests.server import wait_until, workers_of


@pytest.mark.timeout(60)
def test_hup_every_two_seconds_under_load_loses_no_request():
    with chaos_server("--workers", "2", "--threads", "4") as s:
        with ChaosLoad(s.host, s.port, threads=6) as load:
            load.wait_for_ok(50)
            before = set(workers_of(s))
            for _ in range(6):
                s.signal(signal.SIGHUP)
                time.sleep(2.0)
            # The last reload finishes, and its workers serve.
            wait_until(lambda: s.log.count("reload: the canary booted") >= 5, timeout=10)
            wait_until(lambda: len(workers_of(s)) == 2, timeout=10)
            done = time.monotonic()
            load.wait_for_ok(50)
        load.assert_clean(min_ok=500)
        assert not before & set(workers_of(s)), "the first workers were never replaced"
        assert load.stats.ok_after(done) >= 50


@pytest.mark.timeout(60)
def test_ttin_and_ttou_under_load_lose_no_request():
    with chaos_server("--workers", "2", "--threads", "4") as s:
        wait_until(lambda: len(workers_of(s)) == 2)
        with ChaosLoad(s.host, s.port, threads=6) as load:
            load.wait_for_ok(50)
            # Up to 4, down to 1, back to 2: each step waited for, since Unix
            # merges a signal sent twice before it is handled.
            for sig, count in [(signal.SIGTTIN, 3), (signal.SIGTTIN, 4), (signal.SIGTTOU, 3),
                               (signal.SIGTTOU, 2), (signal.SIGTTOU, 1), (signal.SIGTTIN, 2)]:
                s.signal(sig)
                wait_until(lambda n=count: len(workers_of(s)) == n, timeout=15)
                load.wait_for_ok(100)
        load.assert_clean(min_ok=600)
        for change in ("2 -> 3", "3 -> 4", "4 -> 3", "3 -> 2", "2 -> 1", "1 -> 2"):
            assert f"Number of workers: {change}" in s.log


@pytest.mark.timeout(60)
def test_max_requests_recycles_workers_constantly_without_losing_a_request():
    with chaos_server("--workers", "2", "--threads", "4", "--max-requests", "50",
                      "--max-requests-jitter", "20") as s:
        with ChaosLoad(s.host, s.port, threads=6) as load:
            wait_until(lambda: len(load.stats.pids) >= 20, timeout=40)
            load.wait_for_ok(50)
        load.assert_clean(min_ok=500)
        assert s.log.count("(max_requests)") >= 15
        wait_until(lambda: len(workers_of(s)) == 2, timeout=10)
