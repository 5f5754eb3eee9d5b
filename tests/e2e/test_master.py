"""The master with real worker processes and real signals."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from prefork import control
from tests.server import HTTPReader, LoadLoop, ServerProcess, get, running, wait_until, workers_of


def test_forks_the_configured_number_of_workers_and_spreads_connections():
    with running("testapp:app", "--workers", "3") as s:
        pids = wait_until(lambda: len(workers_of(s)) == 3 and workers_of(s))
        seen = {int(get(s, "/pid").body) for _ in range(60)}
        assert seen <= set(pids) and len(seen) >= 2


def test_sigkilled_worker_is_replaced_within_one_second():
    with running("testapp:app", "--workers", "2") as s:
        before = wait_until(lambda: len(workers_of(s)) == 2 and workers_of(s))
        os.kill(before[0], signal.SIGKILL)
        t0 = time.monotonic()
        after = wait_until(lambda: (w := workers_of(s)) and len(w) == 2 and before[0] not in w and w,
                           timeout=5, interval=0.01)
        assert time.monotonic() - t0 < 1.0
        s.wait_for_log(rf"\(pid {before[0]}\) was killed by SIGKILL \(not by prefork: perhaps out of memory\?\)")
        assert before[1] in after
        assert get(s, "/hello").status == 200


def test_worker_that_exits_is_replaced_and_other_requests_unaffected():
    with running("testapp:control", "--workers", "1") as s:
        with pytest.raises((EOFError, ConnectionResetError)):
            get(s, "/exit")
        s.wait_for_log(r"exited with status 7")
        wait_until(lambda: get(s, "/hello").status == 200)


def test_term_while_workers_are_booting_stops_at_once():
    srv = ServerProcess(["start", "slowboot:app", "--bind", "127.0.0.1:0", "--workers", "2",
                         "--control-socket", ""], wait_ready=False)
    try:
        srv.wait_for_log(r"Booting worker 2")
        time.sleep(0.3)      # the workers are importing the app
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert srv.proc.wait(10) == 0
        assert time.monotonic() - t0 < 3, "a booting worker ignored TERM"
    finally:
        srv.stop()


def test_ttin_and_ttou_change_the_worker_count():
    with running("testapp:app", "--workers", "1") as s:
        wait_until(lambda: len(workers_of(s)) == 1)
        # Unix does not queue a signal sent twice before it is handled: wait in between.
        s.signal(signal.SIGTTIN)
        wait_until(lambda: len(workers_of(s)) == 2)
        s.signal(signal.SIGTTIN)
        wait_until(lambda: len(workers_of(s)) == 3)
        s.signal(signal.SIGTTOU)
        wait_until(lambda: len(workers_of(s)) == 2)
        s.wait_for_log(r"Number of workers: 3 -> 2")


def test_term_stops_gracefully_and_int_fast():
    with running("testapp:app", "--workers", "2") as s:
        c = s.connect()
        c.sendall(b"GET /sleep?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        s.signal(signal.SIGTERM)
        assert HTTPReader(c).read_response().body == b"slept"
        assert s.proc.wait(10) == 0
        c.close()
    with running("testapp:app", "--workers", "2") as s:
        pids = wait_until(lambda: len(workers_of(s)) == 2 and workers_of(s))
        c = s.connect()
        c.sendall(b"GET /sleep?s=20 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        s.signal(signal.SIGINT)
        assert s.proc.wait(10) == 0
        assert time.monotonic() - t0 < 4
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                       for p in pids)
        c.close()


def test_worker_whose_loop_hangs_gets_its_stack_dumped_and_is_replaced():
    with running("stallapp:app", "--workers", "1", "--timeout", "2") as s:
        stuck = int(get(s, "/stall-loop").body)
        s.wait_for_log(rf"WORKER TIMEOUT: worker 1 \(pid {stuck}\) has not beaten", timeout=15)
        s.wait_for_log(r"stuck_in_the_loop", timeout=10)
        # faulthandler names the file and function where the loop hangs.
        assert "stallapp.py" in s.log
        new = wait_until(lambda: (w := workers_of(s)) and stuck not in w and w, timeout=10)
        assert int(get(s, "/pid").body) in new


def test_request_over_request_timeout_is_logged_with_stack_and_worker_replaced():
    with running("testapp:app", "--workers", "1", "--request-timeout", "1",
                 "--graceful-timeout", "1") as s:
        old = wait_until(lambda: workers_of(s))[0]
        c = s.connect()
        c.sendall(b"GET /sleep?s=30 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.wait_for_log(r"request 'GET /sleep\?s=30' has run for", timeout=10)
        s.wait_for_log(r'File ".*testapp.py", line \d+ in app', timeout=5)
        wait_until(lambda: (w := workers_of(s)) and old not in w, timeout=15)
        assert get(s, "/hello").status == 200
        c.close()


def test_crash_loop_stops_with_a_clear_message(tmp_path):
    (tmp_path / "VERSION").write_text("broken-1")
    srv = ServerProcess(["start", "versioned:app", "--bind", "127.0.0.1:0", "--workers", "2",
                         "--max-boot-failures", "3"], env={"VERSION_FILE": str(tmp_path / "VERSION")},
                        wait_ready=False)
    try:
        code = srv.proc.wait(20)
        assert code == 3
        assert "RuntimeError: this deploy is broken: broken-1" in srv.log
        assert "Workers failed to boot 3 times in a row" in srv.log
        # Back-off: not a fork storm.
        assert srv.log.count("Booting worker") <= 5
    finally:
        srv.stop()


def test_hup_reloads_new_code_without_losing_requests(tmp_path):
    version = tmp_path / "VERSION"
    version.write_text("v1")
    with running("versioned:app", "--workers", "2", env={"VERSION_FILE": str(version)}) as s:
        assert get(s, "/").body.startswith(b"v1")
        load = LoadLoop(s, "/", threads=4)
        try:
            time.sleep(0.5)
            version.write_text("v2")
            s.signal(signal.SIGHUP)
            s.wait_for_log(r"reload: the canary booted")
            wait_until(lambda: all(get(s, "/").body.startswith(b"v2") for _ in range(10)), timeout=15)
            time.sleep(0.5)
        finally:
            load.stop()
        assert load.lost == [] and load.ok > 100
        assert any(b.startswith(b"v1") for b in load.bodies)
        assert any(b.startswith(b"v2") for b in load.bodies)
        wait_until(lambda: len(workers_of(s)) == 2, timeout=10)


def test_hup_with_a_broken_app_keeps_the_old_workers_serving(tmp_path):
    version = tmp_path / "VERSION"
    version.write_text("v1")
    with running("versioned:app", "--workers", "2", env={"VERSION_FILE": str(version)}) as s:
        before = wait_until(lambda: len(workers_of(s)) == 2 and workers_of(s))
        version.write_text("broken-2")
        s.signal(signal.SIGHUP)
        s.wait_for_log(r"reload failed: the new worker exited with status 3")
        assert "RuntimeError: this deploy is broken: broken-2" in s.log
        assert workers_of(s) == before
        for _ in range(10):
            assert get(s, "/").body.startswith(b"v1")
        # The fix deploys on the next HUP.
        version.write_text("v3")
        s.signal(signal.SIGHUP)
        wait_until(lambda: get(s, "/").body.startswith(b"v3"), timeout=15)


def test_hup_rereads_the_config_file(tmp_path):
    conf = tmp_path / "prefork.toml"
    conf.write_text("workers = 1\nthreads = 2\n")
    with running("testapp:app", "-c", str(conf), one_worker=False) as s:
        wait_until(lambda: len(workers_of(s)) == 1)
        conf.write_text("workers = 3\nthreads = 5\n")
        s.signal(signal.SIGHUP)
        wait_until(lambda: len(workers_of(s)) == 3, timeout=15)
        # 5 pool threads and the event loop's thread
        wait_until(lambda: all(psutil.Process(p).num_threads() >= 6 for p in workers_of(s)),
                   timeout=15)
        conf.write_text("workers = \"many\"\n")
        s.signal(signal.SIGHUP)
        s.wait_for_log(r"reload failed: the new configuration is invalid: invalid value for "
                       r"setting 'workers'")
        assert len(workers_of(s)) == 3 and get(s, "/hello").status == 200


def test_usr2_upgrades_the_master_without_losing_requests(tmp_path):
    version = tmp_path / "VERSION"
    version.write_text("v1")
    with running("versioned:app", "--workers", "2", env={"VERSION_FILE": str(version)}) as s:
        old_master = s.proc.pid
        load = LoadLoop(s, "/", threads=4)
        try:
            time.sleep(0.5)
            version.write_text("v2")
            s.signal(signal.SIGUSR2)
            m = s.wait_for_log(r"Upgrade: started a new master \(pid (\d+)\)")
            new_master = int(m.group(1))
            s.wait_for_log(r"Upgrade: the new master .* is ready; retiring", timeout=20)
            assert s.proc.wait(15) == 0
            wait_until(lambda: get(s, "/").body.startswith(b"v2"), timeout=10)
            time.sleep(0.3)
        finally:
            load.stop()
            try:
                os.kill(new_master, signal.SIGTERM)
                wait_until(lambda: not psutil.pid_exists(new_master)
                           or psutil.Process(new_master).status() == psutil.STATUS_ZOMBIE, timeout=15)
            except (ProcessLookupError, UnboundLocalError):
                pass
        assert new_master != old_master
        assert load.lost == [] and load.ok > 100


def test_failed_usr2_upgrade_keeps_the_old_master_with_its_pidfile_and_control_socket(tmp_path):
    version, pidfile, ctl = tmp_path / "VERSION", tmp_path / "p.pid", tmp_path / "c.ctl"
    version.write_text("v1")
    with running("versioned:app", "--workers", "1", "--max-boot-failures", "1",
                 "--pidfile", str(pidfile), "--control-socket", str(ctl),
                 env={"VERSION_FILE": str(version)}) as s:
        version.write_text("broken-upgrade")
        s.signal(signal.SIGUSR2)
        s.wait_for_log(r"Upgrade failed", timeout=20)
        wait_until(lambda: pidfile.exists() and int(pidfile.read_text()) == s.proc.pid)
        out = subprocess.run([sys.executable, "-m", "prefork", "status", "--json",
                              "--control-socket", str(ctl)], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        assert get(s, "/").body.startswith(b"v1")
        # ... and a later upgrade with the fix goes through, handing over the pidfile.
        version.write_text("v2")
        s.signal(signal.SIGUSR2)
        m = s.wait_for_log(r"Upgrade: the new master \(pid (\d+)\) is ready", timeout=20)
        new = int(m.group(1))
        try:
            assert s.proc.wait(15) == 0
            assert int(pidfile.read_text()) == new
            assert get(s, "/").body.startswith(b"v2")
        finally:
            os.kill(new, signal.SIGTERM)
            wait_until(lambda: not psutil.pid_exists(new)
                       or psutil.Process(new).status() == psutil.STATUS_ZOMBIE, timeout=15)
        assert not pidfile.exists()



def _wait_gone(pid: int, timeout: float = 15) -> None:
    wait_until(lambda: not psutil.pid_exists(pid)
               or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, timeout=timeout)


def test_usr2_with_chdir_starts_the_new_master_where_the_first_was_started(tmp_path):
    # The new master was exec'd in the chdir directory, so -c conf.toml,
    # --pidfile and --control-socket named other files, or none: the
    # upgrade failed. HUP read conf.toml from there too, and USR1 reopened
    # a relative --errorlog there.
    start, app = tmp_path / "start", tmp_path / "app"
    start.mkdir()
    app.mkdir()
    (start / "conf.toml").write_text("workers = 2\n")
    errorlog = start / "error.log"
    with running("testapp:app", "-c", "conf.toml", "--chdir", str(app), "--pidfile", "p.pid",
                 "--control-socket", "c.ctl", "--errorlog", "error.log", cwd=start,
                 log_files=[errorlog], one_worker=False) as s:
        assert int((start / "p.pid").read_text()) == s.proc.pid
        s.signal(signal.SIGHUP)
        s.wait_for_log(r"reload: the canary booted")
        s.signal(signal.SIGUSR1)
        s.wait_for_log(r"Handling signal: USR1")
        assert not (app / "error.log").exists()
        s.signal(signal.SIGUSR2)
        m = s.wait_for_log(r"Upgrade: the new master \(pid (\d+)\) is ready", timeout=20)
        new = int(m.group(1))
        try:
            assert s.proc.wait(15) == 0
            assert int((start / "p.pid").read_text()) == new
            assert len(psutil.Process(new).children()) == 2       # conf.toml's workers
            assert get(s, "/hello").status == 200
            out = subprocess.run([sys.executable, "-m", "prefork", "status", "--json",
                                  "--control-socket", "c.ctl"], cwd=start,
                                 capture_output=True, text=True, timeout=30)
            assert out.returncode == 0 and f'"pid": {new}' in out.stdout, out.stderr
        finally:
            os.kill(new, signal.SIGTERM)
            _wait_gone(new)
        assert not (start / "p.pid").exists()
        assert sorted(p.name for p in app.iterdir()) == []


def test_a_new_master_that_never_gets_ready_is_killed_and_the_old_one_goes_on(tmp_path):
    # A new master whose preloaded import hung was waited for forever: no
    # later upgrade could start, and `prefork upgrade` never got an answer.
    hang, pidfile, ctl = tmp_path / "hang", tmp_path / "p.pid", tmp_path / "c.ctl"
    with running("hangboot:app", "--preload", "--upgrade-timeout", "2", "--pidfile", str(pidfile),
                 "--control-socket", str(ctl), env={"HANG_FILE": str(hang)}) as s:
        hang.touch()
        client = subprocess.Popen([sys.executable, "-m", "prefork", "upgrade",
                                   "--control-socket", str(ctl)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            m = s.wait_for_log(r"Upgrade: started a new master \(pid (\d+)\)")
            hung = int(m.group(1))
            wait_until(lambda: pidfile.read_text().strip() == str(hung))   # it took it over
            s.wait_for_log(r"is not ready after 2 s \(upgrade_timeout\); stopping it",
                           timeout=10)
            s.wait_for_log(r"did not exit on TERM; killing it", timeout=10)
            s.wait_for_log(r"Upgrade failed: the new master \(pid \d+\) was not ready within "
                           r"2 s \(upgrade_timeout\)", timeout=10)
            _, err = client.communicate(timeout=10)
        finally:
            client.kill()
            client.wait()
        assert client.returncode == 1 and "was not ready within 2 s (upgrade_timeout)" in err
        _wait_gone(hung, 5)
        assert int(pidfile.read_text()) == s.proc.pid
        assert get(s, "/").body == b"ok"
        # Not in progress any more: the next upgrade goes through.
        hang.unlink()
        s.signal(signal.SIGUSR2)
        m = s.wait_for_log(r"Upgrade: the new master \(pid (\d+)\) is ready", timeout=20)
        new = int(m.group(1))
        try:
            assert s.proc.wait(15) == 0
            assert int(pidfile.read_text()) == new
        finally:
            os.kill(new, signal.SIGTERM)
            _wait_gone(new)

def test_max_requests_recycles_workers_one_at_a_time():
    with running("testapp:app", "--workers", "2", "--max-requests", "20",
                 "--max-requests-jitter", "5") as s:
        first = set(wait_until(lambda: len(workers_of(s)) == 2 and workers_of(s)))
        load = LoadLoop(s, "/pid", threads=2)
        try:
            wait_until(lambda: len({b for b in load.bodies}) >= 5, timeout=20)
        finally:
            load.stop()
        assert load.lost == []
        assert "served" in s.log and "(max_requests)" in s.log
        assert not first & set(workers_of(s)) or len({b for b in load.bodies}) >= 5


def test_max_worker_memory_replaces_a_worker_gracefully():
    with running("testapp:control", "--workers", "1", "--max-worker-memory", "100") as s:
        hog = int(get(s, "/hoard").body)
        s.wait_for_log(rf"Replacing worker 1 \(pid {hog}\): uses \d+ MiB \(max_worker_memory\)",
                       timeout=10)
        wait_until(lambda: (w := workers_of(s)) and hog not in w, timeout=10)
        assert int(get(s, "/pid").body) != hog


def test_a_busy_worker_leaves_new_connections_to_an_idle_one():
    # One thread each: while worker A sleeps, every new connection must go to
    # worker B at once rather than queue behind A's request (gunicorn #3433).
    with running("testapp:app", "--workers", "2", "--threads", "1") as s:
        wait_until(lambda: len(workers_of(s)) == 2)
        sleeper = s.connect()
        try:
            sleeper.sendall(b"GET /sleep?s=3 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
            pids, slowest = set(), 0.0
            for _ in range(30):
                t0 = time.monotonic()
                pids.add(int(get(s, "/pid").body))
                slowest = max(slowest, time.monotonic() - t0)
            assert len(pids) == 1 and slowest < 1.0, (pids, slowest)
            assert HTTPReader(sleeper).read_response().body == b"slept"
        finally:
            sleeper.close()


def test_a_burst_of_connections_is_shared_between_workers():
    # wrk, a proxy's keep-alive pool or a load balancer opens its connections
    # at once, and kept-alive connections stay with the worker that accepted
    # them: if one worker took the whole burst, the other would idle for as
    # long as they last (gunicorn #3433). When each worker took up to 64 per
    # wake-up, one of two often got 25-31 of 32; taking no more than it has
    # idle threads, the other worker is woken for the rest. (A burst that is
    # all queued before any worker runs still goes to the first one woken:
    # with EPOLLEXCLUSIVE only its epoll saw the listener become readable.)
    with running("testapp:app", "--workers", "2", "--threads", "4") as s:
        wait_until(lambda: len(workers_of(s)) == 2)
        time.sleep(0.5)     # both workers waiting on the listener
        per_worker: dict[int, int] = {}
        for _ in range(5):
            socks = []
            try:
                for _ in range(32):
                    c = socket.socket()
                    c.setblocking(False)
                    c.connect_ex((s.host, s.port))
                    socks.append(c)
                for c in socks:
                    c.setblocking(True)
                    c.settimeout(10)
                    c.sendall(b"GET /pid HTTP/1.1\r\nHost: x\r\n\r\n")
                for c in socks:
                    pid = int(HTTPReader(c).read_response().body)
                    per_worker[pid] = per_worker.get(pid, 0) + 1
            finally:
                for c in socks:
                    c.close()
            time.sleep(0.3)
        # 160 connections in all; each worker got a fair part of them.
        assert len(per_worker) == 2 and min(per_worker.values()) >= 48, per_worker


def test_unix_socket_and_tcp_at_once(tmp_path):
    path = tmp_path / "prefork.sock"
    with running("testapp:app", "--bind", f"unix:{path}", "--unix-socket-mode", "660") as s:
        assert oct(path.stat().st_mode & 0o777) == "0o660"
        with socket.socket(socket.AF_UNIX) as u:
            u.settimeout(5)
            u.connect(str(path))
            u.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert HTTPReader(u).read_response().body == b"Hello, World!"
        assert get(s, "/hello").status == 200
    assert not path.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_unix_socket_owner(tmp_path):
    import grp
    import pwd
    path = tmp_path / "owned.sock"
    group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
    with running("testapp:app", "--bind", f"unix:{path}", "--unix-socket-owner",
                 f"nobody:{group}"):
        st = path.stat()
        assert st.st_uid == pwd.getpwnam("nobody").pw_uid
        assert st.st_gid == grp.getgrnam(group).gr_gid


def test_live_unix_socket_is_refused_and_stale_one_replaced(tmp_path):
    path = tmp_path / "s.sock"
    with running("testapp:app", "--bind", f"unix:{path}") as s:
        proc = subprocess.run([sys.executable, "-m", "prefork", "start", "testapp:app", "--bind",
                               f"unix:{path}"], capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent / "apps")))
        assert proc.returncode == 1
        assert "is in use by a running server" in proc.stderr
        assert get(s, "/hello").status == 200
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()   # the file stays, nobody listens
    with running("testapp:app", "--bind", f"unix:{path}") as s:
        with socket.socket(socket.AF_UNIX) as u:
            u.connect(str(path))
            u.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert HTTPReader(u).read_response().status == 200


def test_ipv6_bind():
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not configured on this host")
    with running("testapp:app", "--bind", "[::1]:0") as s:
        m = s.wait_for_log(r"Listening at: http://\[::1\]:(\d+)")
        with socket.create_connection(("::1", int(m.group(1))), timeout=5) as c:
            c.sendall(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            assert HTTPReader(c).read_response().body == b"Hello, World!"


def test_hooks_are_called_and_a_raising_hook_is_harmless(tmp_path):
    record = tmp_path / "hooks.log"
    hooks = {name: f"hookrec:{name}" for name in (
        "on_starting", "when_ready", "pre_fork", "post_fork", "post_worker_init",
        "pre_request", "post_request", "child_exit", "worker_exit", "on_exit", "nworkers_changed")}
    args = []
    for name, value in hooks.items():
        args += [f"--{name.replace('_', '-')}", value]
    with running("testapp:app", *args, env={"HOOK_RECORD": str(record)}) as s:
        assert get(s, "/hello").status == 200
        s.signal(signal.SIGTTIN)
        wait_until(lambda: "nworkers_changed" in record.read_text())
        s.wait_for_log(r"the pre_request hook raised|a request hook raised")
    text = record.read_text()
    for name in hooks:
        assert name in text, name
    assert "post_request GET /hello 200 OK" in text


def test_on_reload_worker_int_and_worker_abort_hooks(tmp_path):
    record = tmp_path / "hooks.log"
    env = {"HOOK_RECORD": str(record)}
    with running("testapp:app", "--on-reload", "hookrec:on_reload", "--worker-int",
                 "hookrec:worker_int", env=env) as s:
        s.signal(signal.SIGHUP)
        s.wait_for_log(r"reload: the canary booted")
        wait_until(lambda: record.exists() and "on_reload 1" in record.read_text())
        s.signal(signal.SIGINT)
        s.proc.wait(10)
    assert "worker_int" in record.read_text()
    record.unlink()
    with running("stallapp:app", "--timeout", "2", "--worker-abort", "hookrec:worker_abort",
                 env=env) as s:
        stuck = int(get(s, "/stall-loop").body)
        wait_until(lambda: record.exists() and f"worker_abort {stuck}" in record.read_text(),
                   timeout=20)


def test_a_hook_that_cannot_be_imported_stops_start_up():
    proc = subprocess.run([sys.executable, "-m", "prefork", "start", "testapp:app", "--bind",
                           "127.0.0.1:0", "--post-fork", "no_such_module:fn"],
                          capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent / "apps")))
    assert proc.returncode == 2
    assert "hook post_fork='no_such_module:fn' cannot be loaded" in proc.stderr


def test_preload_imports_the_app_once_in_the_master(tmp_path):
    marker = tmp_path / "imports"
    with running("importcount:app", "--workers", "2", "--preload",
                 env={"IMPORT_RECORD": str(marker)}) as s:
        wait_until(lambda: len(workers_of(s)) == 2)
        for _ in range(10):
            assert get(s, "/").status == 200
        assert marker.read_text().split() == [str(s.proc.pid)]


def test_without_preload_each_worker_imports_the_app(tmp_path):
    marker = tmp_path / "imports"
    with running("importcount:app", "--workers", "2", env={"IMPORT_RECORD": str(marker)}) as s:
        pids = wait_until(lambda: len(workers_of(s)) == 2 and workers_of(s))
        wait_until(lambda: len(marker.read_text().split()) == 2)
        assert sorted(map(int, marker.read_text().split())) == pids


def test_process_titles_name_master_and_workers():
    with running("testapp:app", "--workers", "2") as s:
        pids = wait_until(lambda: len(workers_of(s)) == 2 and workers_of(s))
        assert psutil.Process(s.proc.pid).cmdline()[0].startswith("prefork: master [testapp:app]")
        titles = sorted(psutil.Process(p).cmdline()[0] for p in pids)
        assert titles[0].startswith("prefork: worker ") and titles[0].endswith("[testapp:app]")


def test_live_server_from_python():
    import urllib.request

    from prefork.testing import live_server

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"embedded"]

    with live_server(app, threads=2) as url:
        with urllib.request.urlopen(url + "/") as r:
            assert r.read() == b"embedded"
    with pytest.raises(OSError):
        urllib.request.urlopen(url + "/", timeout=2)


def test_stacks_of_a_hung_worker_reach_the_error_log_file(tmp_path):
    # faulthandler wrote to fd 2: /dev/null under --daemon, not the --errorlog
    # file. A worker hung while importing had no stacks at all, and its
    # death was named SIGIOT.
    errorlog = tmp_path / "error.log"
    with running("stallapp:app", "--timeout", "2", "--errorlog", str(errorlog),
                 log_files=[errorlog]) as s:
        get(s, "/stall-loop")
        wait_until(lambda: "stallapp.py" in errorlog.read_text(), timeout=15)
        wait_until(lambda: "Worker 2" in errorlog.read_text() and " ready" in
                   errorlog.read_text().split("Worker 2", 1)[1], timeout=15)
        # Rotated: after USR1 the dumps follow the new file (faulthandler had
        # kept the old descriptor, closed by the reopen).
        errorlog.rename(tmp_path / "error.log.1")
        s.signal(signal.SIGUSR1)
        wait_until(lambda: errorlog.exists() and "Handling signal: USR1" in errorlog.read_text())
        time.sleep(0.3)                      # the workers reopen on the USR1 passed on
        get(s, "/stall-loop")
        wait_until(lambda: "stallapp.py" in errorlog.read_text(), timeout=15)
    boot_log = tmp_path / "boot.log"
    srv = ServerProcess(["start", "slowboot:app", "--bind", "127.0.0.1:0", "--workers", "1",
                         "--timeout", "1", "--max-boot-failures", "1", "--errorlog", str(boot_log),
                         "--control-socket", str(tmp_path / "ctl")],
                        wait_ready=False, wait_listening=False)
    try:
        srv.proc.wait(30)
        text = boot_log.read_text()
        assert 'File "' in text and "slowboot.py" in text, text
        assert "SIGABRT" in text and "SIGIOT" not in text, text
    finally:
        srv.stop()


def test_a_stopping_server_refuses_reload_upgrade_and_more_workers(tmp_path):
    # TERM then HUP booted a canary that the stop then killed; TERM then USR2
    # left a new master serving after the "stop".
    with running("testapp:app", "--workers", "1", "--graceful-timeout", "10") as s:
        ctl = s.args[s.args.index("--control-socket") + 1]
        c = s.connect()
        c.sendall(b"GET /sleep?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.3)
        s.signal(signal.SIGTERM)
        s.wait_for_log(r"graceful stop")
        for sig in (signal.SIGHUP, signal.SIGUSR2, signal.SIGTTIN):
            s.signal(sig)
            time.sleep(0.2)
        for cmd in ("reload", "upgrade", "add_workers"):
            try:
                answer = control.request(ctl, cmd, 5)
            except ConnectionError:
                continue        # the master may be gone already
            assert answer["ok"] is False and "stopping" in answer["error"], answer
        assert HTTPReader(c).read_response().body == b"slept"
        c.close()
        assert s.proc.wait(15) == 0
        log = s.log
        assert "Ignoring SIGHUP: the server is stopping" in log
        assert "Ignoring SIGUSR2" in log and "Ignoring SIGTTIN" in log
        assert "booting a canary" not in log and "Upgrade: started" not in log
        assert log.count("Booting worker") == 1


def test_add_workers_is_capped_by_the_scoreboard():
    with running("testapp:app", "--workers", "1", "--threads", "1") as s:
        ctl = s.args[s.args.index("--control-socket") + 1]
        answer = control.request(ctl, "add_workers", 10, n=1000)
        assert answer == {"ok": True, "workers": 32}      # a 64-slot scoreboard, halved
        s.wait_for_log(r"Cannot run 1001 workers: at most 32")
        wait_until(lambda: len(workers_of(s)) == 32, timeout=40)
        control.request(ctl, "remove_workers", 10, n=31)
        wait_until(lambda: len(workers_of(s)) == 1, timeout=30)
        assert "scoreboard is full" not in s.log


def test_hup_loads_the_new_configurations_hooks(tmp_path):
    record = tmp_path / "record"
    conf = tmp_path / "prefork.toml"
    conf.write_text("workers = 1\n")
    with running("testapp:app", "-c", str(conf), one_worker=False,
                 env={"HOOK_RECORD": str(record)}) as s:
        assert get(s, "/hello").status == 200
        assert not record.exists()
        conf.write_text('workers = 1\npost_request = "hookrec:post_request"\n')
        s.signal(signal.SIGHUP)
        s.wait_for_log(r"reload: the canary booted")
        wait_until(lambda: (get(s, "/hello").status == 200 and record.exists()
                            and "post_request GET /hello" in record.read_text()), timeout=15)
        # A hook that cannot be loaded fails the reload, not the master.
        conf.write_text('workers = 1\npost_request = "nosuchmodule:hook"\n')
        s.signal(signal.SIGHUP)
        s.wait_for_log(r"reload failed: hook post_request='nosuchmodule:hook' cannot be loaded")
        assert get(s, "/hello").status == 200


def test_replacements_that_cannot_boot_never_stop_healthy_workers(tmp_path):
    # A dependency outage during max_requests recycling: before, the
    # replacements' boot failures reached max_boot_failures and the master
    # stopped the healthy workers too.
    version = tmp_path / "VERSION"
    version.write_text("v1")
    with running("versioned:app", "--workers", "2", "--max-requests", "5",
                 "--max-boot-failures", "2", env={"VERSION_FILE": str(version)}) as s:
        ctl = s.args[s.args.index("--control-socket") + 1]
        version.write_text("broken-2")
        load = LoadLoop(s, "/", threads=2)
        try:
            s.wait_for_log(r"failed to boot \d+ times in a row .*still serving", timeout=20)
            time.sleep(1)
            assert s.proc.poll() is None
            status = control.request(ctl, "status", 5)
            assert status["master"]["boot_failures"] >= 2
            assert "failed to load" in status["master"]["last_boot_error"]
            version.write_text("v3")
            wait_until(lambda: get(s, "/").body.startswith(b"v3"), timeout=30)
        finally:
            load.stop()
        assert load.lost == []
        assert all(b.startswith((b"v1", b"v3")) for b in load.bodies)


def test_reloads_under_kept_alive_load_lose_no_request():
    # Clients that do not retry: every request sent on a kept-alive
    # connection must be answered. Before, a retiring worker closed idle
    # kept-alive connections at once, and one whose response had promised
    # keep-alive just before the stop: about 1 request in 5,000 was lost
    # to a reset or an EOF.
    with running("testapp:app", "--workers", "2", "--threads", "4") as s:
        load = LoadLoop(s, "/hello", threads=6, keepalive_only=True, strict=True)
        try:
            for _ in range(5):
                time.sleep(1.0)
                s.signal(signal.SIGHUP)
            time.sleep(1.5)
        finally:
            load.stop()
        assert load.ok > 1000
        assert load.lost == [], f"{len(load.lost)} of {load.ok} lost: {load.lost[:3]}"
        assert s.log.count("reload: the canary booted") >= 3


def test_a_failed_upgrade_leaves_the_unix_socket_the_old_master_serves_on(tmp_path):
    # The failed successor's clean-up unlinked the inherited unix socket:
    # the old master went on serving on a socket nobody could connect to.
    version, path = tmp_path / "VERSION", tmp_path / "app.sock"
    version.write_text("v1")

    def over_unix() -> bytes:
        with socket.socket(socket.AF_UNIX) as u:
            u.settimeout(5)
            u.connect(str(path))
            u.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            return HTTPReader(u).read_response().body

    with running("versioned:app", "--bind", f"unix:{path}", "--workers", "1",
                 "--max-boot-failures", "1", env={"VERSION_FILE": str(version)}) as s:
        version.write_text("broken-upgrade")
        s.signal(signal.SIGUSR2)
        s.wait_for_log(r"Upgrade failed", timeout=20)
        assert path.exists()
        assert over_unix().startswith(b"v1")
    assert not path.exists()        # the last master to serve on it removes it


def test_request_timeout_replacements_respect_max_recycling():
    # Every worker stuck at once (a database that hangs): they were all
    # replaced at once, whatever max_recycling said.
    with running("testapp:app", "--workers", "3", "--threads", "1", "--request-timeout", "1",
                 "--graceful-timeout", "8", "--max-recycling", "1") as s:
        wait_until(lambda: len(workers_of(s)) == 3)
        stuck = [s.connect() for _ in range(3)]
        try:
            for c in stuck:
                c.sendall(b"GET /sleep?s=6 HTTP/1.1\r\nHost: x\r\n\r\n")
                time.sleep(0.2)
            # (One stuck request may queue behind another on the same worker.)
            wait_until(lambda: s.log.count("Replacing worker") >= 2, timeout=20)
            time.sleep(1)
            # One at a time: each replacement is ready (and its old worker
            # retired) before the next starts.
            events = re.findall(r"Replacing worker|Worker \d+ \(pid \d+\) ready", s.log)
            replacing = [i for i, e in enumerate(events) if e == "Replacing worker"]
            for a, b in zip(replacing, replacing[1:], strict=False):
                assert "ready" in " ".join(events[a + 1:b]), events
        finally:
            for c in stuck:
                c.close()
