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

A reload (HUP) boots one *canary* of the new generation first: when it fails
to import the app or dies, the old workers go on serving and the error is
logged. With ``preload`` the app lives in the master, so HUP re-executes the
master the way USR2 does.

The re-exec itself (USR2) is :class:`prefork.upgrade.Upgrade`'s, the status
report :func:`prefork.status.server_status`'s; the master drives them.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import select
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from . import sockets
from .app import AppImportError, load_app
from .config import Config
from .control import ControlClient, ControlServer
from .daemon import Pidfile, PidfileError, daemonize, drop_privileges, report
from .hooks import Hooks, ServerView, WorkerView
from .log import dump_stacks_to_error_log, reopen_error_log
from .scoreboard import BOOTING, READY, STOPPING, Scoreboard, Slot
from .status import memory_rss, server_status
from .systemd import Systemd
from .upgrade import Upgrade, announce_upgrade_ready, started_by_upgrade
from .worker import Worker

log = logging.getLogger("prefork.error")

WORKER_BOOT_ERROR = 3       # a worker's exit status when the app cannot be loaded
MASTER_BOOT_ERROR = 3       # the master's, when workers keep failing to boot
LOOP_INTERVAL = 0.25
KILL_GRACE = 2.0            # after ABRT or a missed graceful deadline, then KILL
# Retries after boot failures and after crashes wait backoff(n): 0.1 s
# doubling, at most BACKOFF_MAX. A worker that died after it was ready never
# stops the server (only workers that never became ready count towards
# max_boot_failures); its streak resets once no worker has crashed for
# CRASH_QUIET seconds.
BACKOFF_MAX = 10.0
CRASH_QUIET = 30.0
FORK_RETRY = 1.0            # after fork() failed (EAGAIN, ENOMEM)
MEMORY_CHECK_INTERVAL = 1.0

SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}   # SIGABRT, not its alias SIGIOT


def backoff(n: int) -> float:
    """Seconds before the next try after the ``n``-th retry in a row (from 0)."""
    return min(0.1 * 2 ** n, BACKOFF_MAX)


class WorkerProcess:
    """The master's record of one worker."""

    def __init__(self, pid: int, number: int, generation: int, slot: int):
        self.pid = pid
        self.number = number
        self.generation = generation
        self.slot = slot
        self.spawned = time.monotonic()
        self.ready_since: float | None = None
        self.retiring = False          # TERM sent: finishing its requests
        self.retired_at = 0.0
        self.kill_at: float | None = None
        self.aborted = False           # ABRT sent after a missed heartbeat
        self.replaced_by: int | None = None   # pid of the worker booting to replace it
        self.replacing: int | None = None     # pid of the worker this one will replace
        self.max_requests = 0
        self.max_lifetime = 0.0
        self.why_replace = ""
        self.message = ""             # what the worker said about its failure
        self.overdue_request = 0.0    # start of the request past request_timeout already reported

    def view(self, exit_code: int | None = None) -> WorkerView:
        return WorkerView(self.pid, self.number, self.generation, exit_code)


