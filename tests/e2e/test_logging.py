"""Error log and access log: destinations, formats, escaping, reopen on USR1."""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import signal
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.server import get, request, running

NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = grp.getgrnam("nogroup").gr_gid


def wait_for_text(path, pattern, timeout=10.0):
    rx = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and rx.search(path.read_text()):
            return path.read_text()
        time.sleep(0.05)
    raise AssertionError(f"{pattern!r} not in {path}: {path.read_text() if path.exists() else '(missing)'}")


def test_default_access_log_format(tmp_path):
    access = tmp_path / "access.log"
    with running("testapp:app", "--accesslog", str(access)) as s:
        get(s, "/hello?x=1", "Referer: http://ref.example/\r\nUser-Agent: probe/1.0\r\n")
        text = wait_for_text(access, r"GET /hello")
    line = text.strip().splitlines()[-1]
    assert re.fullmatch(r'127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
                        r'"GET /hello\?x=1 HTTP/1\.1" 200 13 "http://ref\.example/" "probe/1\.0"', line), line


def test_custom_atoms_and_escaping(tmp_path):
    access = tmp_path / "access.log"
    fmt = '%(m)s %(U)s %(q)s %(s)s %(B)s %(D)s %({X-Trace}i)s %({Content-Type}o)s %(p)s'
    with running("testapp:app", "--accesslog", str(access), "--access-log-format", fmt) as s:
        get(s, "/hello?a=b", 'X-Trace: evil" 200 0 "forged\\\r\n')
        text = wait_for_text(access, r"GET /hello")
    line = text.strip().splitlines()[-1]
    assert line.startswith("GET /hello a=b 200 13 ")
    assert 'evil\\x22 200 0 \\x22forged\\x5c' in line
    assert "text/plain" in line and re.search(r"<\d+>$", line)


def test_json_access_log(tmp_path):
    access = tmp_path / "access.jsonl"
    with running("testapp:app", "--accesslog", str(access), "--access-log-format", "json") as s:
        get(s, "/stream?n=3", 'User-Agent: a "quoted" agent\r\n')
        text = wait_for_text(access, r"/stream")
    record = json.loads(text.strip().splitlines()[-1])
    assert record["method"] == "GET" and record["path"] == "/stream?n=3"
    assert record["status"] == 200 and record["bytes"] == len(b"chunk 0\nchunk 1\nchunk 2\n")
    assert record["user_agent"] == 'a "quoted" agent' and record["duration_us"] >= 0


def test_bad_access_log_format_is_refused_at_start():
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "prefork", "start", "--access-log-format", "%(Z)s"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "unknown access log atom %(Z)s" in proc.stderr


def test_usr1_reopens_error_and_access_logs(tmp_path):
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    with running("testapp:app", "--accesslog", str(access), "--errorlog", str(errors),
                 "--workers", "2", log_files=[errors]) as s:
        get(s, "/hello")
        wait_for_text(access, "GET /hello")
        access.rename(tmp_path / "access.log.1")
        errors.rename(tmp_path / "error.log.1")
        s.signal(signal.SIGUSR1)
        wait_for_text(errors, r"USR1")   # the master wrote to the new file
        time.sleep(0.5)                  # the workers got it too
        for _ in range(4):
            get(s, "/hello?after=rotate")
        wait_for_text(access, r"after=rotate")
    assert "after=rotate" not in (tmp_path / "access.log.1").read_text()
    assert "Listening at" in (tmp_path / "error.log.1").read_text()


