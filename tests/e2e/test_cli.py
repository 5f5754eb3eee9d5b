"""The prefork command as an operator types it: start, status, reload, upgrade,
stop, check; daemon mode with a pidfile; the control socket; process settings."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.server import ROOT, get, running

APPS = ROOT / "tests" / "apps"
ENV = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{APPS}")


def prefork(*args: str, timeout: float = 60, cwd: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "prefork", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=cwd, env=env or ENV)


def ctl_of(srv) -> str:
    i = srv.args.index("--control-socket")
    return srv.args[i + 1]


def wait_gone(pid: int, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_status_table_and_json():
    with running("testapp:app", "--workers", "2") as s:
        for _ in range(5):
            get(s, "/hello")
        time.sleep(0.6)   # workers publish their counters with each loop tick (<= 0.5 s)
        out = prefork("status", "--control-socket", ctl_of(s))
        assert out.returncode == 0, out.stderr
        assert f"master {s.proc.pid}" in out.stdout and "testapp:app" in out.stdout
        assert "PID" in out.stdout and "REQUESTS" in out.stdout and "ready" in out.stdout
        data = json.loads(prefork("status", "--json", "--control-socket", ctl_of(s)).stdout)
        assert data["master"]["pid"] == s.proc.pid
        workers = data["workers"]
        assert len(workers) == 2 and sum(w["requests"] for w in workers) >= 5
        assert all(w["rss"] > 0 and w["state"] == "ready" for w in workers)


def test_status_shows_a_reload_under_way_and_each_workers_state():
    with running("testapp:app", "--workers", "2", "--canary-probation", "30") as s:
        s.signal(signal.SIGHUP)
        s.wait_for_log(r"on probation for 30 s")
        out = prefork("status", "--control-socket", ctl_of(s))
        assert out.returncode == 0, out.stderr
        assert "reload in progress: generation 2: canary probation" in out.stdout
        data = json.loads(prefork("status", "--json", "--control-socket", ctl_of(s)).stdout)
        states = sorted((w["generation"], w["state"]) for w in data["workers"])
        assert states == [(1, "ready"), (1, "ready"), (2, "probation")]


def test_status_shows_the_oldest_in_flight_request():
    with running("testapp:app") as s:
        c = s.connect()
        c.sendall(b"GET /sleep?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.8)
        data = json.loads(prefork("status", "--json", "--control-socket", ctl_of(s)).stdout)
        (w,) = data["workers"]
        assert w["in_flight"] == 1 and w["oldest_request"] == "GET /sleep?s=2"
        assert 0.3 < w["oldest_request_age"] < 2.5
        c.close()


def test_control_socket_is_private():
    with running("testapp:app") as s:
        assert stat.S_IMODE(os.stat(ctl_of(s)).st_mode) == 0o600


def test_reload_reports_success_and_failure(tmp_path):
    version = tmp_path / "VERSION"
    version.write_text("v1")
    env = {"VERSION_FILE": str(version)}
    with running("versioned:app", "--workers", "2", env=env) as s:
        version.write_text("v2")
        out = prefork("reload", "--control-socket", ctl_of(s))
        assert out.returncode == 0, out.stderr
        assert "reloaded; generation 2 is serving" in out.stdout
        assert get(s, "/").body.startswith(b"v2")
        version.write_text("broken-3")
        out = prefork("reload", "--control-socket", ctl_of(s))
        assert out.returncode == 1
        assert "reload failed" in out.stderr
        assert "RuntimeError: this deploy is broken: broken-3" in out.stderr
        assert get(s, "/").body.startswith(b"v2")


def test_stop_waits_for_the_master_to_exit():
    with running("testapp:app") as s:
        c = s.connect()
        c.sendall(b"GET /sleep?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        out = prefork("stop", "--control-socket", ctl_of(s))
        assert out.returncode == 0 and f"master {s.proc.pid} stopped" in out.stdout
        assert s.proc.poll() is not None
        c.close()


def test_stop_by_pidfile_without_control_socket(tmp_path):
    pidfile = tmp_path / "p.pid"
    with running("testapp:app", "--control-socket", "", "--pidfile", str(pidfile)) as s:
        assert int(pidfile.read_text()) == s.proc.pid
        out = prefork("stop", "--control-socket", "", "--pidfile", str(pidfile))
        assert out.returncode == 0, out.stderr
        assert s.proc.wait(10) == 0
    assert not pidfile.exists()


def test_commands_without_a_running_master_fail_clearly(tmp_path):
    out = prefork("status", "--control-socket", str(tmp_path / "nope.ctl"))
    assert out.returncode == 1 and "no master listens on" in out.stderr
    out = prefork("stop", "--control-socket", str(tmp_path / "nope.ctl"))
    assert out.returncode == 1 and "no pidfile is configured" in out.stderr
    (tmp_path / "stale.pid").write_text("999999\n")
    out = prefork("stop", "--control-socket", "", "--pidfile", str(tmp_path / "stale.pid"))
    assert out.returncode == 1 and "which is not running" in out.stderr


def test_daemon_mode_with_pidfile_start_status_reload_stop(tmp_path):
    pidfile, ctl, errlog = tmp_path / "d.pid", tmp_path / "d.ctl", tmp_path / "error.log"
    port = free_port()
    args = ["--bind", f"127.0.0.1:{port}", "--workers", "2", "--pidfile", str(pidfile),
            "--control-socket", str(ctl)]
    out = prefork("start", "testapp:app", "--daemon", "--errorlog", str(errlog), *args)
    master = None
    try:
        assert out.returncode == 0, out.stderr
        master = int(pidfile.read_text())
        assert psutil.Process(master).ppid() == 1 or psutil.Process(master).ppid() != os.getpid()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert b"Hello, World!" in c.recv(4096)
        status = json.loads(prefork("status", "--json", "--control-socket", str(ctl)).stdout)
        assert status["master"]["pid"] == master and len(status["workers"]) == 2
        assert prefork("reload", "--control-socket", str(ctl)).returncode == 0
        # A second start with the same pidfile is refused while the first runs.
        again = prefork("start", "testapp:app", "--daemon", "--errorlog", str(errlog),
                        "--bind", "127.0.0.1:0", "--pidfile", str(pidfile),
                        "--control-socket", str(tmp_path / "other.ctl"))
        assert again.returncode != 0 and "is prefork already started?" in again.stderr
        # WINCH stops the workers of a daemonized master and keeps the master.
        os.kill(master, signal.SIGWINCH)
        deadline = time.monotonic() + 10
        while psutil.Process(master).children() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert psutil.Process(master).children() == []
        assert prefork("stop", "--control-socket", str(ctl)).returncode == 0
        assert wait_gone(master)
        assert not pidfile.exists() and not ctl.exists()
        assert "Listening at" in errlog.read_text()
    finally:
        master = master or (int(pidfile.read_text()) if pidfile.exists() else None)
        if master and psutil.pid_exists(master):
            for child in psutil.Process(master).children():
                child.kill()
            os.kill(master, signal.SIGKILL)


def test_daemon_start_failure_is_reported(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        out = prefork("start", "testapp:app", "--daemon", "--bind", f"127.0.0.1:{port}",
                      "--control-socket", str(tmp_path / "c"), "--errorlog", str(tmp_path / "e"))
    assert out.returncode == 1
    assert "Address already in use" in out.stderr


def test_stale_pidfile_is_replaced(tmp_path):
    pidfile = tmp_path / "s.pid"
    pidfile.write_text("999999\n")
    with running("testapp:app", "--pidfile", str(pidfile)) as s:
        assert int(pidfile.read_text()) == s.proc.pid


def test_check_good_and_broken_app(tmp_path):
    out = prefork("check", "testapp:app")
    assert out.returncode == 0 and "OK" in out.stdout
    (tmp_path / "VERSION").write_text("broken-9")
    out = prefork("check", "versioned:app", env=dict(ENV, VERSION_FILE=str(tmp_path / "VERSION")))
    assert out.returncode == 3
    assert "RuntimeError: this deploy is broken: broken-9" in out.stderr
    out = prefork("check", "testapp:app", "--threads", "0")
    assert out.returncode == 2 and "invalid value for setting 'threads'" in out.stderr


def test_chdir_pythonpath_and_env_reach_the_app(tmp_path):
    appdir = tmp_path / "site"
    appdir.mkdir()
    (appdir / "envapp.py").write_text(
        "import os\n"
        "def app(environ, start_response):\n"
        "    start_response('200 OK', [('Content-Type', 'text/plain')])\n"
        "    return [f\"{os.getcwd()}|{os.environ.get('GREETING')}\".encode()]\n")
    with running("envapp:app", "--chdir", str(tmp_path), "--pythonpath", str(appdir),
                 "--env", "GREETING=hi there") as s:
        assert get(s, "/").body.decode() == f"{tmp_path}|hi there"


def test_config_file_and_env_precedence_with_real_server(tmp_path):
    conf = tmp_path / "prefork.toml"
    conf.write_text('threads = 3\nworkers = 1\n[env]\nGREETING = "from toml"\n')
    with running("testapp:app", "-c", str(conf), env={"PREFORK_THREADS": "2"}) as s:
        assert "2 threads each" in s.log


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root")
def test_workers_drop_privileges_to_nobody():
    # --preload: the app is imported as root in the master. (Here the Python
    # install itself lives under /root, which nobody cannot read.)
    with running("hello:app", "--user", "nobody", "--workers", "1", "--preload") as s:
        assert get(s, "/hello").status == 200
        (worker,) = psutil.Process(s.proc.pid).children()
        import pwd
        nobody = pwd.getpwnam("nobody")
        assert worker.uids().real == nobody.pw_uid and worker.uids().effective == nobody.pw_uid
        assert psutil.Process(s.proc.pid).uids().real == 0


def test_help_for_every_command():
    for command in ("start", "check", "stop", "reload", "upgrade", "status"):
        out = prefork(command, "--help")
        assert out.returncode == 0, out.stderr
        assert "usage: prefork" in out.stdout
    assert "--access-log-format" in prefork("start", "--help").stdout


def test_unknown_user_is_refused_at_start():
    out = prefork("start", "testapp:app", "--user", "no-such-user-xyz", "--bind", "127.0.0.1:0")
    assert out.returncode == 2 and "no such user" in out.stderr


def test_upgrade_command(tmp_path):
    with running("testapp:app", "--workers", "1") as s:
        out = prefork("upgrade", "--control-socket", ctl_of(s))
        assert out.returncode == 0, out.stderr
        new = int(out.stdout.rsplit(" ", 1)[1])
        try:
            assert s.proc.wait(15) == 0
            assert get(s, "/hello").status == 200
            status = json.loads(prefork("status", "--json", "--control-socket", ctl_of(s)).stdout)
            assert status["master"]["pid"] == new
        finally:
            os.kill(new, signal.SIGTERM)
            wait_gone(new)


def test_app_spec_forms_factory_and_module_only():
    with running('factoryapp:create_app("staging", 3)') as s:
        assert get(s, "/").body == b"stagingx3"
    with running("factoryapp") as s:          # MODULE: its `application`
        assert get(s, "/").body == b"module-levelx1"
    out = prefork("check", "factoryapp:create_app(open('/etc/passwd'))")
    assert out.returncode == 3 and "literal positional arguments" in out.stderr


def test_version():
    from prefork import __version__
    out = prefork("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"prefork {__version__}"


def test_winch_stops_the_workers_of_a_daemon_started_by_usr2(tmp_path):
    # The new master skips daemonize() (it is detached already) and so
    # thought it was not a daemon: WINCH did nothing after an upgrade.
    pidfile, ctl, errlog = tmp_path / "d.pid", tmp_path / "d.ctl", tmp_path / "error.log"
    out = prefork("start", "testapp:app", "--daemon", "--bind", "127.0.0.1:0", "--workers", "2",
                  "--pidfile", str(pidfile), "--control-socket", str(ctl),
                  "--errorlog", str(errlog))
    assert out.returncode == 0, out.stderr
    masters = [int(pidfile.read_text())]
    try:
        os.kill(masters[0], signal.SIGUSR2)
        assert wait_gone(masters[0], 30), errlog.read_text()
        masters.append(int(pidfile.read_text()))
        new = psutil.Process(masters[1])
        assert masters[1] != masters[0] and len(new.children()) == 2
        os.kill(masters[1], signal.SIGWINCH)
        deadline = time.monotonic() + 10
        while new.children() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert new.children() == [], errlog.read_text()
        assert f"[{masters[1]}] [INFO] Handling signal: WINCH" in errlog.read_text()
        assert prefork("stop", "--control-socket", str(ctl)).returncode == 0
        assert wait_gone(masters[1])
    finally:
        for pid in masters:
            if psutil.pid_exists(pid):
                for child in psutil.Process(pid).children():
                    child.kill()
                os.kill(pid, signal.SIGKILL)
