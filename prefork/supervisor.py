"""What the master decides, without doing any of it: the supervision policy.

:class:`Supervisor` holds a record of every worker with an explicit
:class:`WorkerState`, and is fed observations — a fork's outcome, a pass
over the scoreboard, an exit status, the time, an operator's command — to
which it answers with actions for the master to carry out: :class:`Spawn`
a worker, :class:`Signal` one, and events (:class:`Ready`,
:class:`ReloadDone`, :class:`Switch`, :class:`WantedChanged`). It makes no
system call and reads no clock: the caller passes ``now``, so back-off,
boot-failure counting, canary acceptance, recycling budgets and what is
allowed while stopping are unit-tested with a fake clock
(tests/test_supervisor.py), the way the HTTP parser is. The master
(master.py) is the I/O shell around it.

A worker's life::

    FORKING -> BOOTING -> READY <-> REPLACED -> RETIRING -> (exit)
                      \\-> PROBATION -> READY        (a reload's canary)
    any live state -> DUMPING (missed a deadline) -> ABORTED -> KILLED -> (exit)
    RETIRING -> KILLED (outlived its grace)

* FORKING: the Spawn action is out; the master reports the fork (or its failure).
* BOOTING: forked, importing the app; not yet counted as serving.
* PROBATION: a reload's canary, ready and taking live traffic next to the old
  generation; accepted after ``canary_probation`` seconds unless it died or
  answered most of its requests with 5xx while the old workers did not.
* READY: serving. REPLACED: still serving, its replacement is booting; it
  goes back to READY if the replacement fails. A worker is retired only
  once its replacement is ready, so capacity never dips.
* RETIRING: TERM sent (or QUIT on a fast stop); KILL at its deadline.
* DUMPING: missed its boot or heartbeat deadline; USR2 sent, for its stacks.
  ABRT follows STACKS_GRACE later, not at once: the two may be caught by
  different threads, and the exit must not cut the stacks short.
* ABORTED: ABRT sent (the worker_abort hook, then exit); KILL after
  KILL_GRACE. KILLED: KILL sent.

Every change of state goes through :meth:`Supervisor._enter`, which checks
it against ``TRANSITIONS``.

What the rest of the server shows — ``prefork status``, systemd's STATUS=
and watchdog, /metrics and /readyz — comes from one frozen
:class:`MasterSnapshot` made by :meth:`Supervisor.snapshot`. Which workers
are *serving* (:attr:`WorkerRecord.serving`), whether they are *healthy*
(:meth:`Supervisor.healthy`) and why the server is not *ready*
(:meth:`Supervisor.not_ready`) are defined here and nowhere else.
"""

from __future__ import annotations

import enum
import logging
import random
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .scoreboard import BOOTING as SLOT_BOOTING
from .scoreboard import READY as SLOT_READY
from .scoreboard import STOPPING as SLOT_STOPPING
from .scoreboard import SlotView

if TYPE_CHECKING:
    from .config import Config

log = logging.getLogger("prefork.error")

# Exit status 3 has one meaning wherever it is used: the application could
# not be booted. A worker exits with it when loading the app fails; the
# master, when a preloaded app fails to import or workers keep failing to
# boot. Either way it says "fix the code", not "the server crashed" (the
# worker's value is gunicorn's, the master passes it on as gunicorn's does).
BOOT_ERROR = 3
KILL_GRACE = 2.0            # after ABRT or a missed graceful deadline, then KILL
STACKS_GRACE = 0.5          # after USR2 (stacks), before ABRT
# Retries after boot failures and after crashes wait backoff(n): 0.1 s
# doubling, at most BACKOFF_MAX. A worker that died after it was ready never
# stops the server (only workers that never became ready count towards
# max_boot_failures); its streak resets once no worker has crashed for
# CRASH_QUIET seconds.
BACKOFF_MAX = 10.0
CRASH_QUIET = 30.0
FORK_RETRY = 1.0            # after fork() failed (EAGAIN, ENOMEM)
# A canary that answered at least this many requests during its probation,
# more than half of them with 5xx while the old generation answered less
# than half of its own with 5xx, fails the reload.
CANARY_MIN_REQUESTS = 5
TIMED_OUT = "timed out"     # WorkerRecord.why of an aborted worker

SIGNAL_NAMES = {s.value: s.name for s in signal.Signals}   # SIGABRT, not its alias SIGIOT
# Why workers left, counted in Supervisor.exits (the metrics' worker exits by cause).
EXIT_CAUSES = ("reload", "max_requests", "max_worker_lifetime", "max_worker_memory",
               "request_timeout", "scale_down", "timeout", "crash", "boot_failure", "stop")


