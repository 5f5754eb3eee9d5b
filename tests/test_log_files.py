"""Log files the workers must be able to open when they run as another user."""

from __future__ import annotations

import grp
import logging
import os
import pwd

import pytest

from prefork.daemon import give_files_to
from prefork.log import Reopenable, give_log_files_to_workers

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")

NOBODY = pwd.getpwnam("nobody").pw_uid
NOGROUP = grp.getgrnam("nogroup").gr_gid
NOBODY_GROUP = pwd.getpwnam("nobody").pw_gid


def owner(path) -> tuple[int, int]:
    st = os.lstat(path)
    return st.st_uid, st.st_gid


def test_missing_and_root_owned_files_are_created_and_given_to_the_user(tmp_path):
    # The master, root, recreated a rotated error log as root 0644: workers
    # running as `user` could not reopen it (nor create the access log).
    missing, rotated = tmp_path / "access.log", tmp_path / "error.log"
    rotated.write_text("")
    give_files_to([str(missing), str(rotated)], "nobody", "nogroup")
    assert owner(missing) == owner(rotated) == (NOBODY, NOGROUP)
    assert missing.stat().st_mode & 0o777 == 0o644 & ~_umask()
    assert rotated.read_text() == ""


def test_the_group_alone_and_numeric_ids(tmp_path):
    f = tmp_path / "a.log"
    give_files_to([str(f)], "", str(NOGROUP))
    assert owner(f) == (0, NOGROUP)
    give_files_to([str(f)], str(NOBODY), "")
    assert owner(f) == (NOBODY, NOBODY_GROUP)


def test_a_symlink_is_never_followed(tmp_path):
    # A worker that can write to the log directory must not make root chown
    # what a link points at.
    target = tmp_path / "shadow"
    target.write_text("secret")
    link = tmp_path / "error.log"
    link.symlink_to(target)
    give_files_to([str(link)], "nobody", "nogroup")
    assert owner(target) == (0, 0) and owner(link) == (0, 0)


def test_nothing_happens_without_user_or_group(tmp_path):
    f = tmp_path / "a.log"
    give_files_to([str(f)], "", "")
    assert not f.exists()


def test_a_missing_directory_or_unknown_user_is_logged_not_raised(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="prefork.error"):
        give_files_to([str(tmp_path / "gone" / "a.log")], "nobody", "")
        give_files_to([str(tmp_path / "b.log")], "no-such-user-here", "")
    assert "No such file or directory" in caplog.text and "no-such-user-here" in caplog.text
    assert not (tmp_path / "b.log").exists()


def test_the_error_log_handlers_and_the_access_log_are_given(tmp_path, monkeypatch):
    logger = logging.getLogger("prefork")
    monkeypatch.chdir(tmp_path)
    handler = Reopenable("error.log")
    logger.addHandler(handler)
    try:
        (tmp_path / "error.log").unlink()          # rotated away
        give_log_files_to_workers("access.log", "nobody", "nogroup")
        give_log_files_to_workers("-", "nobody", "nogroup")     # stdout: nothing to do
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert owner(tmp_path / "error.log") == owner(tmp_path / "access.log") == (NOBODY, NOGROUP)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["access.log", "error.log"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.timeout(60)
def test_a_reload_that_moves_the_access_log_gives_the_new_file(tmp_path):
    # A real server whose workers run as nobody; the HUP names a new
    # accesslog, which must be the workers' before they try to open it.
    import shutil
    import subprocess
    import sys
    import tempfile
    import time

    from tests.server import ROOT, get, running
    try:
        probe = subprocess.run([sys.executable, "-c", "import hashlib, prefork"], cwd="/",
                               env={"PYTHONPATH": str(ROOT)}, capture_output=True,
                               user="nobody", group="nogroup").returncode
    except PermissionError:         # the interpreter itself
        probe = 1
    if probe != 0:
        pytest.skip("nobody cannot run this interpreter or read the checkout (under /root?): "
                    "workers running as nobody could not import the app")
    work = tempfile.mkdtemp(prefix="prefork-logs-")
    os.chmod(work, 0o755)       # nobody must reach the files (tmp_path is root's alone)
    try:
        conf = os.path.join(work, "prefork.toml")
        with open(conf, "w") as f:
            f.write('accesslog = "a.log"\n')
        with running("testapp:app", "-c", conf, "--user", "nobody", "--group", "nogroup",
                     cwd=work) as srv:
            assert get(srv, "/hello").status == 200
            with open(conf, "w") as f:
                f.write('accesslog = "b.log"\n')
            ctl = srv.args[srv.args.index("--control-socket") + 1]
            out = subprocess.run([sys.executable, "-m", "prefork", "reload", "--control-socket",
                                  ctl], capture_output=True, text=True, timeout=30)
            assert out.returncode == 0, out.stdout + out.stderr
            assert get(srv, "/hello?after-reload").status == 200
            b = os.path.join(work, "b.log")
            assert owner(b) == (NOBODY, NOGROUP)
            deadline = time.monotonic() + 5
            while "after-reload" not in open(b).read():
                assert time.monotonic() < deadline, srv.log
                time.sleep(0.1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
