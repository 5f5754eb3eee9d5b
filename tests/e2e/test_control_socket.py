"""The control socket cannot stall the master, and never removes a file
that is not its own socket."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.server import ServerProcess, get, running, wait_until, workers_of

pytestmark = pytest.mark.timeout(60)


def ctl_of(srv: ServerProcess) -> str:
    return srv.args[srv.args.index("--control-socket") + 1]


def status(ctl: str, timeout: float = 5) -> dict:
    out = subprocess.run([sys.executable, "-m", "prefork", "status", "--json", "--control-socket",
                          ctl], capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_client_trickling_bytes_does_not_freeze_supervision():
    with running("testapp:app", "--workers", "2") as srv:
        ctl = ctl_of(srv)
        slow = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(3)]
        for s in slow:
            s.connect(ctl)
        try:
            # A byte every 0.3 s, never a newline: before, the master sat in
            # recv() for as long as they came (1 s timeout per byte).
            before = wait_until(lambda: len(workers_of(srv)) == 2 and workers_of(srv))
            os.kill(before[0], signal.SIGKILL)
            t0 = time.monotonic()
            replaced = False
            while time.monotonic() - t0 < 1.5:
                for s in slow:
                    try:
                        s.send(b"{")
                    except OSError:
                        pass
                w = workers_of(srv)
                replaced = replaced or (len(w) == 2 and before[0] not in w)
                time.sleep(0.3)
            assert replaced, "the master did not replace a killed worker meanwhile"
            t1 = time.monotonic()
            assert status(ctl)["ok"] is True
            assert time.monotonic() - t1 < 2
            # The slow clients are answered with an error once their time is up.
            s = slow[0]
            s.settimeout(5)
            answer = json.loads(s.recv(4096))
            assert answer["ok"] is False and "no complete request line" in answer["error"]
        finally:
            for s in slow:
                s.close()
        assert get(srv, "/hello").status == 200


def test_a_control_socket_path_naming_a_regular_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    srv = ServerProcess(["start", "testapp:app", "--bind", "127.0.0.1:0", "--workers", "1",
                         "--control-socket", str(path)], wait_ready=False, wait_listening=False)
    try:
        assert srv.proc.wait(20) != 0
        assert "is not a socket" in srv.log, srv.log
        assert path.read_text() == "precious"
    finally:
        srv.stop()


def test_a_program_the_app_starts_inherits_no_listener_and_the_port_is_free_after_stop():
    with running("testapp:app", "--workers", "1") as srv:
        host, port = srv.host, srv.port
        child = int(get(srv, "/spawn").body)      # sleep 30, started with close_fds=False
        try:
            fds = {fd: os.readlink(f"/proc/{child}/fd/{fd}") for fd in os.listdir(f"/proc/{child}/fd")}
            assert not [link for link in fds.values() if link.startswith("socket:")], fds
        except BaseException:
            os.kill(child, signal.SIGKILL)
            raise
    try:
        # Before, the sleep kept the listening socket: the next start failed
        # with "Address already in use".
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen()
    finally:
        os.kill(child, signal.SIGKILL)


def test_control_commands_are_declared_once():
    from prefork.cli import REMOTE, build_parser
    from prefork.control import COMMANDS
    from prefork.master import Master
    assert set(Master.CONTROL) == set(COMMANDS)
    assert set(REMOTE) <= set(COMMANDS)
    assert set(REMOTE) <= set(build_parser().commands)    # type: ignore[attr-defined]


def test_an_unknown_command_is_answered_with_the_closest_name():
    from prefork import control
    with running("testapp:app", "--workers", "1") as srv:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(ctl_of(srv))
        sock.sendall(b'{"cmd": "stauts"}\n')
        answer = json.loads(sock.makefile("rb").readline())
        sock.close()
        assert answer["ok"] is False
        assert answer["error"].startswith("unknown command 'stauts'; did you mean 'status'?")
        assert control.request(ctl_of(srv), "add_workers", 10, n=1) == {"ok": True, "workers": 2}
        assert control.request(ctl_of(srv), "status", 10)["ok"] is True