class Master:
    """Supervises workers until stopped. ``run()`` returns the exit status."""

    def __init__(self, cfg: Config, app_spec: str | None = None,
                 app: Callable[..., Any] | None = None,
                 listeners: list[socket.socket] | None = None,
                 argv: list[str] | None = None,
                 reload_config: Callable[[], Config] | None = None,
                 systemd: Systemd | None = None):
        self.cfg = cfg
        self.app_spec = app_spec
        self.app = app                  # given (embedding) or preloaded
        self.app_given = app is not None
        self.listeners = listeners or []
        self.argv = argv                # for re-exec (USR2); None when embedded
        self.reload_config = reload_config
        self.sd = systemd or Systemd()   # sd_notify, socket activation, watchdog (systemd.py)
        self.pid = os.getpid()
        self.workers: dict[int, WorkerProcess] = {}
        self.wanted = cfg.workers
        self.generation = 1
        self.reload_generation: int | None = None   # generation of a running canary
        self.canary: int | None = None
        self.next_number = 1
        self.boot_failures = 0
        self.last_boot_error = ""
        self.crashes = 0                # workers that died after they were ready
        self.crash_streak = 0           # of those, in a row (see CRASH_QUIET)
        self.last_crash = ""            # the last one's cause, for the log and status
        self.last_crash_at = 0.0
        self.spawn_after = 0.0
        self.signals: deque[int] = deque()
        self.stopping: str | None = None   # "graceful" or "fast"
        self.stop_deadline = 0.0
        self.exit_code = 0
        self.announced_ready = False
        self.upgrade = Upgrade(argv, retire=lambda: self.stop(graceful=True),
                               reclaim=self._reclaim_after_failed_upgrade)
        self.last_memory_check = 0.0
        self.hooks = Hooks(cfg)
        self.board: Scoreboard | None = None
        self._wake_r, self._wake_w = os.pipe()
        self.on_ready: list[Callable[[], None]] = []
        self.pending_cfg = cfg
        self.pending_hooks = self.hooks     # the hooks of pending_cfg (a reload's)
        self.addresses: tuple[str, ...] = ()
        self.control: ControlServer | None = None
        self.predecessor: int | None = None     # the old master, when started by USR2
        self.reload_waiters: list[ControlClient] = []
        self.started = time.time()
        self.daemonized = False         # set by daemon mode; WINCH only acts then
        self.daemon_pipe: int | None = None
        self.pidfile: Pidfile | None = None

    # -- views for hooks ---------------------------------------------------

    def view(self) -> ServerView:
        return ServerView(self.pid, self.app_spec or "prefork.demo:application", self.wanted,
                          self.generation, self.addresses)

    # -- start-up ----------------------------------------------------------

    def setup(self) -> None:
        cfg = self.cfg
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
            gc.collect()
            # Objects made so far stay out of the collector's way, so its
            # passes in the workers don't write to (and un-share) their pages.
            gc.freeze()
        self.board = Scoreboard(max(64, self.cfg.workers * 4))
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
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT,
                    signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGWINCH, signal.SIGCHLD):
            signal.signal(sig, self._on_signal)
        _set_title(f"prefork: master [{self.app_spec or 'demo'}]")

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
            return MASTER_BOOT_ERROR if isinstance(e, AppImportError) else 1
        log.info("Master %d started: %d workers, %d threads each", self.pid, self.wanted,
                 self.cfg.threads)
        try:
            self._manage()
            while True:
                self._sleep()
                self.sd.tick(self)      # watchdog pings only while this loop turns
                while self.signals:
                    self._handle_signal(self.signals.popleft())
                self._reap()
                if self.stopping:
                    if not self.workers:
                        break
                    self._enforce_stop_deadline()
                    continue
                self._check_workers()
                self._manage()
        finally:
            self._cleanup()
        return self.exit_code

    def _sleep(self) -> None:
        fds = [self._wake_r] + ([self.upgrade.pipe] if self.upgrade.pipe is not None else [])
        if self.control is not None:
            fds += self.control.fds()
        try:
            ready, _, _ = select.select(fds, [], [], LOOP_INTERVAL)
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

    def _cleanup(self) -> None:
        self.hooks.call("on_exit", self.view())
        for client in self.reload_waiters + self.upgrade.waiters:
            client.reply({"ok": False, "error": "the master stopped"})
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
        if sig == signal.SIGTERM:
            self.stop(graceful=True)
        elif sig in (signal.SIGINT, signal.SIGQUIT):
            self.stop(graceful=False)
        elif sig == signal.SIGHUP:
            self.reload()
        elif sig == signal.SIGTTIN:
            self._set_wanted(self.wanted + 1)
        elif sig == signal.SIGTTOU:
            if self.wanted > 1:
                self._set_wanted(self.wanted - 1)
        elif sig == signal.SIGUSR1:
            reopen_error_log()
            log.info("Handling signal: USR1 (log files reopened)")
            self._signal_workers(signal.SIGUSR1)
        elif sig == signal.SIGUSR2:
            self._start_upgrade()
        elif sig == signal.SIGWINCH:
            if self.daemonized:
                log.info("Handling signal: WINCH (stopping workers, keeping the master)")
                self._set_wanted(0)
            else:
                log.debug("ignoring WINCH: not daemonized")
        else:
            log.debug("ignoring signal %s", name)

    def _set_wanted(self, n: int) -> int:
        """Change the worker count; returns the count set. At most half the
        scoreboard: each worker may need a second slot for its replacement."""
        assert self.board is not None
        limit = self.board.capacity // 2
        if n > limit:
            log.warning("Cannot run %d workers: at most %d with this start-up's scoreboard "
                        "(restart with a larger 'workers' for more)", n, limit)
            n = limit
        if n == self.wanted:
            return n
        old, self.wanted = self.wanted, n
        log.info("Number of workers: %d -> %d", old, n)
        self.hooks.call("nworkers_changed", self.view(), n, old)
        return n

    def stop(self, graceful: bool = True) -> None:
        if self.stopping == "fast" or (self.stopping and graceful):
            return
        self.stopping = "graceful" if graceful else "fast"
        log.info("Handling signal: %s (%s stop)", "TERM" if graceful else "INT/QUIT",
                 self.stopping)
        self.sd.stopping(self)
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        wait = self.cfg.graceful_timeout if graceful else 1.0
        self.stop_deadline = time.monotonic() + wait + 1.0
        for w in self.workers.values():
            w.retiring = True
            self._kill(w.pid, sig)

    def _enforce_stop_deadline(self) -> None:
        if time.monotonic() < self.stop_deadline:
            return
        for w in list(self.workers.values()):
            if w.kill_at is None:
                log.warning("worker %d did not stop in time; killing it", w.pid)
                self._kill(w.pid, signal.SIGKILL)
                w.kill_at = time.monotonic()

    def _signal_workers(self, sig: int) -> None:
        for w in self.workers.values():
            self._kill(w.pid, sig)

    def _kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    # -- spawning ----------------------------------------------------------

    def spawn(self, generation: int | None = None, cfg: Config | None = None) -> WorkerProcess | None:
        assert self.board is not None
        cfg = cfg or self.cfg
        generation = generation or self.generation
        number = self.next_number
        self.next_number += 1
        try:
            slot = self.board.claim(0, number, generation)
        except RuntimeError as e:
            log.error("cannot start a worker: %s", e)
            return None
        view = WorkerView(0, number, generation)
        self.hooks.call("pre_fork", self.view(), view)
        try:
            pid = os.fork()
        except OSError as e:
            # EAGAIN (the process or pids-cgroup limit), ENOMEM: the workers
            # already running go on serving; try again a little later.
            self.board.free(slot)
            self.spawn_after = max(self.spawn_after, time.monotonic() + FORK_RETRY)
            log.error("cannot fork a worker: %s; the %d running go on, next try in %.0f s",
                      e, len(self.workers), FORK_RETRY)
            return None
        if pid == 0:
            code = 1
            try:
                code = self._worker_main(cfg, slot, number, generation)
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 1
            except BaseException:
                log.exception("worker %d crashed", os.getpid())
            finally:
                logging.shutdown()
                os._exit(code)
        self.board.set_pid(slot, pid)
        w = WorkerProcess(pid, number, generation, slot)
        if cfg.max_requests:
            w.max_requests = cfg.max_requests + random.randint(0, cfg.max_requests_jitter)
        if cfg.max_worker_lifetime:
            w.max_lifetime = cfg.max_worker_lifetime * (1 + random.uniform(0, 0.1))
        self.workers[pid] = w
        log.info("Booting worker %d (pid %d, generation %d)", number, pid, generation)
        return w

    def _worker_main(self, cfg: Config, slot_index: int, number: int, generation: int) -> int:
        """Runs in the forked child; returns its exit status."""
        from .server import worker_settings

        signal.set_wakeup_fd(-1)
        # The master's handlers came along with the fork: until the worker
        # installs its own, a TERM would be queued in this copy of the master
        # and lost, and the booting worker would hang until graceful_timeout.
        # With the default action a worker stopped while booting just exits.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGWINCH,
                    signal.SIGUSR1):
            signal.signal(sig, signal.SIG_IGN)
        os.close(self._wake_r)
        os.close(self._wake_w)
        for fd in (self.upgrade.pipe, self.daemon_pipe):
            if fd is not None:
                os.close(fd)
        # The master's own sockets came along with the fork. A worker holding
        # the control socket would keep answering connects after the master
        # is gone, and one holding a client would keep it from seeing EOF.
        if self.control is not None:
            for client in self.control.pending.values():
                client.conn.close()
            self.control.sock.close()
        for client in self.reload_waiters + self.upgrade.waiters:
            client.conn.close()
        random.seed()
        try:
            drop_privileges(cfg.user, cfg.group)
        except (OSError, KeyError) as e:
            log.error("worker %d cannot switch to user %r / group %r: %s", os.getpid(),
                      cfg.user, cfg.group, e)
            return WORKER_BOOT_ERROR
        # The master asks for stacks with USR2 (request_timeout) and ABRT
        # (heartbeat timeout). faulthandler writes them from C, so they come
        # out even when the loop is stuck holding the GIL; to the error log,
        # not fd 2 (which is /dev/null under --daemon). An ABRT before the
        # worker's own handler is in (a hung import) dumps them too.
        dump_stacks_to_error_log(signal.SIGUSR2)
        _set_title(f"prefork: worker {number} [{self.app_spec or 'demo'}]")
        me = WorkerView(os.getpid(), number, generation)
        # A reload's canary runs the new configuration's hooks already.
        hooks = self.hooks if cfg is self.cfg else self.pending_hooks
        hooks.call("post_fork", self.view(), me)
        app = self.app
        assert self.board is not None
        if app is None:
            try:
                app = load_app(self.app_spec)
            except AppImportError as e:
                log.error("worker %d: %s", os.getpid(), e)
                Slot(self.board, slot_index).set_message(str(e))
                return WORKER_BOOT_ERROR
            except BaseException as e:
                log.exception("worker %d: the application failed to import", os.getpid())
                Slot(self.board, slot_index).set_message(f"{type(e).__name__}: {e}")
                return WORKER_BOOT_ERROR
        worker = Worker(app, self.listeners, worker_settings(cfg),
                        slot=Slot(self.board, slot_index), parent_pid=self.pid)
        worker.dump_signal = signal.SIGUSR2
        worker.install_signals()

        def on_abort(*_: Any) -> None:
            # The stacks were already written on the USR2 sent just before.
            hooks.call("worker_abort", me)
            os._exit(1)

        def on_int(*_: Any) -> None:
            hooks.call("worker_int", me)
            worker.stop(graceful=False)

        signal.signal(signal.SIGABRT, on_abort)
        signal.signal(signal.SIGINT, on_int)
        signal.signal(signal.SIGQUIT, on_int)
        worker.pre_request = hooks.get("pre_request")
        worker.post_request = hooks.get("post_request")
        worker.hook_view = me
        hooks.call("post_worker_init", me)
        if cfg.reload:      # development mode: watch the app's files (reloader.py)
            from .reloader import start_reloader
            start_reloader(cfg, self.pid, self.board)
        worker.run()
        hooks.call("worker_exit", self.view(), me)
        return 0

    # -- reaping -----------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.upgrade.child_exited(pid, status):
                continue
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            assert self.board is not None
            slot = self.board.read(w.slot)
            w.message = slot.message
            if w.ready_since is None and slot.state in (READY, STOPPING):
                # It was serving before the master's next look at the board:
                # a death now is a crash after boot, not a boot failure (and
                # the app did boot: the boot-failure streak is over).
                w.ready_since = time.monotonic()
                self.boot_failures = 0
            self.board.free(w.slot)
            code = os.waitstatus_to_exitcode(status)
            self.hooks.call("child_exit", self.view(), w.view(code))
            self._worker_exited(w, code)

    def _worker_exited(self, w: WorkerProcess, code: int) -> None:
        expected = w.retiring or self.stopping
        if code < 0:
            how = f"was killed by {SIGNAL_NAMES.get(-code, -code)}"
            if code == -signal.SIGKILL and w.kill_at is None and not w.aborted:
                how += " (not by prefork: perhaps out of memory?)"
        else:
            how = f"exited with status {code}"
        if expected and code in (0, -signal.SIGTERM, -signal.SIGKILL):
            log.info("Worker %d (pid %d) stopped", w.number, w.pid)
        elif w.aborted:
            log.error("Worker %d (pid %d) %s after it timed out", w.number, w.pid, how)
        else:
            log.error("Worker %d (pid %d) %s%s", w.number, w.pid, how,
                      " while booting" if w.ready_since is None else "")
        # Unlink from a replacement pair.
        if w.replaced_by is not None and w.replaced_by in self.workers:
            self.workers[w.replaced_by].replacing = None
        if w.replacing is not None and w.replacing in self.workers:
            old = self.workers[w.replacing]
            old.replaced_by = None
        if w.pid == self.canary:
            self._canary_failed(f"the new worker {how}" + (f": {w.message}" if w.message else ""))
            return
        if expected:
            return
        if w.ready_since is not None:
            if not w.aborted:
                self._crashed_after_boot(w, how)
            return
        now = time.monotonic()
        if now >= self.spawn_after:
            # A new failure, not another worker of the same wave: a wave of
            # workers failing together is one failure, not one per worker.
            self.boot_failures += 1
        self.last_boot_error = f"worker {how} while booting"
        if code == WORKER_BOOT_ERROR:
            self.last_boot_error = "the application failed to load (see the error above)"
        delay = backoff(self.boot_failures)
        if self.boot_failures >= self.cfg.max_boot_failures:
            serving = sum(1 for x in self.workers.values()
                          if x.ready_since is not None and not x.retiring)
            if not serving:
                log.critical("Workers failed to boot %d times in a row (%s); stopping. "
                             "Fix the error and start again.", self.boot_failures,
                             self.last_boot_error)
                self.exit_code = MASTER_BOOT_ERROR
                self.stop(graceful=True)
                return
            # Replacements (a reload, max_requests, a crash) cannot boot, but
            # workers of the running code are serving: never stop those for it.
            log.error("Workers failed to boot %d times in a row (%s); %d still serving, so the "
                      "server goes on with them; next try in %.1f s", self.boot_failures,
                      self.last_boot_error, serving, delay)
        else:
            log.warning("Worker failed to boot (%d in a row); next try in %.1f s",
                        self.boot_failures, delay)
        self.spawn_after = max(self.spawn_after, now + delay)

    def _crashed_after_boot(self, w: WorkerProcess, how: str) -> None:
        """A ready worker died on its own (a bug, a segfault in an extension,
        the OOM killer). Not a boot failure: the server stays up and the
        worker is respawned, later each time it keeps happening."""
        now = time.monotonic()
        if now - self.last_crash_at > CRASH_QUIET:
            self.crash_streak = 0
        self.crashes += 1
        self.crash_streak += 1
        self.last_crash_at = now
        self.last_crash = f"worker {w.number} (pid {w.pid}) {how}" + (
            f": {w.message}" if w.message else "")
        delay = backoff(self.crash_streak - 1)
        log.warning("A worker crashed after booting (%d in a row, %d in all); respawning in "
                    "%.1f s. The server keeps running.", self.crash_streak, self.crashes, delay)
        self.spawn_after = max(self.spawn_after, now + delay)

    # -- checks: boot, heartbeat, request age, recycling ------------------

    def _check_workers(self) -> None:
        assert self.board is not None
        now = time.monotonic()
        cfg = self.cfg
        check_memory = cfg.max_worker_memory and now - self.last_memory_check >= MEMORY_CHECK_INTERVAL
        if check_memory:
            self.last_memory_check = now
        for w in list(self.workers.values()):
            slot = self.board.read(w.slot)
            if w.kill_at is not None:
                if now - w.kill_at > KILL_GRACE:
                    self._kill(w.pid, signal.SIGKILL)
                continue
            if w.retiring:
                if w.retired_at and now - w.retired_at > cfg.graceful_timeout + KILL_GRACE:
                    log.warning("worker %d (pid %d) outlived graceful_timeout; killing it",
                                w.number, w.pid)
                    self._kill(w.pid, signal.SIGKILL)
                    w.kill_at = now
                continue
            if slot.state == BOOTING:
                if now - w.spawned > cfg.timeout:
                    log.error("Worker %d (pid %d) did not boot within %g s; killing it",
                              w.number, w.pid, cfg.timeout)
                    self._abort(w)
                continue
            if w.ready_since is None and slot.state == READY:
                w.ready_since = now
                self._worker_ready(w)
            if w.ready_since is None:
                continue
            if self.reload_waiters:
                self._answer_reload_when_rolled_over()
            silent = now - slot.heartbeat
            if silent > cfg.timeout:
                log.critical("WORKER TIMEOUT: worker %d (pid %d) has not beaten for %.1f s "
                             "(timeout=%g); its stacks follow%s", w.number, w.pid, silent,
                             cfg.timeout, f"; oldest request: {slot.oldest_request}"
                             if slot.oldest_request else "")
                self._abort(w)
                continue
            if w.replaced_by is not None:
                continue
            if cfg.request_timeout and slot.oldest_start and now - slot.oldest_start > cfg.request_timeout:
                if w.overdue_request != slot.oldest_start:
                    # Once per request: the replacement may have to wait
                    # (crash back-off, fork failing), the stacks need not.
                    w.overdue_request = slot.oldest_start
                    log.error("Worker %d (pid %d): request %r has run for %.1f s "
                              "(request_timeout=%g); its stacks follow, and the worker will be "
                              "replaced", w.number, w.pid, slot.oldest_request,
                              now - slot.oldest_start, cfg.request_timeout)
                    self._kill(w.pid, signal.SIGUSR2)
                self._replace(w, "request timeout")     # within max_recycling, like recycling
                continue
            if w.generation < self.generation and self.reload_generation is None:
                self._replace(w, "reload", urgent=True)
            elif w.max_requests and slot.requests >= w.max_requests:
                self._replace(w, f"served {slot.requests} requests (max_requests)")
            elif w.max_lifetime and now - w.spawned >= w.max_lifetime:
                self._replace(w, f"lived {now - w.spawned:.0f} s (max_worker_lifetime)")
            elif check_memory:
                rss = memory_rss(w.pid)
                if rss > cfg.max_worker_memory * 1024 * 1024:
                    self._replace(w, f"uses {rss / 1048576:.0f} MiB (max_worker_memory)")

    def _abort(self, w: WorkerProcess) -> None:
        w.aborted = True
        w.kill_at = time.monotonic()
        self._kill(w.pid, signal.SIGUSR2)   # stacks from C, whatever state it is in
        self._kill(w.pid, signal.SIGABRT)   # then the worker_abort hook, and exit

    def _replace(self, w: WorkerProcess, why: str, urgent: bool = False) -> None:
        """Start a worker to take over from ``w``; retire ``w`` once it is ready."""
        recycling = sum(1 for x in self.workers.values() if x.replaced_by is not None)
        if not urgent and recycling >= self.cfg.max_recycling:
            return    # wait for a running recycle to finish
        if time.monotonic() < self.spawn_after:
            return
        new = self.spawn()
        if new is None:
            return
        log.info("Replacing worker %d (pid %d): %s", w.number, w.pid, why)
        w.replaced_by = new.pid
        w.why_replace = why
        new.replacing = w.pid

    def _worker_ready(self, w: WorkerProcess) -> None:
        log.info("Worker %d (pid %d) ready", w.number, w.pid)
        self.boot_failures = 0
        if w.pid == self.canary:
            self._canary_ready(w)
        if w.replacing is not None:
            old = self.workers.get(w.replacing)
            w.replacing = None
            if old is not None:
                self._retire(old)
        if not self.announced_ready and self._all_ready():
            self.announced_ready = True
            log.info("Ready: %d workers serving", self.wanted)
            self.hooks.call("when_ready", self.view())
            self.sd.ready(self)         # READY=1 + MAINPID= before a USR2 predecessor retires
            announce_upgrade_ready()
            for fn in self.on_ready:
                fn()

    def _all_ready(self) -> bool:
        current = [w for w in self.workers.values() if not w.retiring and w.replaced_by is None
                   and w.generation == self.generation]
        return len(current) >= self.wanted and all(w.ready_since is not None for w in current)

    def _retire(self, w: WorkerProcess) -> None:
        w.retiring = True
        w.replaced_by = None
        w.retired_at = time.monotonic()
        self._kill(w.pid, signal.SIGTERM)

    def _manage(self) -> None:
        """Start or retire workers so that ``wanted`` are serving."""
        serving = [w for w in self.workers.values() if not w.retiring and w.replaced_by is None
                   and w.pid != self.canary]
        missing = self.wanted - len(serving)
        if missing > 0:
            if time.monotonic() < self.spawn_after:
                return
            # After a boot failure, one at a time until one boots.
            for _ in range(1 if self.boot_failures else missing):
                self.spawn()
        elif missing < 0:
            for w in sorted(serving, key=lambda x: x.spawned)[:-missing]:
                log.info("Retiring worker %d (pid %d): fewer workers wanted", w.number, w.pid)
                self._retire(w)

    # -- reload (HUP) --------------------------------------------------------

    def reload(self) -> None:
        log.info("Handling signal: HUP (reload)")
        self.hooks.call("on_reload", self.view())
        self.sd.reloading()             # READY=1 follows, whether the reload works or not
        if self.canary is not None:
            log.warning("a reload is already in progress; ignoring HUP")
            return
        if self.cfg.preload or self.app_given:
            if self.argv is None:
                log.error("reload: the app was given in-process (preloaded or embedded) and "
                          "prefork cannot re-exec this program; restart it instead")
                return
            log.info("reload: the app is preloaded in the master; re-executing the master")
            self._start_upgrade()
            return
        new_cfg = self.cfg
        if self.reload_config is not None:
            try:
                new_cfg = self.reload_config()
            except Exception as e:
                log.error("reload failed: the new configuration is invalid: %s; "
                          "keeping the current workers", e)
                return
        try:
            new_hooks = self.hooks if new_cfg is self.cfg else Hooks(new_cfg)
        except ValueError as e:
            log.error("reload failed: %s; keeping the current workers", e)
            return
        self.pending_cfg, self.pending_hooks = new_cfg, new_hooks
        gen = self.generation + 1
        canary = self.spawn(gen, new_cfg)
        if canary is None:
            return
        self.canary = canary.pid
        self.reload_generation = gen
        log.info("reload: booting a canary worker (pid %d) of generation %d", canary.pid, gen)

    def _canary_ready(self, w: WorkerProcess) -> None:
        log.info("reload: the canary booted; replacing the generation %d workers",
                 self.generation)
        new_cfg = self.pending_cfg
        if new_cfg.workers != self.cfg.workers:
            self._set_wanted(new_cfg.workers)
        self.cfg, self.hooks = new_cfg, self.pending_hooks   # the new hooks from now on
        self.generation = self.reload_generation or self.generation
        self.reload_generation = None
        self.canary = None
        self.announced_ready = False
        # The canary takes the place of one old worker.
        old = [x for x in self.workers.values()
               if x.generation < self.generation and not x.retiring and x.replaced_by is None]
        if old:
            oldest = min(old, key=lambda x: x.spawned)
            self._retire(oldest)

    def _answer_reload_when_rolled_over(self) -> None:
        """Tell reload clients once only the new generation accepts connections."""
        assert self.board is not None
        if self.canary is not None or not self._all_ready():
            return
        for w in self.workers.values():
            if w.generation < self.generation:
                if not w.retiring or self.board.read(w.slot).state != STOPPING:
                    return
        for client in self.reload_waiters:
            client.reply({"ok": True, "generation": self.generation})
        self.reload_waiters = []

    def _canary_failed(self, why: str) -> None:
        log.error("reload failed: %s; the current workers keep serving", why)
        self.canary = None
        self.reload_generation = None
        for client in self.reload_waiters:
            client.reply({"ok": False, "error": f"reload failed: {why}; the current workers "
                                                "keep serving"})
        self.reload_waiters = []

    # -- upgrade (USR2): a new master from the current executable (upgrade.py)

    def _start_upgrade(self) -> None:
        self.upgrade.start(self.listeners, self.sd.exec_env())

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
        if self.stopping and cmd in ("reload", "upgrade", "add_workers", "remove_workers"):
            client.reply({"ok": False, "error": f"the server is stopping; {cmd} refused"})
            return
        if cmd == "status":
            assert self.board is not None
            health = {"boot_failures": self.boot_failures,
                      "last_boot_error": self.last_boot_error if self.boot_failures else "",
                      "crashes": self.crashes,
                      "last_crash": self.last_crash,
                      "last_crash_age": (round(time.monotonic() - self.last_crash_at, 1)
                                         if self.crashes else None)}
            client.reply({"ok": True, **server_status(self.view(), self.started,
                                                      self.workers.values(), self.board, health)})
        elif cmd == "stop":
            client.reply({"ok": True, "pid": self.pid})
            self.stop(graceful=bool(req.get("graceful", True)))
        elif cmd == "reload":
            self.reload()
            if self.canary is not None:
                self.reload_waiters.append(client)
            elif self.upgrade.in_progress:
                self.upgrade.waiters.append(client)
            else:
                client.reply({"ok": False, "error": "reload could not start (see the error log)"})
        elif cmd == "upgrade":
            self._start_upgrade()
            if self.upgrade.in_progress:
                self.upgrade.waiters.append(client)
            else:
                client.reply({"ok": False, "error": "upgrade could not start (see the error log)"})
        elif cmd in ("add_workers", "remove_workers"):
            n = req.get("n", 1)
            if not isinstance(n, int) or n < 1:
                client.reply({"ok": False, "error": "n must be a positive integer"})
                return
            target = self.wanted + n if cmd == "add_workers" else max(1, self.wanted - n)
            client.reply({"ok": True, "workers": self._set_wanted(target)})
        else:
            client.reply({"ok": False, "error": f"unknown command {cmd!r}"})


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


def _set_title(title: str) -> None:
    try:
        import setproctitle
        setproctitle.setproctitle(title)
    except ImportError:
        pass