def backoff(n: int) -> float:
    """Seconds before the next try after the ``n``-th retry in a row (from 0)."""
    # The exponent is capped: a streak that never ends (workers serving while
    # their replacements keep failing) would otherwise overflow a float.
    return min(0.1 * 2.0 ** min(n, 16), BACKOFF_MAX)


class WorkerState(enum.Enum):
    FORKING = "forking"
    BOOTING = "booting"
    PROBATION = "probation"
    READY = "ready"
    REPLACED = "replaced"
    RETIRING = "retiring"
    DUMPING = "dumping"
    ABORTED = "aborted"
    KILLED = "killed"


S = WorkerState
TRANSITIONS: dict[WorkerState, frozenset[WorkerState]] = {
    S.FORKING: frozenset({S.BOOTING}),
    S.BOOTING: frozenset({S.READY, S.PROBATION, S.RETIRING, S.DUMPING}),
    S.PROBATION: frozenset({S.READY, S.RETIRING, S.DUMPING}),
    S.READY: frozenset({S.REPLACED, S.RETIRING, S.DUMPING}),
    S.REPLACED: frozenset({S.READY, S.RETIRING, S.DUMPING}),
    S.RETIRING: frozenset({S.RETIRING, S.KILLED}),
    S.DUMPING: frozenset({S.ABORTED}),
    S.ABORTED: frozenset({S.KILLED}),
    S.KILLED: frozenset({S.KILLED}),
}


class ServerState(enum.Enum):
    RUNNING = "running"
    GRACEFUL_STOP = "graceful stop"
    FAST_STOP = "fast stop"


# -- actions ---------------------------------------------------------------

@dataclass(frozen=True)
class Spawn:
    """Fork worker ``number``; report it with forked() or fork_failed().
    ``cfg`` and ``hooks`` are its generation's (a reload's canary runs the
    new ones before they are accepted)."""

    number: int
    generation: int
    cfg: Config
    hooks: Any


@dataclass(frozen=True)
class Signal:
    pid: int
    sig: int


@dataclass(frozen=True)
class Ready:
    """Every worker of ``generation`` is ready (announce it: hooks, systemd)."""

    generation: int
    workers: int


@dataclass(frozen=True)
class Switch:
    """A reload was accepted: the master takes ``cfg`` and ``hooks`` from now on."""

    cfg: Config
    hooks: Any


@dataclass(frozen=True)
class Stopping:
    """The server began to stop (a command, or workers that cannot boot)."""

    graceful: bool


@dataclass(frozen=True)
class ReloadDone:
    """Answer the clients waiting on these reload tickets."""

    tickets: tuple[int, ...]
    ok: bool
    generation: int = 0
    error: str = ""


@dataclass(frozen=True)
class WantedChanged:
    new: int
    old: int


Action = Spawn | Signal | Ready | Switch | Stopping | ReloadDone | WantedChanged


@dataclass(eq=False)
class WorkerRecord:
    """The supervisor's record of one worker (keyed by its number)."""

    number: int
    generation: int
    spawned: float
    cfg: Config
    hooks: Any = None
    state: WorkerState = S.FORKING
    since: float = 0.0            # when it entered ``state``
    deadline: float = 0.0         # RETIRING / ABORTED / KILLED: when to (re)send KILL
    pid: int = 0
    slot: int = -1
    ready_at: float | None = None
    replaces: int | None = None       # number of the worker it will take over from
    replaced_by: int | None = None    # number of the worker booting to replace it
    max_requests: int = 0
    max_lifetime: float = 0.0
    why: str = ""                     # why it was replaced or retired
    cause: str = ""                   # the same as a key of EXIT_CAUSES
    message: str = ""                 # what it said about its failure (the slot's message)
    overdue_request: float = 0.0      # start of the request past request_timeout already reported

    @property
    def serving(self) -> bool:
        """Ready and not on its way out (REPLACED still serves until its successor is up)."""
        return self.state in (S.READY, S.REPLACED, S.PROBATION)


@dataclass(frozen=True, slots=True)
class WorkerSnapshot:
    """One forked worker as a :class:`MasterSnapshot` shows it."""

    number: int
    pid: int
    generation: int
    state: WorkerState
    spawned: float                # when it was forked (the caller's clock)
    serving: bool                 # WorkerRecord.serving when the snapshot was taken
    slot: SlotView                # its scoreboard slot, read with the snapshot


