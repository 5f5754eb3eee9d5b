"""systemd integration without libsystemd: sd_notify, socket activation, watchdog.

systemd talks to a service through environment variables and one datagram
socket:

* ``NOTIFY_SOCKET`` — where ``READY=1``, ``RELOADING=1``, ``STOPPING=1``,
  ``STATUS=...``, ``MAINPID=...`` and ``WATCHDOG=1`` are sent (a path, or an
  abstract name written ``@name``);
* ``WATCHDOG_USEC`` (and ``WATCHDOG_PID``) — ``WatchdogSec=`` of the unit;
* ``LISTEN_FDS``, ``LISTEN_PID``, ``LISTEN_FDNAMES`` — sockets passed by a
  ``.socket`` unit (or ``systemd-socket-activate``), starting at fd 3.

:func:`capture` reads all of them first thing in ``cli.main()``, before
anything forks, daemonizes or calls setproctitle (which reuses the memory of
the environment block), and removes them from ``os.environ`` so the workers,
the application and its subprocesses neither re-use the sockets nor send
notifications of their own. The resulting :class:`Systemd` object goes to the
master, which calls a few methods at the right moments:

* :meth:`Systemd.listeners` in ``setup()`` — the activated sockets (checked:
  listening stream sockets only) plus any *explicitly configured* ``bind``
  address that no activated socket already covers;
* :meth:`Systemd.notify_ready` once every worker of the generation is accepting —
  ``READY=1``, ``MAINPID=`` and ``STATUS=``; a master started by USR2 thereby
  hands ``MAINPID`` over to itself (the unit needs ``NotifyAccess=all``);
* :meth:`Systemd.notify_reloading` on HUP — ``RELOADING=1`` with ``MONOTONIC_USEC``;
  ``READY=1`` follows when the new generation is ready, or when the reload
  failed and the old workers go on serving;
* :meth:`Systemd.notify_stopping` on TERM/INT/QUIT — ``STOPPING=1``, except in a
  master that has just handed over to its USR2 successor;
* :meth:`Systemd.tick` on every pass of the master loop — ``WATCHDOG=1`` at
  half of ``WATCHDOG_USEC`` while the loop runs and the workers beat (so a
  hung master or hung workers let the watchdog fire), and ``STATUS=`` at a
  modest rate.

``notify_ready``, ``notify_stopping`` and ``tick`` are given a
:class:`~prefork.supervisor.MasterSnapshot`, never the master: which
workers serve and whether they are healthy is the supervisor's to say.
Without ``NOTIFY_SOCKET`` every method is a cheap no-op.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import sockets

if TYPE_CHECKING:
    from .config import Config
    from .supervisor import MasterSnapshot

log = logging.getLogger("prefork.error")

LISTEN_FDS_START = 3            # SD_LISTEN_FDS_START
STATUS_INTERVAL = 5.0           # STATUS= at most this often unless the worker count changes
# PREFORK_SYSTEMD_FDS is ours: which of the listeners a USR2 successor
# inherits came from systemd (their unix socket files are systemd's to remove).
VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
             "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "PREFORK_SYSTEMD_FDS")


class ActivationError(OSError):
    """The sockets systemd passed cannot be used; the message says why."""


def notify(message: str, address: str | None = None) -> bool:
    """Send one sd_notify datagram; return False when there is nowhere to send it.

    ``address`` defaults to ``$NOTIFY_SOCKET``: a filesystem path, or ``@name``
    for an abstract socket. Errors are logged, never raised: systemd being
    away must not take the server down.
    """
    if address is None:
        address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return False
    if address[0] == "@":
        target = "\0" + address[1:]
    elif address[0] == "/":
        target = address
    else:
        log.warning("NOTIFY_SOCKET=%r is neither a path nor an @abstract name; not notifying",
                    address)
        return False
    try:
        # A fresh socket each time: messages are rare, and no descriptor is
        # left open for the workers to inherit.
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.sendto(message.encode("utf-8", "replace"), target)
    except OSError as e:
        log.warning("cannot notify systemd at %s: %s", address, e.strerror or e)
        return False
    return True


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants in MONOTONIC_USEC."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


def watchdog_interval(usec: str, pid: str, my_pid: int) -> float:
    """Seconds between pings (half of WATCHDOG_USEC), or 0 when there is no watchdog for us."""
    if not usec.isdigit() or int(usec) == 0:
        return 0.0
    if pid and (not pid.isdigit() or int(pid) != my_pid):
        return 0.0      # the watchdog belongs to another process
    return int(usec) / 1e6 / 2


@dataclass
class Systemd:
    """What systemd gave this process, and the notifications sent so far."""

    notify_socket: str = ""
    watchdog: float = 0.0                   # seconds between WATCHDOG=1 pings; 0: off
    listen_fds: int = 0                     # how many sockets, from LISTEN_FDS_START on
    listen_names: list[str] = field(default_factory=list)
    listen_error: str = ""                  # why LISTEN_FDS was set but cannot be used
    listen_ignored: str = ""                # why LISTEN_FDS was set but is not for us
    first_fd: int = LISTEN_FDS_START
    activated_fds: set[int] = field(default_factory=set)   # the listeners systemd owns
    # state
    handed_over: bool = False               # a USR2 successor is MAINPID now: keep quiet
    is_reloading: bool = False
    last_ping: float = 0.0
    last_status: str = ""
    last_status_at: float = 0.0
    last_workers: int = -1
    req_seen: dict[int, int] = field(default_factory=dict)
    req_rate: float = 0.0
    rate_at: float = 0.0

    # -- capture -----------------------------------------------------------

    @classmethod
    def capture(cls, environ: MutableMapping[str, str] | None = None,
                pid: int | None = None, first_fd: int = LISTEN_FDS_START) -> Systemd:
        """Read and remove the systemd variables. Call before forking or setproctitle."""
        env: MutableMapping[str, str] = os.environ if environ is None else environ
        pid = os.getpid() if pid is None else pid
        values = {name: env.pop(name, "") for name in VARIABLES}
        sd = cls(notify_socket=values["NOTIFY_SOCKET"],
                 watchdog=watchdog_interval(values["WATCHDOG_USEC"], values["WATCHDOG_PID"], pid),
                 first_fd=first_fd)
        sd.activated_fds = {int(fd) for fd in values["PREFORK_SYSTEMD_FDS"].split(",")
                            if fd.isdigit()}
        n, listen_pid = values["LISTEN_FDS"], values["LISTEN_PID"]
        if n:
            if not n.isdigit():
                sd.listen_error = f"LISTEN_FDS={n!r} is not a number"
            elif not listen_pid.isdigit() or int(listen_pid) != pid:
                # Meant for another process (a parent that leaked its environment,
                # say): not ours to take. Like sd_listen_fds(), LISTEN_PID is required.
                sd.listen_ignored = (f"LISTEN_FDS={n} ignored: LISTEN_PID={listen_pid!r} is not "
                                     f"this process ({pid})")
            elif int(n):
                sd.listen_fds = int(n)
                names = values["LISTEN_FDNAMES"]
                sd.listen_names = names.split(":") if names else []
                for fd in range(first_fd, first_fd + sd.listen_fds):
                    try:   # as sd_listen_fds does; adopting them makes them inheritable again
                        os.set_inheritable(fd, False)
                    except OSError:
                        pass   # reported by listeners() with the socket checks
        return sd

    @property
    def enabled(self) -> bool:
        return bool(self.notify_socket) and not self.handed_over

    def exec_env(self) -> dict[str, str]:
        """Variables a master re-executed by USR2 needs to go on talking to systemd."""
        env = {}
        if self.notify_socket:
            env["NOTIFY_SOCKET"] = self.notify_socket
        if self.watchdog:
            env["WATCHDOG_USEC"] = str(round(self.watchdog * 2 * 1e6))
        if self.activated_fds:
            env["PREFORK_SYSTEMD_FDS"] = ",".join(map(str, sorted(self.activated_fds)))
        return env

    def activated(self, sock: socket.socket) -> bool:
        """Whether ``sock`` came from systemd: then its unix socket file is not ours."""
        return sock.fileno() in self.activated_fds

    # -- socket activation -----------------------------------------------

    def listen_sockets(self) -> list[socket.socket]:
        """The activated sockets; raise ActivationError when one is unusable."""
        if self.listen_error:
            raise ActivationError(22, f"socket activation: {self.listen_error}")
        out = []
        for i in range(self.listen_fds):
            fd = self.first_fd + i
            name = self.listen_names[i] if i < len(self.listen_names) else ""
            what = f"the socket systemd passed as fd {fd}" + (f" ({name!r})" if name else "")
            try:
                out.append(sockets.adopt(fd, what))
            except OSError as e:
                for s in out:
                    s.detach()
                raise ActivationError(e.errno or 22, f"socket activation: {e.strerror}; "
                                      "a .socket unit for prefork needs ListenStream= "
                                      "(and Accept=no)") from None
        return out

    def listeners(self, cfg: Config) -> list[socket.socket]:
        """Activated sockets plus the explicitly set ``bind`` addresses they do not cover.

        Returns [] when systemd passed no socket, so the caller binds as usual.
        The default ``bind`` is not added to activated sockets: with a .socket
        unit, the unit says where to listen.
        """
        if self.listen_ignored:
            log.warning("%s; binding the configured addresses", self.listen_ignored)
            self.listen_ignored = ""
        activated = self.listen_sockets()
        if not activated:
            return []
        for sock in activated:
            log.info("Using the socket systemd passed: %s", sockets.describe(sock))
        extra: list[socket.socket] = []
        if cfg.source("bind") != "default":
            uncovered = [address for address in cfg.bind
                         if not any(covers(sock, address) for sock in activated)]
            try:
                extra = sockets.bind_all(cfg, uncovered)
            except OSError:
                for sock in activated:
                    sock.detach()     # leave systemd's descriptors alone
                raise
        self.listen_fds = 0      # taken: a second call binds normally
        self.activated_fds = {sock.fileno() for sock in activated}
        return activated + extra

    # -- notifications ---------------------------------------------------

    def send(self, *fields: str) -> bool:
        if not self.enabled:
            return False
        return notify("\n".join(fields), self.notify_socket)

    def notify_ready(self, snap: MasterSnapshot) -> None:
        """Every worker of the current generation accepts: READY=1 (again, after a reload)."""
        self.is_reloading = False
        status = self._status_text(snap)
        self.last_status, self.last_status_at = status, snap.now
        self.send("READY=1", f"MAINPID={snap.pid}", f"STATUS={status}")

    def notify_reloading(self) -> None:
        self.is_reloading = True
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}",
                  "STATUS=Reloading: booting the new workers")

    def notify_stopping(self, snap: MasterSnapshot) -> None:
        """A stop began: STOPPING=1, unless a USR2 successor has taken over."""
        if snap.handed_over:
            # The master started by USR2 said "ready" and sent MAINPID=: the
            # service goes on, only this process leaves.
            self.handed_over = True
            return
        self.send("STOPPING=1", "STATUS=Stopping")

    def tick(self, snap: MasterSnapshot) -> None:
        """Once per pass of the master loop: watchdog, STATUS=, the end of a reload."""
        if not self.enabled:
            return
        now = snap.now
        if self.watchdog and now - self.last_ping >= self.watchdog and snap.healthy:
            self.last_ping = now
            self.send("WATCHDOG=1")
        if snap.stopping:
            return      # STOPPING=1 was the last word
        if self.is_reloading and not snap.reload_in_progress:
            # The reload failed (bad config, canary died, new master died):
            # the old workers serve on, so systemd must not stay "reloading".
            self.is_reloading = False
            self.send("READY=1", f"MAINPID={snap.pid}",
                      f"STATUS=Reload failed; {self._status_text(snap)} (see the log)")
            self.last_status_at = now
            return
        if self.is_reloading or snap.reloading:
            return
        workers = len(snap.serving)
        if workers != self.last_workers or now - self.last_status_at >= STATUS_INTERVAL:
            self.last_workers = workers
            self.last_status, self.last_status_at = self._status_text(snap), now
            self.send(f"STATUS={self.last_status}")

    def _status_text(self, snap: MasterSnapshot) -> str:
        # In flight and requests per second over every live worker, as
        # /metrics counts them: a worker draining after a reload or a
        # recycle still runs requests.
        in_flight = sum(w.slot.in_flight for w in snap.workers)
        counts = {w.pid: w.slot.requests for w in snap.workers}
        # Requests per second since the last sample, from the per-worker counters
        # (a replaced worker's counter starts again at 0).
        new = sum(max(0, c - self.req_seen.get(pid, 0)) for pid, c in counts.items())
        self.req_seen = counts
        if self.rate_at and snap.now > self.rate_at:
            self.req_rate = new / (snap.now - self.rate_at)
        self.rate_at = snap.now
        return (f"{len(snap.serving)} workers, {in_flight} in flight, {self.req_rate:.1f} req/s, "
                f"generation {snap.generation}")


def covers(sock: socket.socket, address: str) -> bool:
    """Whether the listening ``sock`` is already the socket ``address`` would bind."""
    try:
        family, sockaddr = sockets.parse_address(address)
    except ValueError:
        return False
    if family == sockets.FD_FAMILY:
        return sockaddr == sock.fileno()
    if family != sock.family:
        return False
    if family == socket.AF_UNIX:
        return bool(os.path.abspath(str(sockaddr)) == sock.getsockname())
    assert isinstance(sockaddr, tuple)
    host, port = str(sockaddr[0]), int(sockaddr[1])
    if port == 0:
        return False
    try:
        infos = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
    except OSError:
        return False
    bound = sock.getsockname()[:2]
    return any(info[4][:2] == bound for info in infos)


def capture(environ: MutableMapping[str, str] | None = None) -> Systemd:
    """Shorthand for :meth:`Systemd.capture`."""
    return Systemd.capture(environ)

