"""A reload's canary must serve before the old workers leave, and a deploy that
cannot serve is rolled back: the old generation goes on, nothing crash-loops.

Each test serves tests/apps/versioned.py, whose VERSION file decides how the
next deploy behaves, and sends HUP under a client load.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.server import LoadLoop, ServerProcess, get, running, wait_until, workers_of

pytestmark = pytest.mark.timeout(90)


def versions(load: LoadLoop) -> set[str]:
    return {b.split()[0].decode() for b in load.bodies}


@contextmanager
def deployed(tmp_path: Path, *args: str) -> Iterator[tuple[ServerProcess, Path, list[int]]]:
    """v1 of versioned:app on 2 workers: the server, its VERSION file, its workers."""
    version = tmp_path / "VERSION"
    version.write_text("v1")
    with running("versioned:app", "--workers", "2", *args,
                 env={"VERSION_FILE": str(version)}) as s:
        yield s, version, wait_until(lambda: len(workers_of(s)) == 2 and workers_of(s))


def test_a_deploy_that_answers_500_to_everything_is_rolled_back(tmp_path):
    with deployed(tmp_path, "--canary-probation", "3") as (s, version, before):
        load = LoadLoop(s, "/", threads=4)
        try:
            version.write_text("fails-2")
            s.signal(signal.SIGHUP)
            s.wait_for_log(r"reload failed: the canary answered \d+ of \d+ requests with a 5xx",
                           timeout=20)
            time.sleep(0.5)
            after = LoadLoop(s, "/", threads=2)
            time.sleep(1.0)
            after.stop()
        finally:
            load.stop()
        assert workers_of(s) == before          # the old generation, whole
        assert after.lost == [] and versions(after) == {"v1"}
        assert "replacing the generation 1 workers" not in s.log
        # The failed canary's 500s are the only failures the clients saw.
        assert all(x.startswith("status 500") for x in load.lost), load.lost[:5]
        assert 0 < len(load.lost) < load.ok


def test_a_deploy_that_kills_its_worker_on_every_request_is_rolled_back(tmp_path):
    with deployed(tmp_path, "--canary-probation", "3") as (s, version, before):
        load = LoadLoop(s, "/", threads=4)
        try:
            version.write_text("crashes-2")
            s.signal(signal.SIGHUP)
            s.wait_for_log(r"reload failed: the new worker exited with status 1", timeout=20)
            time.sleep(3)       # no second canary, no respawned crasher
        finally:
            load.stop()
        assert workers_of(s) == before
        assert len(re.findall(r"Booting worker", s.log)) == 3      # 2 + one canary, no loop
        assert "stopping" not in s.log.lower().replace("worker stopped", "")
        for _ in range(10):
            assert get(s, "/").body.startswith(b"v1")


def test_ready_path_keeps_a_deploy_that_fails_it_from_ever_taking_a_request(tmp_path):
    with deployed(tmp_path, "--ready-path", "/healthz") as (s, version, before):
        load = LoadLoop(s, "/", threads=4, strict=True)
        try:
            version.write_text("unhealthy-2")
            s.signal(signal.SIGHUP)
            s.wait_for_log(r"reload failed: the new worker exited with status 3: "
                           r"GET /healthz answered 503", timeout=20)
        finally:
            load.stop()
        assert load.lost == [] and versions(load) == {"v1"}, load.lost[:5]
        assert workers_of(s) == before
        # A healthy deploy goes through the same check.
        version.write_text("v3")
        s.signal(signal.SIGHUP)
        wait_until(lambda: all(get(s, "/").body.startswith(b"v3") for _ in range(6)), timeout=20)


def test_a_reload_asked_for_while_the_canary_is_on_probation_is_not_lost(tmp_path):
    with deployed(tmp_path, "--canary-probation", "2") as (s, version, _):
        load = LoadLoop(s, "/", threads=4, strict=True)
        try:
            version.write_text("v2")
            s.signal(signal.SIGHUP)
            s.wait_for_log(r"on probation", timeout=20)
            version.write_text("v3")
            s.signal(signal.SIGHUP)
            s.wait_for_log(r"this one starts when it ends")
            wait_until(lambda: all(get(s, "/").body.startswith(b"v3") for _ in range(6)),
                       timeout=30)
            wait_until(lambda: len(workers_of(s)) == 2, timeout=15)
        finally:
            load.stop()
        assert load.lost == [], load.lost[:5]
        assert versions(load) <= {"v1", "v2", "v3"} and "v3" in versions(load)
