"""USR1 under load: logrotate's ``postrotate``, and what happens when the
reopen cannot succeed.

The log directory gone, or the log path not a writable file, must never cost
a request: the reopen fails, the failure is logged to the file still open, and
serving goes on. (The tests run as root, for whom a mode of 0500 stops no
write: a *directory* in the log file's place is what makes ``open()`` fail
whoever runs the test.)
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.chaos.kit import ChaosLoad, chaos_server
from tests.server import wait_until


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.is_file() else 0


def _settled(path: Path, quiet: float = 0.6) -> bool:
    """``path`` stopped growing: every process writing to it has let it go."""
    size = path.stat().st_size
    time.sleep(quiet)
    return path.stat().st_size == size


def _reopen_failures(error_log: Path) -> tuple[int, int]:
    """How many times the error log and the access log could not be reopened
    (on each USR1: by the master and both workers, by both workers)."""
    text = error_log.read_text()
    return text.count("cannot reopen the error log"), text.count("cannot reopen the access log")


def _logs(tmp_path: Path) -> tuple[Path, Path, Path, list[str]]:
    logdir = tmp_path / "log"
    logdir.mkdir()
    error, access = logdir / "error.log", logdir / "access.log"
    args = ["--errorlog", str(error), "--accesslog", str(access)]
    return logdir, error, access, args


@pytest.mark.timeout(60)
def test_usr1_after_logrotate_moved_the_files_reopens_them_under_load(tmp_path):
    logdir, error, access, args = _logs(tmp_path)
    with chaos_server("--workers", "2", "--threads", "4", *args, log_files=[error]) as s:
        with ChaosLoad(s.host, s.port, threads=6) as load:
            load.wait_for_ok(100)
            wait_until(lambda: _lines(access) >= 50)
            for n in (1, 2):        # two rotations: the second reopens files the first made
                error.rename(logdir / f"error.log.{n}")
                access.rename(logdir / f"access.log.{n}")
                s.signal(signal.SIGUSR1)
                wait_until(lambda: "Handling signal: USR1" in
                           (error.read_text() if error.exists() else ""), timeout=10)
                wait_until(lambda: _lines(access) >= 50, timeout=10)
                # The rotated file is let go of by the master and both workers.
                wait_until(lambda n=n: _settled(logdir / f"access.log.{n}"), timeout=10)
            load.wait_for_ok(100)
        load.assert_clean(min_ok=500)
        time.sleep(0.3)             # the access-log writer's last flush
        assert _lines(access) + _lines(logdir / "access.log.1") + _lines(logdir / "access.log.2") \
            >= load.stats.ok


@pytest.mark.timeout(60)
def test_usr1_with_the_log_directory_gone_or_unwritable_keeps_serving(tmp_path):
    logdir, error, access, args = _logs(tmp_path)
    moved = tmp_path / "log.moved"
    with chaos_server("--workers", "2", "--threads", "4", *args, log_files=[error]) as s:
        with ChaosLoad(s.host, s.port, threads=6) as load:
            load.wait_for_ok(100)
            # 1. The whole directory disappears (moved away, as an rm -r of
            #    open files would leave them): the reopen fails, the old
            #    files go on receiving lines.
            logdir.rename(moved)
            s.signal(signal.SIGUSR1)
            wait_until(lambda: _reopen_failures(moved / "error.log") == (3, 2), timeout=10)
            assert "No such file or directory" in (moved / "error.log").read_text()
            grown = _lines(moved / "access.log")
            load.wait_for_ok(300)
            wait_until(lambda: _lines(moved / "access.log") > grown + 100, timeout=10)
            # 2. The directory is back but the log paths cannot be opened.
            logdir.mkdir()
            error.mkdir()
            access.mkdir()
            s.signal(signal.SIGUSR1)
            wait_until(lambda: _reopen_failures(moved / "error.log") == (6, 4), timeout=10)
            assert "Is a directory" in (moved / "error.log").read_text()
            load.wait_for_ok(300)
            # 3. Fixed: the next USR1 opens fresh files and they fill.
            error.rmdir()
            access.rmdir()
            s.signal(signal.SIGUSR1)
            wait_until(lambda: error.is_file() and "Handling signal: USR1" in error.read_text(),
                       timeout=10)
            wait_until(lambda: _lines(access) >= 50, timeout=10)
            load.wait_for_ok(100)
        load.assert_clean(min_ok=700)