@dataclass(frozen=True, slots=True)
class MasterSnapshot:
    """The server at one moment, read-only: what ``prefork status``, systemd's
    STATUS= and watchdog, ``/metrics`` and ``/readyz`` are made from.

    :meth:`Supervisor.snapshot` builds it, so *serving* (:attr:`WorkerRecord.serving`),
    *healthy* (:meth:`Supervisor.healthy`) and *ready* (:meth:`Supervisor.not_ready`)
    each have one definition, the supervisor's; the master adds what only it
    knows (its pid, the listeners, the upgrade). Nothing in it changes after
    it is made, and reading it makes no system call.
    """

    now: float                    # the clock the snapshot was taken at (monotonic)
    pid: int                      # the master's
    app: str
    listeners: tuple[str, ...]
    started: float                # the master's start, Unix time
    uptime: float                 # seconds since then, on the monotonic clock
    generation: int
    wanted: int
    stopping: bool
    reloading: bool               # Supervisor.reloading
    upgrading: bool               # a new master started by USR2 has not been reaped
    handed_over: bool             # ... and it said ready: this master is on its way out
    healthy: bool
    not_ready: str                # why /readyz answers 503; "" when ready
    workers: tuple[WorkerSnapshot, ...]     # forked and not yet reaped, by number
    boot_failures: int
    last_boot_error: str
    crashes: int
    last_crash: str
    last_crash_at: float
    reload_status: str            # Supervisor.reload_status()
    exits: Mapping[str, int]      # Supervisor.exits, copied
    request_timeouts: int

    @property
    def serving(self) -> tuple[WorkerSnapshot, ...]:
        return tuple(w for w in self.workers if w.serving)

    @property
    def ready(self) -> bool:
        return not self.not_ready

    @property
    def reload_in_progress(self) -> bool:
        """A reload (HUP) or an upgrade (USR2, or HUP with preload) has not ended."""
        return self.reloading or self.upgrading


@dataclass
class Reload:
    tickets: list[int]
    cfg: Config
    hooks: Any
    generation: int = 0
    canary: int | None = None          # the canary's worker number
    trial_start: float = 0.0
    # Counters at the start of the probation: (requests, errors) by worker number.
    baseline: dict[int, tuple[int, int]] = field(default_factory=dict)


