"""Process hygiene: the pidfile, detaching from the terminal, and who the
workers run as.

Order matters and is fixed by the master: sockets are bound first (so a bind
error is reported on the terminal, and privileged ports work), then the
process detaches (``daemon``), then the pidfile is written with the final
pid. Workers drop to ``user``/``group`` right after the fork, before the
application is imported; the master keeps its privileges so it can re-bind
and re-exec, as nginx's master does.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import stat
import sys
from collections.abc import Iterable

log = logging.getLogger("prefork.error")


class PidfileError(Exception):
    pass


class Pidfile:
    """A pidfile that refuses a live owner and replaces a stale one."""

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self.pid: int | None = None

    def create(self, pid: int, predecessor: int | None = None) -> None:
        """Write ``pid``. A live owner is refused, unless it is ``predecessor``
        (the master that started this one with USR2)."""
        other = read_pid(self.path)
        if other is not None and other not in (pid, predecessor) and _alive(other):
            raise PidfileError(f"pidfile {self.path} names pid {other}, which is running: "
                               "is prefork already started?")
        tmp = f"{self.path}.{pid}.tmp"
        with open(tmp, "w") as f:
            f.write(f"{pid}\n")
        os.replace(tmp, self.path)   # atomic: a reader never sees an empty file
        self.pid = pid

    def remove(self) -> None:
        """Remove the file only if it still names this process (a USR2 successor may own it)."""
        if self.pid is not None and read_pid(self.path) == self.pid:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return True
    # A recycled pid now used by something else does not count.
    return b"prefork" in cmdline


def daemonize(keep_fds: list[int]) -> int:
    """Detach: fork, setsid, fork again; stdio to /dev/null. Returns in the daemon.

    The original process waits on a pipe and exits with the status the
    daemon reports through :func:`report_ready` / :func:`report_failure`, so
    ``prefork start --daemon`` fails visibly when the server cannot start.
    Returns the write end of that pipe.
    """
    r, w = os.pipe()
    if os.fork() > 0:
        os.close(w)
        # One message, not EOF: the workers forked later hold copies of ``w``.
        data = os.read(r, 4096)
        if data.startswith(b"ok"):
            os._exit(0)
        sys.stderr.write(data.decode("utf-8", "replace") or
                         "prefork: error: the daemon exited before it was ready\n")
        os._exit(1)
    os.close(r)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in keep_fds:
            os.dup2(devnull, fd)
    os.close(devnull)
    return w


def report(fd: int | None, message: bytes) -> None:
    if fd is None:
        return
    try:
        os.write(fd, message)
        os.close(fd)
    except OSError:
        pass


def user_ids(user: str, group: str) -> tuple[int | None, int | None, str | None]:
    """uid, gid and user name of ``user``/``group`` (None: not given); KeyError if unknown."""
    uid = gid = None
    name = None
    if user:
        pw = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        uid, gid, name = pw.pw_uid, pw.pw_gid, pw.pw_name
    if group:
        gid = int(group) if group.isdigit() else grp.getgrnam(group).gr_gid
    return uid, gid, name


def drop_privileges(user: str, group: str) -> None:
    """Become ``user`` (and ``group``, else the user's primary group). Root only."""
    if not user and not group:
        return
    if os.geteuid() != 0:
        raise PermissionError("user/group can only be changed when started as root")
    uid, gid, name = user_ids(user, group)
    if gid is not None:
        if name is not None:
            os.initgroups(name, gid)
        else:
            os.setgroups([gid])
        os.setgid(gid)
    if uid is not None:
        os.setuid(uid)


def give_files_to(paths: Iterable[str], user: str, group: str) -> None:
    """As root, with ``user``/``group`` set: create each file of ``paths``
    that is missing and make it theirs, so that workers running as them can
    open it. Anything but a regular file (a symlink, a FIFO) is left alone,
    so a worker that can write to the directory cannot make root chown
    something else. Never raises: what fails is logged."""
    if os.geteuid() != 0 or not (user or group):
        return
    try:
        uid, gid, _ = user_ids(user, group)
    except KeyError as e:
        log.warning("cannot give the log files to user %r / group %r: %s", user, group, e)
        return
    for path in paths:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                         | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
        except OSError as e:
            log.warning("cannot give %s to the workers' user: %s", path, e.strerror)
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and (st.st_uid, st.st_gid) != (uid, gid):
                os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)
        except OSError as e:
            log.warning("cannot give %s to the workers' user: %s", path, e.strerror)
        finally:
            os.close(fd)


def check_user_group(user: str, group: str) -> None:
    """Raise ValueError naming the setting when a user or group does not exist."""
    if user:
        try:
            pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise ValueError(f"invalid value for setting 'user': {user!r}; no such user") from None
    if group:
        try:
            grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
        except KeyError:
            raise ValueError(f"invalid value for setting 'group': {group!r}; no such group") from None
