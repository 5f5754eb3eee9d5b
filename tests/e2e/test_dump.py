"""``prefork dump``: every worker's stacks and requests, while they serve."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from tests.server import LoadLoop, ServerProcess, get, running, wait_until, workers_of

pytestmark = pytest.mark.timeout(60)


def ctl_of(srv: ServerProcess) -> str:
    return srv.args[srv.args.index("--control-socket") + 1]


def dump(srv: ServerProcess, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prefork", "dump", "--control-socket",
                           ctl_of(srv), *flags], capture_output=True, text=True, timeout=20)


def test_dump_shows_the_request_each_thread_serves_and_stops_nothing():
    with running("testapp:app", "--workers", "2", "--threads", "4") as srv:
        pids = wait_until(lambda: len(workers_of(srv)) == 2 and workers_of(srv))
        slow: list[int] = []
        sleeper = threading.Thread(target=lambda: slow.append(get(srv, "/sleep?s=2").status))
        sleeper.start()
        load = LoadLoop(srv, strict=True, max_seconds=20)
        try:
            wait_until(lambda: load.ok > 20)
            out = None
            for _ in range(20):   # until the sleeper's request is being served
                out = dump(srv)
                if "GET /sleep?s=2 for" in out.stdout:
                    break
            assert out is not None and out.returncode == 0, out and out.stderr
            text = out.stdout
            assert "GET /sleep?s=2 for" in text, text
            assert "time.sleep(" in text                     # its stack, down to the app
            assert "worker 1 (pid" in text and "worker 2 (pid" in text
            assert "the worker's loop" in text
            for _ in range(5):      # dumps in a row: nothing dies, nothing is lost
                assert dump(srv).returncode == 0
        finally:
            load.stop()
            sleeper.join(10)
        assert slow == [200]
        assert load.lost == [] and load.ok > 20
        assert workers_of(srv) == pids


def test_dump_json_lists_every_worker():
    with running("testapp:app", "--workers", "2", "--threads", "2") as srv:
        wait_until(lambda: len(workers_of(srv)) == 2)
        out = dump(srv, "--json")
        assert out.returncode == 0, out.stderr
        answer = json.loads(out.stdout)
        assert answer["ok"] and answer["missing"] == []
        assert sorted(w["pid"] for w in answer["workers"]) == workers_of(srv)
        for w in answer["workers"]:
            names = {t["name"] for t in w["threads"]}
            assert {"prefork-0", "prefork-1"} <= names
            assert sum(t["main"] for t in w["threads"]) == 1


def test_a_worker_that_cannot_answer_is_reported_missing():
    # A worker stopped by SIGSTOP never runs its handler: the dump says so
    # within its wait, and the stopped worker is not harmed by the signal.
    import os
    import signal
    with running("testapp:app", "--workers", "2", "--threads", "2", "--timeout", "60") as srv:
        pids = wait_until(lambda: len(workers_of(srv)) == 2 and workers_of(srv))
        os.kill(pids[0], signal.SIGSTOP)
        try:
            out = dump(srv, "--json")
        finally:
            os.kill(pids[0], signal.SIGCONT)
        assert out.returncode == 1
        answer = json.loads(out.stdout)
        assert [m["pid"] for m in answer["missing"]] == [pids[0]]
        assert [w["pid"] for w in answer["workers"]] == [pids[1]]
        assert get(srv, "/hello").status == 200
        wait_until(lambda: workers_of(srv) == pids, 5)
