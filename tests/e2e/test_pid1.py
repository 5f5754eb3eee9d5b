"""prefork as PID 1 of a container with no init: a real new PID namespace.

Each test starts ``unshare --pid --fork --mount-proc --kill-child python -m
prefork start ...``: the master is PID 1 of the new namespace, as in a
container whose entrypoint is prefork. The network is the host's, so the
test talks to 127.0.0.1 as usual. Signals are sent from outside the
namespace, to the master's host pid, as ``docker stop`` and the kubelet do
(``unshare`` itself ignores TERM and INT). Needs root; skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil
import pytest

from tests.server import ROOT, HTTPReader, ServerProcess, get, wait_until

pytestmark = pytest.mark.timeout(60)

UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]


def _why_no_namespace() -> str | None:
    if os.geteuid() != 0:
        return "a new PID namespace needs root (unshare --pid)"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    try:
        r = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unshare --pid cannot run here: {e}"
    if r.returncode != 0:
        return f"unshare --pid fails here: {r.stderr.decode(errors='replace').strip()}"
    return None


_WHY = _why_no_namespace()
if _WHY:
    pytestmark = [pytestmark, pytest.mark.skip(reason=_WHY)]   # type: ignore[list-item]


class Pid1Server:
    """A prefork whose master is PID 1 of its own PID namespace."""

    def __init__(self, srv: ServerProcess):
        self.srv = srv
        kids = wait_until(lambda: psutil.Process(srv.proc.pid).children(), 10)
        assert isinstance(kids, list) and len(kids) == 1, kids
        self.master = kids[0].pid           # its pid outside the namespace

    def signal(self, sig: int) -> None:
        os.kill(self.master, sig)

    def children(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.master).children()
        except psutil.NoSuchProcess:
            return []

    def workers(self) -> list[int]:
        return sorted(p.pid for p in self.children() if _status(p) not in ("zombie", "")
                      and _name(p) != "sleep")

    def orphans(self) -> list[psutil.Process]:
        """The master's children that are not workers: what it was handed."""
        return [p for p in self.children() if _name(p) == "sleep"]

    def zombies(self) -> list[int]:
        return [p.pid for p in self.children() if _status(p) == "zombie"]

    def namespace_zombies(self) -> list[str]:
        """Every zombie in the master's PID namespace, from /proc: "pid (name) ppid"."""
        ns = os.readlink(f"/proc/{self.master}/ns/pid")
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                if os.readlink(f"/proc/{entry}/ns/pid") != ns:
                    continue
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue        # gone meanwhile
            if fields.get("State", "").split()[:1] == ["Z"]:
                found.append(f"{entry} ({fields['Name'].strip()}) ppid {fields['PPid'].strip()}")
        return found

    def wait_exit(self, timeout: float) -> int:
        return self.srv.proc.wait(timeout)


def _status(p: psutil.Process) -> str:
    try:
        return str(p.status())
    except psutil.NoSuchProcess:
        return ""


def _name(p: psutil.Process) -> str:
    try:
        return p.name()
    except psutil.Error:
        return ""


def _nspids(pid: int) -> list[int]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no NSpid line for pid {pid}")


@contextmanager
def pid1(*args: str, wait_ready: bool = True, tmp: str = "") -> Iterator[Pid1Server]:
    command = [*UNSHARE, sys.executable, "-m", "prefork", "start", *args,
               "--bind", "127.0.0.1:0", "--workers", "1",
               "--control-socket", os.path.join(tmp, "ctl")]
    srv = ServerProcess([], command=command, wait_ready=wait_ready)
    server = None
    try:
        server = Pid1Server(srv)
        yield server
    finally:
        if server is not None and srv.proc.poll() is None:
            # KILL to the namespace's init ends everything in it.
            try:
                os.kill(server.master, signal.SIGKILL)
            except ProcessLookupError:
                pass
        srv.stop()


