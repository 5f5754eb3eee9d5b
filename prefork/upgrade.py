"""USR2: re-execute a new master from the current executable, listeners included.

The old master fork-execs ``python -m prefork`` with its own arguments. The
listening sockets go along as inherited descriptors named in
``PREFORK_FDS``, and the write end of a pipe in ``PREFORK_UPGRADE_FD``. The
new master adopts the sockets instead of binding, takes over the pidfile and
the control socket, and writes ``ready`` to the pipe once all its workers are
ready (:func:`announce_upgrade_ready`). The old master then retires
gracefully. If the new master exits or closes the pipe first, or is not
ready within ``upgrade_timeout`` (an import that hangs under ``preload``),
the old one kills it if need be, takes its pidfile and control socket back
and keeps serving.

The new master starts in the directory prefork was started in, not the one
``chdir`` moved to, so that relative paths in its arguments (``-c
conf.toml``, ``--pidfile``, ``--control-socket``) name the same files as
they did for the first master.

The master owns one :class:`Upgrade` and drives it from its loop:
:meth:`Upgrade.start` on USR2 (or a HUP with ``preload``),
:meth:`Upgrade.poll` when :attr:`Upgrade.pipe` is readable,
:meth:`Upgrade.tick` on every pass of its loop and
:meth:`Upgrade.child_exited` for every child it reaps. What the outcome means
for the master comes in as two callbacks, ``retire`` and ``reclaim``.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import container

if TYPE_CHECKING:
    from .control import ControlClient

log = logging.getLogger("prefork.error")

# After the TERM to a new master that missed upgrade_timeout, the KILL.
KILL_GRACE = 2.0


class Upgrade:
    """One new master at a time, from its fork until it is ready or reaped.

    ``argv`` are the arguments of ``python -m prefork`` (None when prefork runs
    embedded: then it cannot re-exec itself), to be run in ``cwd``: by
    default the directory this process is in when the Upgrade is made, which
    must be before the master's ``chdir``. ``retire()`` is called once the
    new master is ready; ``reclaim(pid)`` when it died first, with the pid of
    the failed successor, which may have taken over the pidfile and the
    control socket. ``command``, when given, is the whole command line of
    the new master instead of ``python -m prefork ARGV`` (``manage.py
    prefork`` re-executes itself).
    """

    def __init__(self, argv: list[str] | None, retire: Callable[[], None],
                 reclaim: Callable[[int], None], cwd: str | None = None,
                 command: list[str] | None = None):
        self.argv = argv
        self.command = command
        self.cwd = os.getcwd() if cwd is None else cwd
        self._retire = retire
        self._reclaim = reclaim
        self.pid: int | None = None     # the new master, until it is reaped
        self.pipe: int | None = None    # the read end of its readiness pipe, until it answers
        self.waiters: list[ControlClient] = []   # each gets one answer: the outcome
        self.timeout = 0.0
        self.deadline = 0.0             # monotonic: the new master must be ready by then
        self.stopped_at: float | None = None     # when it was sent TERM for missing it
        self.killed = False

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

    def start(self, listeners: list[socket.socket], extra_env: Mapping[str, str],
              timeout: float = 60.0, named: Mapping[str, socket.socket] | None = None) -> None:
        """Fork-exec the new master, passing ``listeners`` and ``extra_env``;
        it has ``timeout`` seconds to be ready (see :meth:`tick`). Each of
        ``named`` goes along too, its descriptor in the variable it is under
        (the metrics socket).

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
        refused = container.why_no_upgrade()
        if refused:
            log.error("upgrade refused: %s", refused)
            return
        r, w = os.pipe()
        fds = [s.fileno() for s in listeners]
        env = dict(os.environ, **extra_env, PREFORK_FDS=",".join(map(str, fds)),
                   PREFORK_UPGRADE_FD=str(w))
        for name, sock in (named or {}).items():
            env[name] = str(sock.fileno())
            fds.append(sock.fileno())
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
                command = self.command or [sys.executable, "-m", "prefork", *self.argv]
                os.execve(command[0], command, env)
            finally:
                os._exit(127)
        os.close(w)
        os.set_blocking(r, False)
        self.pid = pid
        self.pipe = r
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.stopped_at = None
        self.killed = False
        log.info("Upgrade: started a new master (pid %d); this one retires once it is ready", pid)

    def poll(self) -> None:
        """:attr:`pipe` is readable: the new master is ready, or it closed the pipe."""
        assert self.pipe is not None and self.pid is not None
        try:
            data = os.read(self.pipe, 64)
        except BlockingIOError:
            return
        if not data:
            self._failed(f"the new master (pid {self.pid}) exited before it was ready")
        elif data.startswith(b"ready") and self.stopped_at is None:
            log.info("Upgrade: the new master (pid %d) is ready; retiring", self.pid)
            os.close(self.pipe)
            self.pipe = None
            self._answer({"ok": True, "pid": self.pid})
            self._retire()
        # ready only after it was given up on: being stopped; reaping ends it.

    def tick(self, now: float) -> None:
        """A new master not ready by the deadline is stopped: TERM, then
        KILL (it and its workers) KILL_GRACE later. Only its pid: it shares
        this master's process group. The failure is settled when it is reaped."""
        if self.pid is None or self.pipe is None or now < self.deadline:
            return
        if self.stopped_at is None:
            log.error("Upgrade: the new master (pid %d) is not ready after %g s "
                      "(upgrade_timeout); stopping it", self.pid, self.timeout)
            self.stopped_at = now
            _kill(self.pid, signal.SIGTERM)
        elif not self.killed and now - self.stopped_at >= KILL_GRACE:
            log.error("Upgrade: the new master (pid %d) did not exit on TERM; killing it",
                      self.pid)
            self.killed = True
            for pid in [*_children(self.pid), self.pid]:
                _kill(pid, signal.SIGKILL)

    def child_exited(self, pid: int, status: int) -> bool:
        """Whether the reaped ``pid`` was the new master; before it said ready, a failure."""
        if pid != self.pid:
            return False
        if self.pipe is not None:
            code = os.waitstatus_to_exitcode(status)
            self._failed(f"the new master exited with status {code}")
        self.pid = None
        return True

    def _failed(self, why: str) -> None:
        """The new master died, or is dying, before it was ready: take back
        what it took and tell the waiting clients."""
        assert self.pipe is not None and self.pid is not None
        if self.stopped_at is not None:
            why = (f"the new master (pid {self.pid}) was not ready within {self.timeout:g} s "
                   "(upgrade_timeout) and was stopped")
        log.error("Upgrade failed: %s; this master keeps serving", why)
        os.close(self.pipe)
        self.pipe = None
        self._reclaim(self.pid)
        self._answer({"ok": False, "error": f"{why} (see the error log); this master keeps "
                      "serving"})

    def _answer(self, answer: dict[str, Any]) -> None:
        for client in self.waiters:
            client.reply(answer)
        self.waiters = []


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _children(pid: int) -> list[int]:
    import psutil
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


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
