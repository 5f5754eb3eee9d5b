"""systemd integration against real processes, without systemd as PID 1.

A fake NOTIFY_SOCKET receiver (an AF_UNIX datagram socket, by path or by
abstract name) records every sd_notify message with the time it arrived;
``systemd-socket-activate`` (from the systemd package) passes real activated
sockets; ``systemd-analyze verify`` checks the unit files in systemd/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from prefork import systemd
from prefork.systemd import ActivationError, Systemd
from tests.server import ROOT, HTTPReader, ServerProcess, get, running, wait_until

SOCKET_ACTIVATE = shutil.which("systemd-socket-activate")
ANALYZE = shutil.which("systemd-analyze")
needs_activate = pytest.mark.skipif(
    SOCKET_ACTIVATE is None,
    reason="systemd-socket-activate not found (apt-get install systemd; .ci/run does it as root)")


# -- helpers ----------------------------------------------------------------

class Message:
    def __init__(self, raw: bytes, at: float):
        self.raw = raw.decode("utf-8", "replace")
        self.at = at
        self.fields = dict(line.split("=", 1) for line in self.raw.split("\n") if "=" in line)

    def __repr__(self) -> str:
        return f"<{self.at:.3f} {self.raw!r}>"


class NotifyReceiver:
    """Plays systemd's side of sd_notify: records each datagram with a timestamp."""

    def __init__(self, directory: Path | None = None, on_message: Callable[[Message], None]
                 | None = None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if directory is None:      # abstract namespace: NOTIFY_SOCKET=@name
            name = f"prefork-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            path = str(directory / "notify.sock")
            self.sock.bind(path)
            self.address = path
        self.sock.settimeout(0.2)
        self.messages: list[Message] = []
        self.on_message = on_message
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            m = Message(data, time.monotonic())
            if self.on_message is not None:
                self.on_message(m)
            with self._cond:
                self.messages.append(m)
                self._cond.notify_all()

    def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 15.0,
                 after: int = 0) -> Message:
        """The first message from index ``after`` on that matches; fail after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for m in self.messages[after:]:
                    if predicate(m):
                        return m
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no such message within {timeout} s; got {self.messages}")
                self._cond.wait(min(left, 0.2))

    def index(self, m: Message) -> int:
        with self._cond:
            return self.messages.index(m)

    def with_field(self, key: str, value: str | None = None) -> list[Message]:
        with self._cond:
            return [m for m in self.messages
                    if key in m.fields and (value is None or m.fields[key] == value)]

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        self.sock.close()


def is_ready(m: Message) -> bool:
    return m.fields.get("READY") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True




def terminate(pid: int, timeout: float = 15.0) -> None:
    """TERM one process we started and wait for it; KILL it if it lingers."""
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
    try:
        wait_until(lambda: gone(pid), timeout)
    except AssertionError:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def http_get(host: str, port: int, path: str = "/hello") -> tuple[int, bytes]:
    with socket.create_connection((host, port), timeout=15) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        r = HTTPReader(s).read_response()
    return r.status, r.body


class Activated(ServerProcess):
    """``systemd-socket-activate -l ADDR ... python -m prefork start ...``, output captured.

    Like a .socket unit, systemd-socket-activate listens first and starts
    prefork on the first connection; that connection waits in the backlog
    and is answered once prefork serves.
    """

    def __init__(self, listen: list[str], prefork_args: list[str],
                 env: dict[str, str] | None = None, extra: list[str] | None = None):
        assert SOCKET_ACTIVATE is not None
        # systemd-socket-activate passes on only the variables named with -E.
        pass_env = {"PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests" / "apps")]),
                    "PYTHONUNBUFFERED": "1", **(env or {})}
        argv = [SOCKET_ACTIVATE, *[a for addr in listen for a in ("-l", addr)], *(extra or []),
                *[f"-E{k}={v}" for k, v in pass_env.items()],
                sys.executable, "-m", "prefork", "start", *prefork_args]
        if "--control-socket" not in prefork_args:
            argv += ["--control-socket", ""]      # none in the cwd
        super().__init__([], command=argv, wait_listening=False, wait_ready=False)


# -- unit: capture, checks, notify ------------------------------------------

def test_capture_takes_the_variables_out_of_the_environment():
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000", "LISTEN_FDS": "0",
           "LISTEN_PID": "42", "LISTEN_FDNAMES": "", "PATH": "/bin"}
    sd = Systemd.capture(env, pid=42)
    assert env == {"PATH": "/bin"}
    assert sd.notify_socket == "@x" and sd.watchdog == 2.0 and sd.listen_fds == 0
    assert sd.exec_env() == {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "4000000"}
    # A USR2 successor learns which inherited listeners are systemd's.
    sd.activated_fds = {3, 4}
    again = Systemd.capture(dict(sd.exec_env()), pid=43)
    assert again.activated_fds == {3, 4} and again.watchdog == 2.0


def test_listen_fds_and_watchdog_for_another_pid_are_ignored():
    env = {"LISTEN_FDS": "2", "LISTEN_PID": "41", "WATCHDOG_USEC": "1000000",
           "WATCHDOG_PID": "41"}
    sd = Systemd.capture(env, pid=42)
    assert sd.listen_fds == 0 and sd.watchdog == 0 and env == {}
    assert "LISTEN_PID='41' is not this process (42)" in sd.listen_ignored
    # Like sd_listen_fds(): without LISTEN_PID the sockets are not taken either.
    assert Systemd.capture({"LISTEN_FDS": "1"}, pid=42).listen_fds == 0
    assert Systemd.capture({"LISTEN_FDS": "many", "LISTEN_PID": "42"}, pid=42).listen_error


def _on_high_fd(sock: socket.socket, fd: int) -> None:
    os.dup2(sock.fileno(), fd)
    sock.close()


def test_listen_sockets_checks_each_descriptor_and_fdnames_may_be_absent():
    first = 700
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen()
    port = lst.getsockname()[1]
    _on_high_fd(lst, first)
    try:
        sd = Systemd.capture({"LISTEN_FDS": "1", "LISTEN_PID": "7"}, pid=7, first_fd=first)
        assert sd.listen_names == []
        [sock] = sd.listen_sockets()
        assert sock.fileno() == first and sock.getsockname()[1] == port
        sock.detach()
    finally:
        os.close(first)


@pytest.mark.parametrize("kind", ["bound, not listening", "datagram"])
def test_a_socket_that_is_not_listening_is_refused_with_a_clear_error(kind):
    first = 710
    if kind == "datagram":
        bad = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    else:
        bad = socket.socket()
    bad.bind(("127.0.0.1", 0))
    _on_high_fd(bad, first)
    try:
        sd = Systemd.capture({"LISTEN_FDS": "1", "LISTEN_PID": "7", "LISTEN_FDNAMES": "web"},
                             pid=7, first_fd=first)
        with pytest.raises(ActivationError, match=r"socket activation: cannot use the socket "
                           r"systemd passed as fd 710 \('web'\): descriptor 710 is not a "
                           r"listening stream socket"):
            sd.listen_sockets()
        os.fstat(first)      # still open: it is systemd's, not ours to close
    finally:
        os.close(first)


def test_covers_matches_the_address_an_activated_socket_listens_on(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert systemd.covers(s, f"127.0.0.1:{port}")
        assert systemd.covers(s, f"localhost:{port}")
        assert not systemd.covers(s, f"127.0.0.1:{port + 1 if port < 65535 else 1}")
        assert not systemd.covers(s, "127.0.0.1:0")
        assert not systemd.covers(s, f"unix:{tmp_path}/x.sock")
    with socket.socket(socket.AF_UNIX) as u:
        u.bind(str(tmp_path / "x.sock"))
        u.listen()
        assert systemd.covers(u, f"unix:{tmp_path}/x.sock")


@pytest.mark.parametrize("abstract", [False, True])
def test_notify_reaches_a_path_or_an_abstract_socket(tmp_path, abstract):
    rx = NotifyReceiver(None if abstract else tmp_path)
    try:
        assert systemd.notify("READY=1\nSTATUS=hi", rx.address)
        m = rx.wait_for(is_ready, timeout=5)
        assert m.fields == {"READY": "1", "STATUS": "hi"}
    finally:
        rx.close()
    assert not systemd.notify("READY=1", "")
    assert not systemd.notify("READY=1", str(tmp_path / "nobody-listens"))   # logged, not raised


# -- end to end: notifications ----------------------------------------------

def test_ready_only_once_every_worker_accepts_with_mainpid_and_status(tmp_path):
    rx = NotifyReceiver(tmp_path)
    started = time.monotonic()
    try:
        # slowboot takes 3 s to import: an early READY would show.
        with running("slowboot:app", "--workers", "2", env={"NOTIFY_SOCKET": rx.address},
                     wait_ready=False) as srv:
            ready = rx.wait_for(is_ready, timeout=30)
            assert get(srv, "/").body == b"booted"      # accepted right after READY
            assert ready.at - started >= 3.0
            assert "Ready: 2 workers serving" in srv.wait_for_log(r"Ready: 2 workers serving"
                                                                   ).string
            assert ready.fields["MAINPID"] == str(srv.proc.pid)
            assert ready.fields["STATUS"].startswith("2 workers, 0 in flight")
            assert rx.index(ready) == 0                  # nothing said before READY
            assert len(rx.with_field("READY")) == 1
            # The workers never got the variable: only the master notifies.
            for child in psutil.Process(srv.proc.pid).children():
                assert "NOTIFY_SOCKET" not in child.environ()
    finally:
        rx.close()


def test_hup_sends_reloading_then_ready_and_term_sends_stopping():
    rx = NotifyReceiver()     # abstract @name
    try:
        with running("testapp:app", "--workers", "2", env={"NOTIFY_SOCKET": rx.address}) as srv:
            first = rx.wait_for(is_ready)
            n = rx.index(first) + 1
            before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            srv.signal(signal.SIGHUP)
            reloading = rx.wait_for(lambda m: m.fields.get("RELOADING") == "1", after=n)
            usec = int(reloading.fields["MONOTONIC_USEC"])
            assert before <= usec <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            again = rx.wait_for(is_ready, after=rx.index(reloading))
            assert "generation 2" in again.fields["STATUS"]
            srv.wait_for_log(r"Ready: 2 workers serving[\s\S]*Ready: 2 workers serving")
            assert get(srv, "/hello").status == 200
            n = len(rx.messages)
            srv.signal(signal.SIGTERM)
            stopping = rx.wait_for(lambda m: m.fields.get("STOPPING") == "1", after=n)
            assert srv.proc.wait(15) == 0
            assert not any(is_ready(m) for m in rx.messages[rx.index(stopping):])
    finally:
        rx.close()


def test_a_failed_reload_ends_with_ready_so_systemd_is_not_left_reloading(tmp_path):
    version = tmp_path / "VERSION"
    version.write_text("v1")
    conf = tmp_path / "prefork.toml"
    conf.write_text("workers = 1\n")
    rx = NotifyReceiver(tmp_path)
    try:
        with running("versioned:app", "-c", str(conf), one_worker=False,
                     env={"NOTIFY_SOCKET": rx.address, "VERSION_FILE": str(version)}) as srv:
            rx.wait_for(is_ready)
            # 1. the new app fails to import: the canary dies, the old worker serves on
            version.write_text("broken-2")
            n = len(rx.messages)
            srv.signal(signal.SIGHUP)
            reloading = rx.wait_for(lambda m: m.fields.get("RELOADING") == "1", after=n)
            ready = rx.wait_for(is_ready, after=rx.index(reloading), timeout=20)
            assert ready.fields["STATUS"].startswith("Reload failed")
            srv.wait_for_log(r"reload failed: the new worker exited")
            assert get(srv, "/").body.startswith(b"v1")
            # 2. the new configuration is invalid
            conf.write_text('workers = "many"\n')
            n = len(rx.messages)
            srv.signal(signal.SIGHUP)
            reloading = rx.wait_for(lambda m: m.fields.get("RELOADING") == "1", after=n)
            ready = rx.wait_for(is_ready, after=rx.index(reloading))
            assert ready.fields["STATUS"].startswith("Reload failed")
            assert ready.at - reloading.at < 2.0
    finally:
        rx.close()


def test_status_follows_the_worker_count_without_flooding(tmp_path):
    rx = NotifyReceiver(tmp_path)
    try:
        with running("testapp:app", env={"NOTIFY_SOCKET": rx.address}) as srv:
            ready = rx.wait_for(is_ready)
            assert ready.fields["STATUS"].startswith("1 workers, 0 in flight")
            srv.signal(signal.SIGTTIN)
            two = rx.wait_for(lambda m: m.fields.get("STATUS", "").startswith("2 workers"),
                              after=rx.index(ready), timeout=10)
            time.sleep(1.5)
            # Only changes and a 5 s refresh: nothing more in the meantime.
            assert rx.messages[rx.index(two) + 1:] == []
    finally:
        rx.close()


def test_hup_with_preload_reexecs_and_the_new_master_ends_the_reload(tmp_path):
    rx = NotifyReceiver(tmp_path)
    new_master = None
    try:
        with running("testapp:app", "--preload", env={"NOTIFY_SOCKET": rx.address}) as srv:
            rx.wait_for(is_ready)
            n = len(rx.messages)
            srv.signal(signal.SIGHUP)
            reloading = rx.wait_for(lambda m: m.fields.get("RELOADING") == "1", after=n)
            new_master = int(srv.wait_for_log(r"Upgrade: started a new master \(pid (\d+)\)"
                                              ).group(1))
            ready = rx.wait_for(is_ready, after=rx.index(reloading), timeout=20)
            assert ready.fields["MAINPID"] == str(new_master)
            assert srv.proc.wait(15) == 0
            assert not rx.with_field("STOPPING")
            assert get(srv, "/hello").status == 200
    finally:
        if new_master is not None:
            terminate(new_master)
        rx.close()


def test_watchdog_pings_at_half_the_interval_and_stop_while_the_master_hangs(tmp_path):
    rx = NotifyReceiver(tmp_path)
    try:
        with running("testapp:app", env={"NOTIFY_SOCKET": rx.address,
                                         "WATCHDOG_USEC": "1000000"}) as srv:
            rx.wait_for(is_ready)
            time.sleep(2.6)
            pings = [m.at for m in rx.with_field("WATCHDOG", "1")]
            assert len(pings) >= 4, rx.messages
            gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
            assert all(0.3 <= g <= 0.95 for g in gaps), gaps     # 0.5 s + a loop turn < 1 s
            try:
                os.kill(srv.proc.pid, signal.SIGSTOP)
                time.sleep(0.3)        # a ping in flight may still land
                stopped_at = time.monotonic()
                time.sleep(1.5)
                assert [m for m in rx.with_field("WATCHDOG") if m.at > stopped_at] == []
            finally:
                os.kill(srv.proc.pid, signal.SIGCONT)
            resumed = time.monotonic()
            rx.wait_for(lambda m: m.fields.get("WATCHDOG") == "1" and m.at > resumed, timeout=3)
            assert get(srv, "/hello").status == 200
    finally:
        rx.close()


def test_watchdog_meant_for_another_pid_sends_no_pings(tmp_path):
    rx = NotifyReceiver(tmp_path)
    try:
        with running("testapp:app", env={"NOTIFY_SOCKET": rx.address, "WATCHDOG_USEC": "400000",
                                         "WATCHDOG_PID": "1"}):
            rx.wait_for(is_ready)
            time.sleep(1.0)
            assert rx.with_field("WATCHDOG") == []
    finally:
        rx.close()


def test_usr2_hands_mainpid_to_the_new_master(tmp_path):
    rx = NotifyReceiver(tmp_path)
    new_master = None
    try:
        with running("testapp:app", "--workers", "2", env={"NOTIFY_SOCKET": rx.address,
                                                           "WATCHDOG_USEC": "1000000"}) as srv:
            old = srv.proc.pid
            rx.wait_for(lambda m: is_ready(m) and m.fields.get("MAINPID") == str(old))
            n = len(rx.messages)
            srv.signal(signal.SIGUSR2)
            new_master = int(srv.wait_for_log(r"Upgrade: started a new master \(pid (\d+)\)"
                                              ).group(1))
            handover = rx.wait_for(is_ready, after=n, timeout=20)
            assert handover.fields["MAINPID"] == str(new_master) != str(old)
            assert srv.proc.wait(15) == 0
            # The old master left without telling systemd the service stops.
            assert not rx.with_field("STOPPING")
            assert get(srv, "/hello").status == 200
            # The new master keeps the watchdog fed.
            t = time.monotonic()
            rx.wait_for(lambda m: m.fields.get("WATCHDOG") == "1" and m.at > t, timeout=3)
            n = len(rx.messages)
            os.kill(new_master, signal.SIGTERM)
            rx.wait_for(lambda m: m.fields.get("STOPPING") == "1", after=n)
            wait_until(lambda: gone(new_master), 15)
    finally:
        if new_master is not None:
            terminate(new_master)
        rx.close()


# -- end to end: socket activation ------------------------------------------

@needs_activate
def test_socket_activation_serves_on_the_passed_socket_only():
    port = free_port()
    srv = Activated([f"127.0.0.1:{port}"], ["testapp:app", "--workers", "2"])
    try:
        srv.wait_for_log(r"Listening on 127.0.0.1:\d+ as 3")
        assert "Master" not in srv.log          # not started before the first client
        assert http_get("127.0.0.1", port) == (200, b"Hello, World!")
        srv.wait_for_log(r"Ready: 2 workers serving")
        assert srv.log.count("Listening at:") == 1
        assert f"Listening at: http://127.0.0.1:{port}" in srv.log
        assert "Using the socket systemd passed: http://127.0.0.1:" in srv.log
        # The variables did not reach the workers.
        for child in psutil.Process(srv.proc.pid).children():
            assert not any(k.startswith("LISTEN_") for k in child.environ())
    finally:
        assert srv.stop() == 0


@needs_activate
def test_socket_activation_of_a_unix_socket_with_fdnames(tmp_path):
    path = tmp_path / "web.sock"
    srv = Activated([str(path)], ["testapp:app", "--workers", "1"], extra=["--fdname=web"])
    try:
        srv.wait_for_log(r"Listening on .* as 3")
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(15)
            s.connect(str(path))
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            assert HTTPReader(s).read_response().status == 200
        assert f"Listening at: unix:{path}" in srv.log
    finally:
        assert srv.stop() == 0
    # systemd owns the socket file (it goes on listening across restarts of
    # the service): prefork must not remove it.
    assert path.exists()


@needs_activate
def test_activated_and_bound_sockets_mix(tmp_path):
    port = free_port()
    # --bind of the activated address is covered by it; the second address is bound.
    srv = Activated([f"127.0.0.1:{port}"],
                    ["testapp:app", "--workers", "1", "--bind", f"127.0.0.1:{port}",
                     "--bind", "127.0.0.1:0"])
    try:
        srv.wait_for_log(r"Listening on .* as 3")
        assert http_get("127.0.0.1", port)[0] == 200
        srv.wait_for_log(r"Ready: 1 workers serving")
        listening = re.findall(r"Listening at: http://127.0.0.1:(\d+)", srv.log)
        assert len(listening) == 2 and listening[0] == str(port), srv.log
        for p in listening:
            assert http_get("127.0.0.1", int(p))[0] == 200
    finally:
        assert srv.stop() == 0


@needs_activate
def test_daemon_mode_keeps_the_activated_socket_and_notifies(tmp_path):
    port = free_port()
    pidfile = tmp_path / "prefork.pid"
    errorlog = tmp_path / "error.log"
    rx = NotifyReceiver(tmp_path)
    srv = Activated([f"127.0.0.1:{port}"],
                    ["testapp:app", "--workers", "1", "--daemon", "--pidfile", str(pidfile),
                     "--errorlog", str(errorlog), "--control-socket", str(tmp_path / "ctl")],
                    env={"NOTIFY_SOCKET": rx.address})
    daemon = None
    try:
        srv.wait_for_log(r"Listening on .* as 3")
        assert http_get("127.0.0.1", port)[0] == 200      # starts prefork, then answered
        assert srv.proc.wait(20) == 0, srv.log + errorlog.read_text()
        daemon = int(pidfile.read_text())
        ready = rx.wait_for(is_ready, timeout=5)
        assert ready.fields["MAINPID"] == str(daemon) != str(srv.proc.pid)
        assert http_get("127.0.0.1", port)[0] == 200
    finally:
        if daemon is not None:
            terminate(daemon)
        srv.stop()
        rx.close()


def _start_with_fd3(bad: socket.socket) -> subprocess.CompletedProcess[str]:
    """Start prefork with ``bad`` as fd 3, LISTEN_FDS=1 and LISTEN_PID, as systemd would."""
    env = dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'tests' / 'apps'}")
    launcher = ("import os, sys; os.dup2(int(sys.argv[1]), 3); "
                "os.environ.update(LISTEN_FDS='1', LISTEN_PID=str(os.getpid())); "
                "os.execv(sys.executable, [sys.executable, '-m', 'prefork', 'start', "
                "'testapp:app', '--control-socket', ''])")
    return subprocess.run([sys.executable, "-c", launcher, str(bad.fileno())],
                          pass_fds=[bad.fileno()], env=env, capture_output=True, text=True,
                          timeout=30)


def test_prefork_refuses_a_non_listening_activated_socket():
    with socket.socket() as bad:
        bad.bind(("127.0.0.1", 0))
        done = _start_with_fd3(bad)
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("socket activation: cannot use the socket systemd passed as fd 3: descriptor 3 "
            "is not a listening stream socket") in done.stdout + done.stderr
    assert "Ready:" not in done.stdout + done.stderr


def test_systemd_examples_live_in_the_unit_files():
    service = (ROOT / "systemd" / "prefork.service").read_text()
    for line in ("Type=notify", "NotifyAccess=all", "ExecReload=/bin/kill -HUP $MAINPID",
                 "KillMode=mixed", "Restart=on-failure", "NoNewPrivileges=yes",
                 "ProtectSystem=strict", "PrivateTmp=yes"):
        assert line in service


# -- the unit files -----------------------------------------------------------

@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not found (apt-get install systemd)")
@pytest.mark.parametrize("units", [("prefork.service", "prefork.socket"),
                                   ("prefork@.service",)])
def test_unit_files_pass_systemd_analyze_verify_silently(tmp_path, units):
    assert ANALYZE is not None
    # Verify copies, so the test does not depend on where the checkout lives;
    # prefork@.service is a template: verify an instance of it.
    names = []
    for unit in units:
        text = (ROOT / "systemd" / unit).read_text()
        name = unit.replace("@.", "@example.")
        (tmp_path / name).write_text(text)
        names.append(str(tmp_path / name))
    done = subprocess.run([ANALYZE, "verify", "--man=no", *names], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze not found (apt-get install systemd)")
def test_systemd_analyze_verify_does_catch_a_typo(tmp_path):
    text = (ROOT / "systemd" / "prefork.service").read_text().replace("KillMode=", "KilMode=")
    (tmp_path / "prefork.service").write_text(text)
    shutil.copy(ROOT / "systemd" / "prefork.socket", tmp_path / "prefork.socket")
    done = subprocess.run([ANALYZE, "verify", "--man=no", str(tmp_path / "prefork.service"),
                           str(tmp_path / "prefork.socket")], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert "KilMode" in done.stdout + done.stderr