def test_the_master_is_pid_1_serves_and_reaps_the_orphans_a_view_leaves(tmp_path):
    with pid1("orphanapp:app", "--loglevel", "debug", tmp=str(tmp_path)) as s:
        assert _nspids(s.master)[-1] == 1, "the master is not PID 1 of the new namespace"
        r = get(s.srv, "/pid")
        assert r.status == 200, r
        assert json.loads(r.body)["ppid"] == 1
        workers = s.workers()
        assert len(workers) == 1, workers

        # One long-lived orphan: re-parented to the master, not reaped early.
        r = get(s.srv, "/orphan?s=3")
        assert r.status == 200, r
        orphan_ns_pid = json.loads(r.body)["orphan"]
        orphans = s.orphans()
        assert [_nspids(p.pid)[-1] for p in orphans] == [orphan_ns_pid], (
            "the double-forked sleep was not re-parented to the master")

        # Many short ones: every one is reaped, none is taken for a worker.
        for _ in range(20):
            r = get(s.srv, "/orphan?s=0.1")
            assert r.status == 200, r
        wait_until(lambda: not s.orphans() and not s.zombies(), timeout=10)
        assert s.namespace_zombies() == []
        assert s.workers() == workers, "an orphan's exit changed the workers"
        assert get(s.srv, "/pid").status == 200
        s.srv.wait_for_log(r"reaped pid \d+, not a worker: exit status 0")
        assert s.srv.log.count("not a worker") >= 21, s.srv.log
        for bad in ("Traceback", "worker exited", "Worker exited", "unexpected"):
            assert bad not in s.srv.log, s.srv.log
        s.signal(signal.SIGTERM)
        assert s.wait_exit(10) == 0, s.srv.log


def test_term_to_pid_1_is_a_graceful_stop_within_graceful_timeout(tmp_path):
    with pid1("orphanapp:app", "--graceful-timeout", "6", tmp=str(tmp_path)) as s:
        assert get(s.srv, "/orphan?s=30").status == 200
        [adopted] = s.orphans()
        with s.srv.connect(timeout=10) as sock:
            sock.sendall(b"GET /sleep?s=2 HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.5)     # the request is in the app
            t0 = time.monotonic()
            s.signal(signal.SIGTERM)
            time.sleep(0.5)
            # The stop is the master's and its workers': nothing is passed on
            # to the processes it adopted (same process group as the workers).
            assert adopted.is_running() and _status(adopted) != "zombie", (
                "the master passed TERM on to a process it adopted")
            r = HTTPReader(sock).read_response()
        assert r.status == 200 and r.body == b"slept", r
        assert s.wait_exit(10) == 0, s.srv.log
        elapsed = time.monotonic() - t0
        assert elapsed < 6, f"TERM took {elapsed:.1f} s, past graceful_timeout"
        assert "Shutting down: master 1" in s.srv.log, s.srv.log
        # PID 1 is gone: the kernel ended what was left in the namespace.
        wait_until(lambda: not adopted.is_running(), timeout=5)


def test_int_to_pid_1_is_a_fast_stop(tmp_path):
    with pid1("orphanapp:app", "--graceful-timeout", "30", tmp=str(tmp_path)) as s:
        with s.srv.connect(timeout=10) as sock:
            sock.sendall(b"GET /sleep?s=30 HTTP/1.1\r\nHost: t\r\n\r\n")
            time.sleep(0.5)
            t0 = time.monotonic()
            s.signal(signal.SIGINT)
            s.wait_exit(10)
            assert time.monotonic() - t0 < 5, "INT did not stop the server fast"
            assert HTTPReader(sock).at_eof(5), "the connection of the cut request stayed open"


def test_term_to_pid_1_during_a_slow_preload_stops_it_at_once(tmp_path):
    # slowboot takes 3 s to import; the master binds first, then imports.
    with pid1("slowboot:app", "--preload", wait_ready=False, tmp=str(tmp_path)) as s:
        s.srv.wait_for_log(r"Listening at: ", 10)
        t0 = time.monotonic()
        s.signal(signal.SIGTERM)
        code = s.wait_exit(10)
        assert time.monotonic() - t0 < 2.5, "TERM during start-up waited for the import (3 s)"
        assert code == 128 + signal.SIGTERM, (code, s.srv.log)
        assert "Ready:" not in s.srv.log


def test_upgrade_as_pid_1_is_refused_and_the_server_goes_on(tmp_path):
    with pid1("orphanapp:app", tmp=str(tmp_path)) as s:
        workers = s.workers()
        s.signal(signal.SIGUSR2)
        s.srv.wait_for_log(r"upgrade refused: an in-place upgrade cannot work as PID 1")
        assert get(s.srv, "/pid").status == 200
        assert s.workers() == workers
        s.signal(signal.SIGTERM)
        assert s.wait_exit(10) == 0, s.srv.log


def test_daemon_as_pid_1_is_refused_with_the_reason(tmp_path):
    r = subprocess.run([*UNSHARE, sys.executable, "-m", "prefork", "start", "orphanapp:app",
                        "--daemon", "--bind", "127.0.0.1:0",
                        "--control-socket", str(tmp_path / "ctl")],
                       capture_output=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                           [str(ROOT), str(ROOT / "tests" / "apps")])))
    assert r.returncode == 2, r
    assert b"daemon = true cannot work as PID 1" in r.stderr, r.stderr
