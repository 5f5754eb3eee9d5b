"""USR2: re-execute a new master from the current executable, listeners included.

The old master fork-execs ``python -m prefork`` with its own arguments. The
listening sockets go along as inherited descriptors named in
``PREFORK_FDS``, and the write end of a pipe in ``PREFORK_UPGRADE_FD``. The
new master adopts the sockets instead of binding, takes over the pidfile and
the control socket, and writes ``ready`` to the pipe once all its workers are
ready (:func:`announce_upgrade_ready`). The old master then retires
gracefully. If the new master exits or closes the pipe first, the old one
takes its pidfile and control socket back and keeps serving.

The new master starts in the directory prefork was started in, not the one
``chdir`` moved to, so that relative paths in its arguments (``-c
conf.toml``, ``--pidfile``, ``--control-socket``) name the same files as
they did for the first master.

The master owns one :class:`Upgrade` and drives it from its loop:
:meth:`Upgrade.start` on USR2 (or a HUP with ``preload``),
:meth:`Upgrade.poll` when :attr:`Upgrade.pipe` is readable and
:meth:`Upgrade.child_exited` for every child it reaps. What the outcome means
for the master comes in as two callbacks, ``retire`` and ``reclaim``.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .control import ControlClient

log = logging.getLogger("prefork.error")


class Upgrade:
    """One new master at a time, from its fork until it is ready or reaped.

    ``argv`` are the arguments of ``python -m prefork`` (None when prefork runs
    embedded: then it cannot re-exec itself), to be run in ``cwd``: by
    default the directory this process is in when the Upgrade is made, which
    must be before the master's ``chdir``. ``retire()`` is called once the
    new master is ready; ``reclaim(pid)`` when it died first, with the pid of
    the failed successor, which may have taken over the pidfile and the
    control socket.
    """

    def __init__(self, argv: list[str] | None, retire: Callable[[], None],
                 reclaim: Callable[[int], None], cwd: str | None = None):
        self.argv = argv
        self.cwd = os.getcwd() if cwd is None else cwd
        self._retire = retire
        self._reclaim = reclaim
        self.pid: int | None = None     # the new master, until it is reaped
        self.pipe: int | None = None    # the read end of its readiness pipe, until it answers
        self.waiters: list[ControlClient] = []   # each gets one answer: the outcome

    @property
    def in_progress(self) -> bool:
        """A new master was started and has not been reaped."""
        return self.pid is not None

    @property
    def handed_over(self) -> bool:
        """The new master has answered on its pipe and not been reaped.

        In practice: it said ready, and this master is retiring. (It is also
        true between an early end of the pipe and the reaping of the failed
        new master, within one pass of the master loop.)
        """
        return self.pid is not None and self.pipe is None

    def start(self, listeners: list[socket.socket], extra_env: Mapping[str, str]) -> None:
        """Fork-exec the new master, passing ``listeners`` and ``extra_env``.

        Logs why and does nothing when an upgrade is already in progress or
        there are no ``argv`` to re-exec with; :attr:`in_progress` tells.
        """
        if self.pid is not None:
            log.warning("an upgrade is already in progress; ignoring")
            return
        if self.argv is None:
            log.error("upgrade: prefork was started from Python, not from the prefork "
                      "command; it cannot re-exec itself")
            return
        r, w = os.pipe()
        fds = [s.fileno() for s in listeners]
        env = dict(os.environ, **extra_env, PREFORK_FDS=",".join(map(str, fds)),
                   PREFORK_UPGRADE_FD=str(w))
        try:
            pid = os.fork()
        except OSError as e:
            os.close(r)
            os.close(w)
            log.error("Upgrade failed: cannot fork the new master: %s; this one goes on", e)
            self._answer({"ok": False, "error": f"cannot fork the new master: {e}"})
            return
        if pid == 0:
            try:
                os.close(r)
                for fd in fds + [w]:
                    os.set_inheritable(fd, True)
                try:
                    os.chdir(self.cwd)
                except OSError as e:
                    log.error("Upgrade failed: cannot change to %s, the directory prefork was "
                              "started in: %s", self.cwd, e.strerror)
                    raise
                os.execve(sys.executable, [sys.executable, "-m", "prefork", *self.argv], env)
            finally:
                os._exit(127)
        os.close(w)
        os.set_blocking(r, False)
        self.pid = pid
        self.pipe = r
        log.info("Upgrade: started a new master (pid %d); this one retires once it is ready", pid)

    def poll(self) -> None:
        """:attr:`pipe` is readable: the new master is ready, or it closed the pipe."""
        assert self.pipe is not None and self.pid is not None
        try:
            data = os.read(self.pipe, 64)
        except BlockingIOError:
            return
        if data.startswith(b"ready"):
            log.info("Upgrade: the new master (pid %d) is ready; retiring", self.pid)
            os.close(self.pipe)
            self.pipe = None
            self._answer({"ok": True, "pid": self.pid})
            self._retire()
        elif not data:
            os.close(self.pipe)
            self.pipe = None
            log.error("Upgrade failed: the new master (pid %d) exited before it was ready; "
                      "this master keeps serving", self.pid)
            self._reclaim(self.pid)
            self._answer({"ok": False, "error": "the new master exited before it was "
                          "ready (see the error log); this master keeps serving"})

    def child_exited(self, pid: int, status: int) -> bool:
        """Whether the reaped ``pid`` was the new master; before it said ready, a failure."""
        if pid != self.pid:
            return False
        code = os.waitstatus_to_exitcode(status)
        if self.pipe is not None:
            log.error("Upgrade failed: the new master exited with status %d", code)
            self._reclaim(pid)
            os.close(self.pipe)
            self.pipe = None
            self._answer({"ok": False, "error": f"the new master exited with status "
                          f"{code} (see the error log); this master keeps serving"})
        self.pid = None
        return True

    def _answer(self, answer: dict[str, Any]) -> None:
        for client in self.waiters:
            client.reply(answer)
        self.waiters = []


def started_by_upgrade() -> bool:
    """Whether this master was started by another one's USR2 (and has not announced ready)."""
    return "PREFORK_UPGRADE_FD" in os.environ


def announce_upgrade_ready() -> None:
    """In a master started by USR2: tell the old master this one is serving."""
    fd = os.environ.pop("PREFORK_UPGRADE_FD", None)
    if fd is None:
        return
    try:
        os.write(int(fd), b"ready\n")
        os.close(int(fd))
    except OSError as e:
        if e.errno != errno.EBADF:
            log.warning("could not tell the old master that the upgrade is ready: %s", e)
