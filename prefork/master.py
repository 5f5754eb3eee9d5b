"""The master: binds the sockets, forks the workers, and keeps them right.

It never parses HTTP and never runs the application after forking (with
``preload`` it imports the app once, before the first fork). Its loop is:

    wait for a signal or 0.25 s -> handle queued signals -> reap exited
    workers -> check the scoreboard (boot, heartbeat, request age, recycling)
    -> start or stop workers to match the wanted count

Signal handlers only queue the signal and wake the loop; everything happens
in the loop, in order.

Replacing a worker — recycling (max_requests, lifetime, memory), a request
that ran past ``request_timeout``, a reload — always starts the new worker
first and retires the old one only when the new one is ready, so capacity
never dips. At most ``max_recycling`` recyclings run at once.

A reload (HUP) boots one *canary* of the new generation first, which serves
on probation next to the old workers: when it fails to boot, dies, or
answers most requests with 5xx, the reload is rolled back and the old
workers go on serving. With ``preload`` the app lives in the master, so HUP
re-executes the master the way USR2 does.

The policy — which worker is in which state, back-off, boot-failure
counting, canary acceptance, recycling budgets, what a stop allows — is
:class:`prefork.supervisor.Supervisor`'s, which makes no system call: the
master feeds it what it observes (forks, the scoreboard, exits, signals,
the time) and carries out the actions it returns. What a worker does after
the fork is :func:`prefork.boot.run_worker`'s. The re-exec itself (USR2) is
:class:`prefork.upgrade.Upgrade`'s.

Status, systemd and metrics never see the master: :meth:`Master.snapshot`
gives them a frozen :class:`prefork.supervisor.MasterSnapshot`, in which
serving, healthy and ready are the supervisor's answers; the status report
is :func:`prefork.status.server_status`'s, the notifications
:class:`prefork.systemd.Systemd`'s.
"""

from __future__ import annotations

import gc
import logging
import os
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from . import sockets
from .app import AppImportError, find_django_project, load_app
from .boot import WorkerBoot, run_worker, set_title
from .cgroup import usable_cpus
from .config import Config
from .control import (
    REFUSED_WHILE_STOPPING,
    ControlClient,
    ControlCommand,
    ControlServer,
    unknown_command,
)
from .daemon import Pidfile, PidfileError, daemonize, report, user_ids
from .dump import Dumps
from .forksafe import before_fork
from .hooks import Hooks, ServerView, WorkerView
from .log import give_log_files_to_workers, reopen_error_log
from .metrics import (
    Answer,
    ListenQueue,
    MetricsServer,
    MetricsView,
    WorkerSample,
    health,
    listen_queue,
)
from .scoreboard import N_COUNTERS, Scoreboard, SlotView
from .status import memory_rss, server_status
from .supervisor import (
    BOOT_ERROR,
    SIGNAL_NAMES,
    MasterSnapshot,
    Ready,
    ReloadDone,
    Signal,
    Spawn,
    Stopping,
    Supervisor,
    Switch,
    WantedChanged,
    WorkerState,
)
from .systemd import Systemd
from .upgrade import Upgrade, announce_upgrade_ready, started_by_upgrade

log = logging.getLogger("prefork.error")

LOOP_INTERVAL = 0.25
DEMO_APP = "prefork.demo:application"     # served when no app is named
MEMORY_CHECK_INTERVAL = 1.0