def test_access_log_off_by_default_and_error_log_on_stderr():
    with running("testapp:app") as s:
        request(s, b"GET /hello HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        time.sleep(0.3)
        assert "GET /hello" not in s.log
        assert "Listening at" in s.log


def test_error_log_to_syslog_over_udp():
    import socket as socket_mod
    with socket_mod.socket(socket_mod.AF_INET, socket_mod.SOCK_DGRAM) as receiver:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(10)
        port = receiver.getsockname()[1]
        with running("testapp:app", "--syslog-addr", f"udp://127.0.0.1:{port}",
                     "--syslog-facility", "local3"):
            seen = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not any(b"Listening at" in m for m in seen):
                seen.append(receiver.recv(4096))
    line = next(m for m in seen if b"Listening at" in m)
    # <PRI> = facility local3 (19) * 8 + severity info (6) = 158
    assert line.startswith(b"<158>prefork: ")


def test_usr1_with_the_log_directory_gone_keeps_master_workers_and_lines(tmp_path):
    # logrotate misconfigured, or the directory moved: before, the master's
    # reopen raised FileNotFoundError out of its signal handling and it died;
    # a failed access-log reopen killed the writer thread for good.
    logdir = tmp_path / "logs"
    logdir.mkdir()
    error, access = logdir / "error.log", logdir / "access.log"
    moved = tmp_path / "logs.old"
    with running("testapp:app", "--workers", "2", "--errorlog", str(error),
                 "--accesslog", str(access), log_files=[error, moved / "error.log"]) as s:
        logdir.rename(moved)
        s.signal(signal.SIGUSR1)
        s.wait_for_log(r"cannot reopen the error log", timeout=10)
        time.sleep(0.5)
        for _ in range(20):
            assert get(s, "/hello").status == 200
        assert s.proc.poll() is None
        # The lines went on to the files open before (now in the moved directory).
        old_access = moved / "access.log"
        deadline = time.monotonic() + 10
        while old_access.read_text().count("GET /hello HTTP") < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert old_access.read_text().count("GET /hello HTTP") == 20
        assert "cannot reopen the access log" in (moved / "error.log").read_text()
        # The directory back, the next USR1 opens new files again.
        logdir.mkdir()
        s.signal(signal.SIGUSR1)
        time.sleep(0.5)
        assert get(s, "/hello?after").status == 200
        wait_for_text(access, r"GET /hello\?after")
        wait_for_text(error, r"Handling signal: USR1")


@pytest.mark.skipif(os.geteuid() != 0, reason="workers switch user only when started as root")
def test_workers_running_as_another_user_can_open_and_reopen_the_logs():
    # Started as root with --user: the workers could not create the access
    # log in a directory only root may write (they failed to boot), and
    # after a rotation the master recreated the error log as root 0644, so
    # the workers could not reopen it and went on writing to the old file.
    # Python lives under /root (0700) here: --preload, so that nobody has to
    # import the app's modules, and a log directory outside pytest's 0700 ones.
    logs = Path(tempfile.mkdtemp(prefix="prefork-logs-"))
    try:
        logs.chmod(0o755)
        errorlog, access = logs / "error.log", logs / "access.log"
        with running("testapp:app", "--preload", "--user", "nobody", "--group", "nogroup",
                     "--errorlog", str(errorlog), "--accesslog", str(access),
                     log_files=[errorlog]) as s:
            pid = get(s, "/pid").body.decode()
            assert psutil.Process(int(pid)).uids().real == NOBODY
            wait_for_text(access, r"GET /pid")
            errorlog.rename(logs / "error.log.1")
            access.rename(logs / "access.log.1")
            s.signal(signal.SIGUSR1)
            wait_for_text(errorlog, r"Handling signal: USR1")
            time.sleep(0.5)                  # the workers reopen on the USR1 passed on
            assert get(s, "/error").status == 500
            wait_for_text(errorlog, rf"\[{pid}\] \[ERROR\] Error handling request GET /error")
            wait_for_text(access, r"GET /error")
            rotated = (logs / "error.log.1").read_text()
            assert "cannot reopen" not in rotated + errorlog.read_text()
            assert "boom" not in rotated
            for f in (errorlog, access):
                assert (f.stat().st_uid, f.stat().st_gid) == (NOBODY, NOGROUP)
    finally:
        shutil.rmtree(logs, ignore_errors=True)