class Supervisor:
    """The policy, for the settings in ``cfg``."""

    def __init__(self, cfg: Config, capacity: int, hooks: Any = None,
                 rng: random.Random | None = None):
        self.cfg = cfg
        self.hooks = hooks              # opaque: handed back with Spawn and Switch
        self.capacity = capacity        # scoreboard slots
        self.rng = rng or random.Random()
        self.workers: dict[int, WorkerRecord] = {}
        self.by_pid: dict[int, WorkerRecord] = {}
        self.wanted: int = cfg.workers
        self.generation = 1
        self.announced = 0              # the last generation announced Ready
        self.next_number = 1
        self.state = ServerState.RUNNING
        self.exit_code = 0
        self.boot_failures = 0
        self.last_boot_error = ""
        self.crashes = 0                # workers that died after they were ready
        self.crash_streak = 0           # of those, in a row (see CRASH_QUIET)
        self.last_crash = ""
        self.last_crash_at = 0.0
        self.spawn_after = 0.0          # no spawn before (back-off, fork failure)
        self.trial: Reload | None = None           # the reload in its canary phase
        self.queued: Reload | None = None          # asked for while a canary ran
        self.rolling: list[Reload] = []            # accepted, old generation leaving
        self.next_ticket = 1
        self.actions: list[Action] = []
        self.exits: dict[str, int] = dict.fromkeys(EXIT_CAUSES, 0)
        self.request_timeouts = 0       # requests that ran past request_timeout

    # -- plumbing ------------------------------------------------------------

    def take(self) -> list[Action]:
        """The actions decided since the last call, in order."""
        out, self.actions = self.actions, []
        return out

    def _enter(self, w: WorkerRecord, state: WorkerState, now: float, deadline: float = 0.0) -> None:
        if state not in TRANSITIONS[w.state]:
            raise AssertionError(f"worker {w.number}: {w.state.name} -> {state.name}")
        w.state, w.since = state, now
        if deadline:
            w.deadline = deadline

    def _signal(self, w: WorkerRecord, sig: int) -> None:
        if w.pid:
            self.actions.append(Signal(w.pid, sig))

    @property
    def stopping(self) -> bool:
        return self.state is not ServerState.RUNNING

    @property
    def done(self) -> bool:
        """Stopping, and every worker is gone."""
        return self.stopping and not self.workers

    @property
    def reloading(self) -> bool:
        """A reload has not yet ended: its canary is on trial, another is
        queued, or the accepted generation is not all ready yet."""
        return (self.trial is not None or self.queued is not None
                or self.announced < self.generation)

    def serving(self) -> list[WorkerRecord]:
        return [w for w in self.workers.values() if w.serving]

    def healthy(self, slots: Mapping[int, SlotView], now: float) -> bool:
        """No serving worker has missed its heartbeat past ``timeout``, and
        none is being aborted for it (systemd's watchdog waits on this)."""
        for w in self.workers.values():
            if w.state in (S.DUMPING, S.ABORTED):
                return False
            if w.serving and w.number in slots and now - slots[w.number].heartbeat > self.cfg.timeout:
                return False
        return True

    def not_ready(self) -> str:
        """Why the server is not ready for traffic (/readyz answers 503 with
        it), or "" when it is: the first generation has been announced
        ready, no stop has begun, and a worker is serving."""
        if self.stopping:
            return "stopping"
        if self.announced < 1:
            return "workers are booting"
        if not self.serving():
            return "no worker is serving"
        return ""

    def reload_status(self) -> str:
        """Where a reload is, in words (``prefork status``); "" when none is under way."""
        if self.trial is not None:
            canary = self.workers.get(self.trial.canary or 0)
            state = canary.state.value if canary is not None else "starting"
            return f"generation {self.trial.generation}: canary {state}" + (
                ", another reload queued" if self.queued is not None else "")
        if self.rolling:
            return f"generation {self.generation}: replacing the old workers"
        return ""

    def snapshot(self, slots: Mapping[int, SlotView], now: float, *, pid: int, app: str,
                 listeners: tuple[str, ...], started: float, uptime: float,
                 upgrading: bool, handed_over: bool) -> MasterSnapshot:
        """The state now, frozen, with ``slots`` (by worker number, read once
        by the caller) and what only the master knows (the keyword arguments).
        A worker without a slot in ``slots`` has not been forked yet and is
        left out."""
        workers = tuple(
            WorkerSnapshot(w.number, w.pid, w.generation, w.state, w.spawned, w.serving,
                           slots[w.number])
            for w in sorted(self.workers.values(), key=lambda x: x.number)
            if w.pid and w.number in slots)
        return MasterSnapshot(
            now=now, pid=pid, app=app, listeners=listeners, started=started, uptime=uptime,
            generation=self.generation, wanted=self.wanted, stopping=self.stopping,
            reloading=self.reloading, upgrading=upgrading, handed_over=handed_over,
            healthy=self.healthy(slots, now), not_ready=self.not_ready(), workers=workers,
            boot_failures=self.boot_failures, last_boot_error=self.last_boot_error,
            crashes=self.crashes, last_crash=self.last_crash, last_crash_at=self.last_crash_at,
            reload_status=self.reload_status(), exits=MappingProxyType(dict(self.exits)),
            request_timeouts=self.request_timeouts)

    # -- spawning --------------------------------------------------------------

    def _spawn(self, now: float, reload: Reload | None = None) -> WorkerRecord:
        if reload is not None:
            generation, cfg, hooks = reload.generation, reload.cfg, reload.hooks
        else:
            generation, cfg, hooks = self.generation, self.cfg, self.hooks
        w = WorkerRecord(self.next_number, generation, now, cfg, hooks, since=now)
        self.next_number += 1
        if cfg.max_requests:
            w.max_requests = cfg.max_requests + self.rng.randint(0, cfg.max_requests_jitter)
        if cfg.max_worker_lifetime:
            w.max_lifetime = cfg.max_worker_lifetime * (1 + self.rng.uniform(0, 0.1))
        self.workers[w.number] = w
        self.actions.append(Spawn(w.number, w.generation, cfg, hooks))
        return w

    def forked(self, number: int, pid: int, slot: int, now: float) -> None:
        w = self.workers[number]
        w.pid, w.slot, w.spawned = pid, slot, now
        self.by_pid[pid] = w
        self._enter(w, S.BOOTING, now)
        log.info("Booting worker %d (pid %d, generation %d)", number, pid, w.generation)
        if self.stopping:       # decided before the stop, forked after it
            self._signal(w, signal.SIGTERM if self.state is ServerState.GRACEFUL_STOP
                         else signal.SIGQUIT)
            self._enter(w, S.RETIRING, now, now + self.cfg.graceful_timeout + KILL_GRACE)

    def fork_failed(self, number: int, error: str, now: float) -> None:
        """fork() failed (EAGAIN: the pids limit; ENOMEM) or no slot was free:
        the workers running go on serving; try again a little later."""
        w = self.workers.pop(number)
        self._unlink(w)
        self.spawn_after = max(self.spawn_after, now + FORK_RETRY)
        log.error("cannot start a worker: %s; the %d running go on, next try in %.0f s",
                  error, len(self.workers), FORK_RETRY)
        if self.trial is not None and self.trial.canary == number:
            self._trial_failed(f"cannot start the canary: {error}", now)

    # -- commands ----------------------------------------------------------------

    def start(self, now: float) -> None:
        self._manage(now)

    def set_wanted(self, n: int) -> int:
        """Change the worker count; returns the count set. At most half the
        scoreboard: each worker may need a second slot for its replacement."""
        limit = self.capacity // 2
        if n > limit:
            log.warning("Cannot run %d workers: at most %d with this start-up's scoreboard "
                        "(restart with a larger 'workers' for more)", n, limit)
            n = limit
        n = max(n, 0)
        if n != self.wanted:
            old, self.wanted = self.wanted, n
            log.info("Number of workers: %d -> %d", old, n)
            self.actions.append(WantedChanged(n, old))
        return n

    def stop(self, graceful: bool, now: float) -> None:
        """TERM (graceful) or QUIT (fast) to every worker; KILL at the deadline.
        A graceful stop can turn fast; a fast one stays fast."""
        if self.state is ServerState.FAST_STOP or (self.stopping and graceful):
            return
        self.state = ServerState.GRACEFUL_STOP if graceful else ServerState.FAST_STOP
        self.actions.append(Stopping(graceful))
        log.info("Handling signal: %s (%s stop)", "TERM" if graceful else "INT/QUIT",
                 "graceful" if graceful else "fast")
        for reload in [r for r in (self.trial, self.queued) if r is not None] + self.rolling:
            self.actions.append(ReloadDone(tuple(reload.tickets), False,
                                           error="the server is stopping"))
        self.trial = self.queued = None
        self.rolling = []
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        deadline = now + (self.cfg.graceful_timeout if graceful else 1.0) + 1.0
        for w in self.workers.values():
            if w.state in (S.FORKING, S.DUMPING, S.ABORTED, S.KILLED):
                continue
            self._signal(w, sig)
            w.deadline = min(w.deadline, deadline) if w.state is S.RETIRING else deadline
            self._enter(w, S.RETIRING, now)

    def reload(self, cfg: Config, now: float, hooks: Any = None) -> int:
        """Start a reload with ``cfg``: boot one canary of a new generation.
        Returns a ticket, answered by a ReloadDone. One asked for while a
        canary runs is queued and starts when that one ends (with the newest
        configuration: reloads asked for meanwhile are merged into it)."""
        ticket = self.next_ticket
        self.next_ticket += 1
        if self.stopping:
            self.actions.append(ReloadDone((ticket,), False, error="the server is stopping"))
            return ticket
        if self.trial is not None:
            tickets = (self.queued.tickets if self.queued else []) + [ticket]
            self.queued = Reload(tickets, cfg, hooks)
            log.info("reload: one is already in progress; this one starts when it ends")
            return ticket
        self._begin_trial(Reload([ticket], cfg, hooks), now)
        return ticket

    def _begin_trial(self, reload: Reload, now: float) -> None:
        reload.generation = self.generation + 1
        self.trial = reload
        canary = self._spawn(now, reload)
        reload.canary = canary.number
        log.info("reload: booting a canary worker of generation %d", reload.generation)

    # -- observations -------------------------------------------------------------

    def exited(self, pid: int, code: int, slot: SlotView | None, now: float) -> WorkerRecord | None:
        """Worker ``pid`` exited with ``code`` (os.waitstatus_to_exitcode);
        ``slot`` is its scoreboard slot as it left it. Returns its record."""
        w = self.by_pid.pop(pid, None)
        if w is None:
            return None
        del self.workers[w.number]
        if slot is not None:
            w.message = slot.message
            if w.state is S.BOOTING and slot.state in (SLOT_READY, SLOT_STOPPING):
                # It was serving before the last look at the board: a death
                # now is a crash after boot, not a boot failure.
                w.ready_at = now
                self.boot_failures = 0
        aborted = w.why == TIMED_OUT
        expected = (w.state in (S.RETIRING, S.KILLED) and not aborted) or self.stopping
        if code < 0:
            how = f"was killed by {SIGNAL_NAMES.get(-code, -code)}"
            if code == -signal.SIGKILL and w.state not in (S.KILLED, S.ABORTED, S.DUMPING):
                how += " (not by prefork: perhaps out of memory?)"
        else:
            how = f"exited with status {code}"
        if expected and code in (0, -signal.SIGTERM, -signal.SIGKILL):
            log.info("Worker %d (pid %d) stopped", w.number, w.pid)
        elif aborted:
            log.error("Worker %d (pid %d) %s after it timed out", w.number, w.pid, how)
        else:
            log.error("Worker %d (pid %d) %s%s", w.number, w.pid, how,
                      " while booting" if w.ready_at is None else "")
        self._unlink(w)
        if self.stopping and not aborted:
            cause = "stop"
        elif aborted:
            cause = "timeout"
        elif expected:
            cause = w.cause or "stop"
        else:
            cause = "crash" if w.ready_at is not None else "boot_failure"
        self.exits[cause] += 1
        if self.trial is not None and self.trial.canary == w.number:
            self._trial_failed(f"the new worker {how}" + (f": {w.message}" if w.message else ""),
                               now)
        elif expected or (aborted and w.ready_at is not None):
            pass
        elif w.ready_at is not None:
            self._crashed_after_boot(w, how, now)
        else:
            self._boot_failed(w, code, how, now)
        if not self.stopping:
            self._manage(now)
        return w

    def _unlink(self, w: WorkerRecord) -> None:
        """Take ``w`` out of a replacement pair."""
        if w.replaced_by is not None:
            successor = self.workers.get(w.replaced_by)
            if successor is not None:
                successor.replaces = None
            w.replaced_by = None
        if w.replaces is not None:
            old = self.workers.get(w.replaces)
            if old is not None:
                old.replaced_by = None
                if old.state is S.REPLACED:
                    self._enter(old, S.READY, old.since)
            w.replaces = None

    def _boot_failed(self, w: WorkerRecord, code: int, how: str, now: float) -> None:
        if now >= self.spawn_after:
            # A new failure, not another worker of the same wave: a wave of
            # workers failing together is one failure, not one per worker.
            self.boot_failures += 1
        self.last_boot_error = f"worker {how} while booting"
        if code == BOOT_ERROR:
            self.last_boot_error = "the application failed to load (see the error above)"
        delay = backoff(self.boot_failures)
        if self.boot_failures >= self.cfg.max_boot_failures:
            serving = len(self.serving())
            if not serving:
                log.critical("Workers failed to boot %d times in a row (%s); stopping. "
                             "Fix the error and start again.", self.boot_failures,
                             self.last_boot_error)
                self.exit_code = BOOT_ERROR
                self.stop(True, now)
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

    def _crashed_after_boot(self, w: WorkerRecord, how: str, now: float) -> None:
        """A ready worker died on its own (a bug, a segfault in an extension,
        the OOM killer). Not a boot failure: the server stays up and the
        worker is respawned, later each time it keeps happening."""
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

    def tick(self, slots: Mapping[int, SlotView], now: float,
             rss: Mapping[int, int] | None = None) -> None:
        """A pass over the scoreboard: ``slots`` by worker number; ``rss``
        (bytes, by worker number) when the master measured memory this pass."""
        cfg = self.cfg
        for w in list(self.workers.values()):
            if w.state is S.DUMPING:
                if now >= w.deadline:
                    self._signal(w, signal.SIGABRT)   # the worker_abort hook, and exit
                    self._enter(w, S.ABORTED, now, now + KILL_GRACE)
                continue
            if w.state in (S.ABORTED, S.RETIRING, S.KILLED):
                if now >= w.deadline:
                    if w.state is S.RETIRING:
                        log.warning("worker %d (pid %d) did not stop in time; killing it",
                                    w.number, w.pid)
                    self._signal(w, signal.SIGKILL)
                    self._enter(w, S.KILLED, now, now + KILL_GRACE)
                continue
            slot = slots.get(w.number)
            if slot is None or w.state is S.FORKING or self.stopping:
                continue
            if w.state is S.BOOTING:
                if slot.state == SLOT_READY:
                    self._became_ready(w, slot, now)
                elif slot.state == SLOT_BOOTING and now - w.spawned > cfg.timeout:
                    log.error("Worker %d (pid %d) did not boot within %g s; killing it",
                              w.number, w.pid, cfg.timeout)
                    self._abort(w, now)
                if w.state is S.BOOTING or w.state is S.DUMPING:
                    continue
            silent = now - slot.heartbeat
            if silent > cfg.timeout:
                log.critical("WORKER TIMEOUT: worker %d (pid %d) has not beaten for %.1f s "
                             "(timeout=%g); its stacks follow%s", w.number, w.pid, silent,
                             cfg.timeout, f"; oldest request: {slot.oldest_request}"
                             if slot.oldest_request else "")
                self._abort(w, now)
                continue
            if w.state is S.PROBATION:
                self._judge_canary(w, slot, slots, now)
                continue
            if w.state is not S.READY:
                continue
            if (cfg.request_timeout and slot.oldest_start
                    and now - slot.oldest_start > cfg.request_timeout):
                if w.overdue_request != slot.oldest_start:
                    # Once per request: the replacement may have to wait
                    # (crash back-off, fork failing), the stacks need not.
                    w.overdue_request = slot.oldest_start
                    log.error("Worker %d (pid %d): request %r has run for %.1f s "
                              "(request_timeout=%g); its stacks follow, and the worker will be "
                              "replaced", w.number, w.pid, slot.oldest_request,
                              now - slot.oldest_start, cfg.request_timeout)
                    self.request_timeouts += 1
                    self._signal(w, signal.SIGUSR2)
                # within max_recycling
                self._replace(w, "request timeout", "request_timeout", now)
            elif w.generation < self.generation and self.trial is None:
                self._replace(w, "reload", "reload", now, urgent=True)
            elif w.max_requests and slot.requests >= w.max_requests:
                self._replace(w, f"served {slot.requests} requests (max_requests)",
                              "max_requests", now)
            elif w.max_lifetime and now - w.spawned >= w.max_lifetime:
                self._replace(w, f"lived {now - w.spawned:.0f} s (max_worker_lifetime)",
                              "max_worker_lifetime", now)
            elif rss is not None and cfg.max_worker_memory:
                used = rss.get(w.number, 0)
                if used > cfg.max_worker_memory * 1024 * 1024:
                    self._replace(w, f"uses {used / 1048576:.0f} MiB (max_worker_memory)",
                                  "max_worker_memory", now)
        if not self.stopping:
            self._check_rollouts(slots)
            self._manage(now)

    def _abort(self, w: WorkerRecord, now: float) -> None:
        w.why = TIMED_OUT
        self._signal(w, signal.SIGUSR2)   # stacks from C, whatever state it is in
        self._enter(w, S.DUMPING, now, now + STACKS_GRACE)

    def _became_ready(self, w: WorkerRecord, slot: SlotView, now: float) -> None:
        log.info("Worker %d (pid %d) ready", w.number, w.pid)
        w.ready_at = now
        self.boot_failures = 0
        trial = self.trial
        if trial is not None and trial.canary == w.number:
            self._enter(w, S.PROBATION, now)
            trial.trial_start = now
            trial.baseline = {}
            log.info("reload: the canary (pid %d) is serving; on probation for %g s",
                     w.pid, trial.cfg.canary_probation)
            return
        self._enter(w, S.READY, now)
        if w.replaces is not None:
            old = self.workers.get(w.replaces)
            w.replaces = None
            if old is not None:
                old.replaced_by = None
                self._retire(old, now)

    def _judge_canary(self, w: WorkerRecord, slot: SlotView, slots: Mapping[int, SlotView],
                      now: float) -> None:
        """Accept the canary after its probation, unless it answered most of
        its requests with 5xx while the old generation did not."""
        trial = self.trial
        assert trial is not None
        if not trial.baseline:
            trial.baseline = {n: (s.requests, s.errors) for n, s in slots.items()}
            trial.baseline.setdefault(w.number, (slot.requests, slot.errors))
        base_req, base_err = trial.baseline[w.number]
        served, errors = slot.requests - base_req, slot.errors - base_err
        if served >= CANARY_MIN_REQUESTS and errors * 2 > served:
            old_served = old_errors = 0
            for n, (req0, err0) in trial.baseline.items():
                other = self.workers.get(n)
                if n == w.number or other is None or n not in slots:
                    continue
                old_served += slots[n].requests - req0
                old_errors += slots[n].errors - err0
            if old_served < CANARY_MIN_REQUESTS or old_errors * 2 <= old_served:
                self._signal(w, signal.SIGTERM)
                self._enter(w, S.RETIRING, now, now + self.cfg.graceful_timeout + KILL_GRACE)
                self._trial_failed(f"the canary answered {errors} of {served} requests with a "
                                   f"5xx status (the running workers {old_errors} of "
                                   f"{old_served})", now)
                return
        if now - trial.trial_start >= trial.cfg.canary_probation:
            self._accept_canary(w, served, now)

    def _accept_canary(self, w: WorkerRecord, served: int, now: float) -> None:
        trial = self.trial
        assert trial is not None
        log.info("reload: the canary booted and served %d requests in %.1f s; replacing the "
                 "generation %d workers", served, now - trial.trial_start, self.generation)
        self._enter(w, S.READY, now)
        new_cfg = trial.cfg
        if new_cfg.workers != self.cfg.workers:
            self.set_wanted(new_cfg.workers)
        self.cfg, self.hooks = new_cfg, trial.hooks
        self.actions.append(Switch(new_cfg, trial.hooks))
        self.generation = trial.generation
        self.rolling.append(trial)
        self.trial = None
        # The canary takes the place of one old worker.
        old = [x for x in self.workers.values()
               if x.generation < self.generation and x.state is S.READY]
        if old:
            self._retire(min(old, key=lambda x: x.spawned), now, cause="reload")
        if self.queued is not None:
            queued, self.queued = self.queued, None
            self._begin_trial(queued, now)

    def _trial_failed(self, why: str, now: float) -> None:
        trial = self.trial
        assert trial is not None
        log.error("reload failed: %s; the current workers keep serving", why)
        self.trial = None
        self.actions.append(ReloadDone(tuple(trial.tickets), False,
                                       error=f"reload failed: {why}; the current workers "
                                             "keep serving"))
        if self.queued is not None:
            queued, self.queued = self.queued, None
            self._begin_trial(queued, now)

    def _check_rollouts(self, slots: Mapping[int, SlotView]) -> None:
        """Answer a reload once only its generation (or a newer one) accepts
        connections: every current worker ready, every older one stopping."""
        if not self.rolling or not self._all_ready():
            return
        done = []
        for reload in self.rolling:
            pending = False
            for w in self.workers.values():
                if w.generation < reload.generation:
                    slot = slots.get(w.number)
                    if w.state not in (S.RETIRING, S.KILLED) or (
                            w.state is S.RETIRING and slot is not None
                            and slot.state != SLOT_STOPPING):
                        pending = True
                        break
            if not pending:
                done.append(reload)
                self.actions.append(ReloadDone(tuple(reload.tickets), True, reload.generation))
        self.rolling = [r for r in self.rolling if r not in done]

    def _all_ready(self) -> bool:
        current = [w for w in self.workers.values() if w.generation == self.generation
                   and w.state not in (S.RETIRING, S.KILLED, S.REPLACED)]
        return len(current) >= self.wanted and all(w.state is S.READY for w in current)

    def _replace(self, w: WorkerRecord, why: str, cause: str, now: float,
                 urgent: bool = False) -> None:
        """Start a worker to take over from ``w``; retire ``w`` once it is ready."""
        recycling = sum(1 for x in self.workers.values() if x.state is S.REPLACED)
        if not urgent and recycling >= self.cfg.max_recycling:
            return    # wait for a running recycle to finish
        if now < self.spawn_after:
            return
        new = self._spawn(now)
        log.info("Replacing worker %d (pid %d): %s", w.number, w.pid, why)
        self._enter(w, S.REPLACED, now)
        w.replaced_by = new.number
        w.why, w.cause = why, cause
        new.replaces = w.number

    def _retire(self, w: WorkerRecord, now: float, why: str = "", cause: str = "") -> None:
        if cause:
            w.cause = cause
        if why:
            log.info("Retiring worker %d (pid %d): %s", w.number, w.pid, why)
        self._signal(w, signal.SIGTERM)
        self._enter(w, S.RETIRING, now, now + self.cfg.graceful_timeout + KILL_GRACE)

    def _manage(self, now: float) -> None:
        """Start or retire workers so that ``wanted`` are serving, and say
        Ready once every worker of the current generation is."""
        # A worker and its booting replacement count once (the replacement).
        counted = [w for w in self.workers.values()
                   if w.state in (S.FORKING, S.BOOTING, S.READY, S.DUMPING, S.ABORTED)
                   and not self._is_canary(w)]
        missing = self.wanted - len(counted)
        if missing > 0:
            if now >= self.spawn_after:
                # After a boot failure, one at a time until one boots.
                for _ in range(1 if self.boot_failures else missing):
                    self._spawn(now)
        elif missing < 0:
            for w in sorted(counted, key=lambda x: x.spawned)[:-missing]:
                if w.state in (S.DUMPING, S.ABORTED):
                    continue
                self._retire(w, now, "fewer workers wanted", "scale_down")
        if self.announced < self.generation and self._all_ready():
            self.announced = self.generation
            log.info("Ready: %d workers serving", self.wanted)
            self.actions.append(Ready(self.generation, self.wanted))

    def _is_canary(self, w: WorkerRecord) -> bool:
        return self.trial is not None and self.trial.canary == w.number