class Master:
    """Supervises workers until stopped. ``run()`` returns the exit status."""

    def __init__(self, cfg: Config, app_spec: str | None = None,
                 app: Callable[..., Any] | None = None,
                 listeners: list[socket.socket] | None = None,
                 argv: list[str] | None = None,
                 reload_config: Callable[[], Config] | None = None,
                 systemd: Systemd | None = None,
                 exec_command: list[str] | None = None):
        self.cfg = cfg
        self.app_spec = app_spec
        self.app = app                  # given (embedding) or preloaded
        self.app_given = app is not None
        self.listeners = listeners or []
        self.argv = argv                # for re-exec (USR2); None when embedded
        self.reload_config = reload_config
        self.sd = systemd or Systemd()   # sd_notify, socket activation, watchdog (systemd.py)
        self.pid = os.getpid()
        self.sup: Supervisor | None = None     # made in setup(), with the scoreboard
        self.signals: deque[int] = deque()
        self.dumps = Dumps()
        self.upgrade = Upgrade(argv, retire=self._retire_for_upgrade,
                               reclaim=self._reclaim_after_failed_upgrade,
                               command=exec_command)
        self.last_memory_check = 0.0
        self.hooks = Hooks(cfg)
        self.board: Scoreboard | None = None
        self._wake_r, self._wake_w = os.pipe()
        self.on_ready: list[Callable[[], None]] = []
        self.addresses: tuple[str, ...] = ()
        self.control: ControlServer | None = None
        self.metrics: MetricsServer | None = None
        # The metrics' counters of the workers that have exited (their
        # slots' last beat), so the totals never go down when one is replaced.
        self.retired = [0] * N_COUNTERS
        self.predecessor: int | None = None     # the old master, when started by USR2
        self.reload_waiters: dict[int, list[ControlClient]] = {}   # by reload ticket
        self.started = time.time()                 # for /metrics: Unix time
        self.started_at = time.monotonic()         # for uptimes
        self.daemonized = False         # set by daemon mode; WINCH only acts then
        self.daemon_pipe: int | None = None
        self.pidfile: Pidfile | None = None

    # -- what other modules read -----------------------------------------------

    @property
    def supervisor(self) -> Supervisor:
        assert self.sup is not None
        return self.sup

    @property
    def stopping(self) -> bool:
        return self.sup is not None and self.sup.stopping

    @property
    def generation(self) -> int:
        return self.sup.generation if self.sup is not None else 1

    @property
    def wanted(self) -> int:
        return self.sup.wanted if self.sup is not None else self.cfg.workers

    @property
    def exit_code(self) -> int:
        return self.sup.exit_code if self.sup is not None else 0

    def slots(self) -> dict[int, SlotView]:
        """The scoreboard, read once: each worker's slot by worker number."""
        board = self.board
        if board is None or self.sup is None:
            return {}
        return {w.number: board.read(w.slot) for w in self.sup.workers.values() if w.slot >= 0}

    def snapshot(self, now: float) -> MasterSnapshot:
        """The server's state at ``now`` (time.monotonic()), frozen: what
        status, systemd and metrics are given, never the master itself."""
        return self.supervisor.snapshot(
            self.slots(), now, pid=self.pid, app=self.app_spec or DEMO_APP,
            listeners=self.addresses, started=self.started, uptime=now - self.started_at,
            upgrading=self.upgrade.in_progress, handed_over=self.upgrade.handed_over)

    def metrics_view(self, snap: MasterSnapshot) -> MetricsView:
        """What /metrics shows: ``snap``, the exited workers' counters, and
        what is measured now (the workers' memory, the listen queues)."""
        workers = [WorkerSample(w.slot.index, w.number, w.generation, w.state.value,
                                w.slot.in_flight, w.slot.connections, w.slot.counters,
                                memory_rss(w.pid))
                   for w in snap.workers]
        queues = []
        for sock, address in zip(self.listeners, self.addresses, strict=True):
            got = listen_queue(sock)
            if got is not None:
                queues.append(ListenQueue(address, *got))
        return MetricsView(workers, self.retired, snap.exits, snap.request_timeouts, snap.wanted,
                           snap.generation, snap.ready, snap.started, queues)

    def _health_check(self, path: str) -> Answer:
        """The metrics server's answer to GET ``path``: /metrics and /readyz
        from a snapshot taken now, /livez and a 404 without one."""
        return health(path, lambda: self.metrics_view(self.snapshot(time.monotonic())),
                      lambda: self.snapshot(time.monotonic()).not_ready)

    def view(self) -> ServerView:
        return ServerView(self.pid, self.app_spec or DEMO_APP, self.wanted,
                          self.generation, self.addresses)

    # -- start-up ----------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
        project = find_django_project(self.app_spec) if self.app is None else None
        if project is not None:
            # Say what was found; and a relative directory must still name
            # it after chdir, in the workers that import it.
            log.info("%s", project.describe())
            if project.path:
                self.app_spec = project.path
        # Paths the CLI looks up are relative to where prefork was started,
        # not to chdir.
        control_path = os.path.abspath(cfg.control_socket) if cfg.control_socket else ""
        pidfile_path = os.path.abspath(cfg.pidfile) if cfg.pidfile else ""
        if cfg.chdir:
            os.chdir(cfg.chdir)
        os.umask(cfg.umask)
        _raise_open_files_limit(cfg.max_connections + 256)
        sys.path[:0] = [p for p in cfg.pythonpath if p not in sys.path]
        os.environ.update(cfg.env)
        self.hooks.call("on_starting", self.view())
        if not self.listeners:
            inherited = sockets.inherited_from_env() or self.sd.listeners(self.cfg)
            self.listeners = inherited or sockets.bind_all(self.cfg)
        self.addresses = tuple(sockets.describe(sock) for sock in self.listeners)
        for address in self.addresses:
            log.info("Listening at: %s", address)
        if cfg.daemon and not self.daemonized and not started_by_upgrade():
            self.daemon_pipe = daemonize([s.fileno() for s in self.listeners])
            self.daemonized = True
            self.pid = os.getpid()
            self.on_ready.append(self._report_daemon_ready)
        elif cfg.daemon and started_by_upgrade():
            self.daemonized = True      # detached already, by the first master: WINCH works
        upgrading = started_by_upgrade()
        # Started by USR2: the old master (our parent) serves on the same
        # unix socket files until it retires, so they are not ours to remove
        # while it lives (see _cleanup).
        self.predecessor = os.getppid() if upgrading else None
        if pidfile_path:
            self.pidfile = Pidfile(pidfile_path)
            self.pidfile.create(self.pid, predecessor=self.predecessor)
        if self.cfg.preload and self.app is None:
            self.app = load_app(self.app_spec)
        if self.app is not None:
            # Preloaded or given: it may have opened connections the
            # workers must not share.
            before_fork()
        if self.cfg.preload:
            gc.collect()
            # Objects made so far stay out of the collector's way, so its
            # passes in the workers don't write to (and un-share) their pages.
            gc.freeze()
        self.board = Scoreboard(max(64, self.cfg.workers * 4))
        self.sup = Supervisor(cfg, self.board.capacity, self.hooks)
        if control_path:
            # A master started by USR2 takes the socket over from its predecessor.
            takeover = started_by_upgrade()
            try:
                self.control = ControlServer(control_path, self.cfg.control_socket_mode,
                                             self._control_command, takeover)
            except OSError as e:
                if self.cfg.source("control_socket") != "default":
                    raise
                log.warning("%s; running without a control socket", e.strerror)
        if cfg.metrics_bind:
            self._open_metrics(cfg.metrics_bind)
        if self.control is not None:
            uid = gid = None
            if os.geteuid() == 0 and (cfg.user or cfg.group):
                uid, gid, _ = user_ids(cfg.user, cfg.group)
            self.dumps.open(-1 if uid is None else uid, -1 if gid is None else gid)
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                    signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGWINCH, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        give_log_files_to_workers(cfg.accesslog, cfg.user, cfg.group)   # root + user only
        set_title(f"prefork: master [{self.app_spec or 'demo'}]")

    def _open_metrics(self, address: str) -> None:
        inherited = os.environ.pop("PREFORK_METRICS_FD", "")
        if inherited:       # the old master's, handed over by USR2 (upgrade.py)
            sock = sockets.adopt(int(inherited), "the inherited metrics socket")
        else:
            sock = sockets.bind(address, backlog=64, unix_mode=0o600)
        self.metrics = MetricsServer(sock, self._health_check)
        log.info("Metrics and health checks at: %s (/metrics, /livez, /readyz)",
                 sockets.describe(sock))

    def _retire_for_upgrade(self) -> None:
        """The new master is ready: it answers the health checks from now
        on (on the same socket), not this one, which is stopping."""
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        self.stop(graceful=True)

    def _report_daemon_ready(self) -> None:
        # Once only: after a reload the fd number may belong to something else.
        report(self.daemon_pipe, b"ok")
        self.daemon_pipe = None

    def _on_signal(self, signum: int, frame: Any) -> None:
        if signum != signal.SIGCHLD:
            self.signals.append(signum)
        # set_wakeup_fd has already written a byte: the loop wakes up.

    # -- the loop ----------------------------------------------------------

    def run(self) -> int:
        try:
            self.setup()
        except (OSError, AppImportError, PidfileError) as e:
            message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            log.error("%s", message)
            if self.daemon_pipe is None and self.cfg.errorlog not in ("", "-"):
                # Still on the terminal: say it there too, not only in the file.
                print(f"prefork: error: {message}", file=sys.stderr)
            report(self.daemon_pipe, f"prefork: error: {message}\n".encode())
            return BOOT_ERROR if isinstance(e, AppImportError) else 1
        sup = self.supervisor
        log.info("Master %d started: %d workers, %d threads each; CPUs: %s", self.pid,
                 self.wanted, self.cfg.threads, usable_cpus().describe())
        try:
            sup.start(time.monotonic())
            self._act()
            while True:
                self._sleep()
                if self.sd.enabled:     # watchdog pings only while this loop turns
                    self.sd.tick(self.snapshot(time.monotonic()))
                self.upgrade.tick(time.monotonic())     # a new master past upgrade_timeout
                if self.dumps.waiting:
                    self.dumps.tick(time.monotonic())
                while self.signals:
                    self._handle_signal(self.signals.popleft())
                self._reap()
                if sup.done:
                    break
                now = time.monotonic()
                rss = None
                if (self.cfg.max_worker_memory and not sup.stopping
                        and now - self.last_memory_check >= MEMORY_CHECK_INTERVAL):
                    self.last_memory_check = now
                    rss = {w.number: memory_rss(w.pid) for w in sup.workers.values() if w.pid}
                sup.tick(self.slots(), now, rss)
                self._act()
        finally:
            self._cleanup()
        return self.exit_code

    def _act(self) -> None:
        """Carry out what the supervisor decided (a fork's outcome goes back to it)."""
        sup = self.supervisor
        while True:
            actions = sup.take()
            if not actions:
                return
            for action in actions:
                if isinstance(action, Spawn):
                    self._fork(action)
                elif isinstance(action, Signal):
                    try:
                        os.kill(action.pid, action.sig)
                    except ProcessLookupError:
                        pass
                elif isinstance(action, Ready):
                    self._announce_ready()
                elif isinstance(action, Switch):
                    self.cfg, self.hooks = action.cfg, action.hooks
                elif isinstance(action, Stopping):
                    self.sd.notify_stopping(self.snapshot(time.monotonic()))
                elif isinstance(action, ReloadDone):
                    self._answer_reload(action)
                elif isinstance(action, WantedChanged):
                    self.hooks.call("nworkers_changed", self.view(), action.new, action.old)

    def _announce_ready(self) -> None:
        self.hooks.call("when_ready", self.view())
        # READY=1 + MAINPID= before a USR2 predecessor retires
        self.sd.notify_ready(self.snapshot(time.monotonic()))
        announce_upgrade_ready()
        for fn in self.on_ready:
            fn()

    def _answer_reload(self, done: ReloadDone) -> None:
        for ticket in done.tickets:
            for client in self.reload_waiters.pop(ticket, []):
                if done.ok:
                    client.reply({"ok": True, "generation": done.generation})
                else:
                    client.reply({"ok": False, "error": done.error})

    def _sleep(self) -> None:
        fds = [self._wake_r] + ([self.upgrade.pipe] if self.upgrade.pipe is not None else [])
        if self.control is not None:
            fds += self.control.fds()
        write_fds: list[int] = []
        if self.metrics is not None:
            fds += self.metrics.fds()
            write_fds = self.metrics.write_fds()
        try:
            ready, writable, _ = select.select(fds, write_fds, [], LOOP_INTERVAL)
        except InterruptedError:
            return
        if self._wake_r in ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except BlockingIOError:
                pass
        if self.upgrade.pipe is not None and self.upgrade.pipe in ready:
            self.upgrade.poll()
        if self.control is not None:
            if ready:
                self.control.handle_ready(ready)
            self.control.expire(time.monotonic())
        if self.metrics is not None:
            now = time.monotonic()
            if ready or writable:
                self.metrics.handle(ready, writable, now)
            self.metrics.expire(now)
        self._act()     # a control command may have decided something

    def _cleanup(self) -> None:
        self.hooks.call("on_exit", self.view())
        waiters = [c for clients in self.reload_waiters.values() for c in clients]
        for client in waiters + self.upgrade.waiters + [w.client for w in self.dumps.waiting]:
            client.reply({"ok": False, "error": "the master stopped"})
        self.dumps.close()
        if self.control is not None:
            self.control.close()
        if self.pidfile is not None:
            self.pidfile.remove()
        if self.exit_code:
            report(self.daemon_pipe, b"prefork: error: the server stopped before it was ready; "
                                     b"see the error log\n")
            self.daemon_pipe = None
        signal.set_wakeup_fd(-1)
        # A predecessor still alive (a failed upgrade, or a stop during the
        # hand-over) still serves on our unix sockets: leave their files.
        predecessor_serving = self.predecessor is not None and os.getppid() == self.predecessor
        if self.metrics is not None:
            sock = self.metrics.sock
            if (sock.family == socket.AF_UNIX and not self.upgrade.in_progress
                    and not predecessor_serving):
                sockets.unlink_unix(sock)
            self.metrics.close()
        for sock in self.listeners:
            try:
                if (sock.family == socket.AF_UNIX and not self.upgrade.in_progress
                        and not predecessor_serving
                        and not self.sd.activated(sock)):   # systemd's file: keep it
                    sockets.unlink_unix(sock)
                sock.close()
            except OSError:
                pass
        log.info("Shutting down: master %d", self.pid)

    # -- signals -----------------------------------------------------------

    # What a stopping server still obeys: another stop (INT after TERM makes
    # it fast), USR1 (logs), CHLD. A reload, an upgrade or a change in the
    # worker count would start processes the stop then has to kill, or
    # leave a new master serving after the "stop".
    REFUSED_WHILE_STOPPING = frozenset((signal.SIGHUP, signal.SIGUSR2, signal.SIGTTIN,
                                        signal.SIGTTOU, signal.SIGWINCH))

    def _handle_signal(self, sig: int) -> None:
        name = SIGNAL_NAMES.get(sig, str(sig))
        if self.stopping and sig in self.REFUSED_WHILE_STOPPING:
            log.warning("Ignoring %s: the server is stopping", name)
            return
        sup = self.supervisor
        if sig == signal.SIGTERM:
            self.stop(graceful=True)
        elif sig in (signal.SIGINT, signal.SIGQUIT):
            self.stop(graceful=False)
        elif sig == signal.SIGHUP:
            self.reload()
        elif sig == signal.SIGTTIN:
            sup.set_wanted(sup.wanted + 1)
        elif sig == signal.SIGTTOU:
            if sup.wanted > 1:
                sup.set_wanted(sup.wanted - 1)
        elif sig == signal.SIGUSR1:
            reopen_error_log()
            log.info("Handling signal: USR1 (log files reopened)")
            give_log_files_to_workers(self.cfg.accesslog, self.cfg.user, self.cfg.group)
            for w in sup.workers.values():
                if w.pid:
                    self._kill(w.pid, signal.SIGUSR1)
        elif sig == signal.SIGUSR2:
            self._start_upgrade()
        elif sig == signal.SIGWINCH:
            if self.daemonized:
                log.info("Handling signal: WINCH (stopping workers, keeping the master)")
                sup.set_wanted(0)
            else:
                log.debug("ignoring WINCH: not daemonized")
        else:
            log.debug("ignoring signal %s", name)
        self._act()

    def stop(self, graceful: bool = True) -> None:
        self.supervisor.stop(graceful, time.monotonic())
        self._act()

    def _kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    # -- spawning ----------------------------------------------------------

    def _fork(self, spawn: Spawn) -> None:
        assert self.board is not None
        sup = self.supervisor
        cfg = spawn.cfg
        try:
            slot = self.board.claim(0, spawn.number, spawn.generation)
        except RuntimeError as e:
            sup.fork_failed(spawn.number, str(e), time.monotonic())
            return
        self.hooks.call("pre_fork", self.view(), WorkerView(0, spawn.number, spawn.generation))
        boot = WorkerBoot(cfg, self.app_spec, self.app, self.listeners, self.board, slot,
                          spawn.number, spawn.generation, self.pid, spawn.hooks, self.view())
        boot.close_fds = [self._wake_r, self._wake_w] + [
            fd for fd in (self.upgrade.pipe, self.daemon_pipe) if fd is not None]
        if self.control is not None:
            boot.close_socks = [c.conn for c in self.control.pending.values()]
            boot.close_socks.append(self.control.sock)
        boot.close_socks += [c.conn for clients in self.reload_waiters.values() for c in clients]
        boot.close_socks += [c.conn for c in self.upgrade.waiters]
        boot.close_socks += [w.client.conn for w in self.dumps.waiting]
        if self.metrics is not None:
            boot.close_socks += self.metrics.socks()
        boot.dump_dir = self.dumps.directory
        try:
            pid = os.fork()
        except OSError as e:
            # EAGAIN (the process or pids-cgroup limit), ENOMEM: the workers
            # already running go on serving; try again a little later.
            self.board.free(slot)
            sup.fork_failed(spawn.number, f"cannot fork a worker: {e}", time.monotonic())
            return
        if pid == 0:
            code = 1
            try:
                code = run_worker(boot)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                log.exception("worker %d crashed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        self.board.set_pid(slot, pid)
        sup.forked(spawn.number, pid, slot, time.monotonic())

    # -- reaping -----------------------------------------------------------

    def _reap(self) -> None:
        sup = self.supervisor
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            if self.upgrade.child_exited(pid, status):
                continue
            w = sup.by_pid.get(pid)
            if w is None:
                # Not ours: as PID 1 every orphan in the container is
                # re-parented here (container.py). Reaping it is all it needs.
                log.debug("reaped pid %d, not a worker: exit status %d", pid,
                          os.waitstatus_to_exitcode(status))
                continue
            assert self.board is not None
            slot = self.board.read(w.slot)
            self.board.free(w.slot)
            for i, n in enumerate(slot.counters):
                self.retired[i] += n
            code = os.waitstatus_to_exitcode(status)
            self.hooks.call("child_exit", self.view(), WorkerView(pid, w.number, w.generation, code))
            sup.exited(pid, code, slot, time.monotonic())
        self._act()

    # -- reload (HUP) --------------------------------------------------------

    def reload(self, client: ControlClient | None = None) -> bool:
        """Start a reload (a canary of the new code first); ``client`` gets
        the answer once it is done. False when it could not start."""
        log.info("Handling signal: HUP (reload)")
        self.hooks.call("on_reload", self.view())
        self.sd.notify_reloading()      # READY=1 follows, whether the reload works or not
        if self.cfg.preload or self.app_given:
            if self.argv is None:
                log.error("reload: the app was given in-process (preloaded or embedded) and "
                          "prefork cannot re-exec this program; restart it instead")
                return False
            log.info("reload: the app lives in the master (%s); re-executing the master",
                     "preloaded" if self.cfg.preload and not self.app_given else "given in-process")
            self._start_upgrade()
            if client is not None and self.upgrade.in_progress:
                self.upgrade.waiters.append(client)
            return self.upgrade.in_progress
        new_cfg = self.cfg
        if self.reload_config is not None:
            try:
                new_cfg = self.reload_config()
            except Exception as e:
                log.error("reload failed: the new configuration is invalid: %s; "
                          "keeping the current workers", e)
                return False
        try:
            new_hooks = self.hooks if new_cfg is self.cfg else Hooks(new_cfg)
        except ValueError as e:
            log.error("reload failed: %s; keeping the current workers", e)
            return False
        if new_cfg is not self.cfg:
            # A new accesslog path, or a new user: the new generation's
            # workers must be able to open it (root + user only).
            give_log_files_to_workers(new_cfg.accesslog, new_cfg.user, new_cfg.group)
        ticket = self.supervisor.reload(new_cfg, time.monotonic(), new_hooks)
        if client is not None:
            self.reload_waiters.setdefault(ticket, []).append(client)
        self._act()
        return True

    # -- upgrade (USR2): a new master from the current executable (upgrade.py)

    def _start_upgrade(self) -> None:
        keep = {"PREFORK_METRICS_FD": self.metrics.sock} if self.metrics is not None else {}
        self.upgrade.start(self.listeners, self.sd.exec_env(), self.cfg.upgrade_timeout, keep)

    def _reclaim_after_failed_upgrade(self, successor: int) -> None:
        """The failed successor took over the control socket and the pidfile
        (and may have removed them): take them back."""
        if self.control is not None:
            path, mode = self.control.path, self.cfg.control_socket_mode
            self.control.sock.close()
            try:
                self.control = ControlServer(path, mode, self._control_command, takeover=True)
            except OSError as e:
                log.error("could not recreate the control socket: %s", e)
                self.control = None
        if self.pidfile is not None:
            try:
                self.pidfile.create(self.pid, predecessor=successor)
            except (OSError, PidfileError) as e:
                log.error("could not rewrite the pidfile: %s", e)

    # -- the control socket -------------------------------------------------

    def _control_command(self, req: dict[str, Any], client: ControlClient) -> None:
        cmd = req["cmd"]
        handler = self.CONTROL.get(cmd)
        if handler is None:
            client.reply({"ok": False, "error": unknown_command(cmd)})
            return
        if self.stopping and cmd in REFUSED_WHILE_STOPPING:
            client.reply({"ok": False, "error": f"the server is stopping; {cmd} refused"})
            return
        handler(self, req, client)

    def _control_status(self, req: dict[str, Any], client: ControlClient) -> None:
        client.reply({"ok": True, **server_status(self.snapshot(time.monotonic()))})

    def _control_stop(self, req: dict[str, Any], client: ControlClient) -> None:
        client.reply({"ok": True, "pid": self.pid})
        self.stop(graceful=bool(req.get("graceful", True)))

    def _control_reload(self, req: dict[str, Any], client: ControlClient) -> None:
        if not self.reload(client):
            client.reply({"ok": False, "error": "reload could not start (see the error log)"})

    def _control_upgrade(self, req: dict[str, Any], client: ControlClient) -> None:
        self._start_upgrade()
        if self.upgrade.in_progress:
            self.upgrade.waiters.append(client)
        else:
            client.reply({"ok": False, "error": "upgrade could not start (see the error log)"})

    def _control_dump(self, req: dict[str, Any], client: ControlClient) -> None:
        if not self.dumps.directory:
            client.reply({"ok": False, "error": "dumps need the control socket's directory"})
            return
        live = {w.pid: w.number for w in self.supervisor.workers.values()
                if w.pid and w.state in DUMPABLE}
        self.dumps.start(client, live, time.monotonic())

    def _control_scale(self, req: dict[str, Any], client: ControlClient) -> None:
        sup = self.supervisor
        n = req.get("n", 1)
        if not isinstance(n, int) or n < 1:
            client.reply({"ok": False, "error": "n must be a positive integer"})
            return
        target = sup.wanted + n if req["cmd"] == "add_workers" else max(1, sup.wanted - n)
        client.reply({"ok": True, "workers": sup.set_wanted(target)})
        self._act()

    # Every command of control.COMMANDS, and its handler (a test checks that
    # the two name the same commands).
    CONTROL: ClassVar[dict[ControlCommand, Callable[[Master, dict[str, Any], ControlClient],
                                                    None]]] = {
        "status": _control_status,
        "stop": _control_stop,
        "reload": _control_reload,
        "upgrade": _control_upgrade,
        "dump": _control_dump,
        "add_workers": _control_scale,
        "remove_workers": _control_scale,
    }


# Workers that have their DUMP_SIGNAL handler: a real-time signal's default
# action is to terminate, so a worker still booting is never sent one.
DUMPABLE = frozenset((WorkerState.PROBATION, WorkerState.READY, WorkerState.REPLACED,
                      WorkerState.RETIRING))


def _raise_open_files_limit(wanted: int) -> None:
    """Lift the soft RLIMIT_NOFILE towards ``wanted`` (a worker needs one fd per
    connection); systemd's default soft limit is 1024."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted or soft == resource.RLIM_INFINITY:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError) as e:
        log.warning("cannot raise the open-files limit from %d to %d: %s", soft, target, e)
        return
    if target < wanted:
        log.warning("max_connections needs about %d open files but the hard limit is %d; "
                    "raise it (LimitNOFILE= in the systemd unit)", wanted, hard)
