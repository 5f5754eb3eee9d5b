"""The supervision policy, sans I/O: a fake clock, fake forks, fake slots.

Each test drives prefork.supervisor.Supervisor the way the master does —
forks reported, scoreboard passes, exits with their status — and asserts on
the actions it returns. No process is started; the same decisions are
checked end to end by tests/e2e/test_master.py and tests/chaos/.
"""

from __future__ import annotations

import random
import signal
from dataclasses import FrozenInstanceError, replace
from typing import Any

import pytest

from prefork.config import Config
from prefork.scoreboard import BOOTING, READY, STOPPING, SlotView
from prefork.supervisor import (
    BACKOFF_MAX,
    BOOT_ERROR,
    CRASH_QUIET,
    FORK_RETRY,
    KILL_GRACE,
    STACKS_GRACE,
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
    backoff,
)

pytestmark = pytest.mark.timeout(10)
S = WorkerState


class Harness:
    """The master's side, faked: forks succeed (unless told not to), slots are
    plain values the test sets, and every action is kept for assertions."""

    def __init__(self, **settings: Any):
        settings.setdefault("workers", 2)
        settings.setdefault("canary_probation", 1.0)
        self.cfg = Config(settings)
        self.now = 1000.0
        self.sup = Supervisor(self.cfg, 64, hooks="hooks-1", rng=random.Random(1))
        self.slots: dict[int, SlotView] = {}
        self.next_pid = 100
        self.fail_forks = False
        self.log: list[Any] = []
        self.sup.start(self.now)
        self.act()

    # -- the master's side ---------------------------------------------------

    def act(self) -> list[Any]:
        done = []
        while True:
            actions = self.sup.take()
            if not actions:
                return done
            for a in actions:
                done.append(a)
                self.log.append(a)
                if isinstance(a, Spawn):
                    if self.fail_forks:
                        self.sup.fork_failed(a.number, "cannot fork a worker: EAGAIN", self.now)
                        continue
                    self.next_pid += 1
                    self.slots[a.number] = SlotView(a.number, self.next_pid, a.number,
                                                    a.generation, BOOTING, 0.0, self.now, 0, 0,
                                                    0, 0.0, "", "")
                    self.sup.forked(a.number, self.next_pid, a.number, self.now)

    def tick(self, dt: float = 0.25, rss: dict[int, int] | None = None) -> list[Any]:
        self.now += dt
        for n, slot in self.slots.items():
            if slot.state in (READY, STOPPING) and n not in self.hung:
                self.slots[n] = replace(slot, heartbeat=self.now)
        self.sup.tick(dict(self.slots), self.now, rss)
        return self.act()

    hung: set[int] = set()

    def set(self, number: int, **fields: Any) -> None:
        self.slots[number] = replace(self.slots[number], **fields)

    def ready(self, *numbers: int) -> list[Any]:
        for n in numbers:
            self.set(n, state=READY, heartbeat=self.now)
        return self.tick(0.0)

    def exit(self, number: int, code: int, dt: float = 0.0) -> list[Any]:
        self.now += dt
        w = self.sup.workers[number]
        slot = self.slots.pop(number)
        self.sup.exited(w.pid, code, slot, self.now)
        return self.act()

    def retire_acknowledged(self) -> None:
        """Workers sent TERM close their listeners (the slot says STOPPING)."""
        for w in self.sup.workers.values():
            if w.state is S.RETIRING and w.number in self.slots:
                self.set(w.number, state=STOPPING)

    def reap_retired(self) -> None:
        for w in list(self.sup.workers.values()):
            if w.state in (S.RETIRING, S.KILLED):
                self.exit(w.number, 0)

    # -- what happened ---------------------------------------------------------

    def numbers(self, *states: WorkerState) -> list[int]:
        return sorted(w.number for w in self.sup.workers.values() if w.state in states)

    def spawns(self, actions: list[Any]) -> list[Spawn]:
        return [a for a in actions if isinstance(a, Spawn)]

    def signals_to(self, number: int, actions: list[Any]) -> list[int]:
        pid = self.sup.workers[number].pid if number in self.sup.workers else None
        return [a.sig for a in actions if isinstance(a, Signal) and a.pid == pid]


def booted(**settings: Any) -> Harness:
    h = Harness(**settings)
    h.ready(*h.numbers(S.BOOTING))
    return h


# -- boot and announce ---------------------------------------------------------

def test_start_spawns_the_wanted_workers_and_says_ready_once_all_are():
    h = Harness(workers=3)
    assert [s.number for s in h.spawns(h.log)] == [1, 2, 3]
    assert h.numbers(S.BOOTING) == [1, 2, 3]
    assert not [a for a in h.ready(1, 2) if isinstance(a, Ready)]
    out = h.ready(3)
    assert [a for a in out if isinstance(a, Ready)] == [Ready(1, 3)]
    assert not [a for a in h.tick() if isinstance(a, Ready)]      # once only
    assert h.numbers(S.READY) == [1, 2, 3]


def test_transitions_outside_the_table_are_refused():
    h = Harness(workers=1)
    w = h.sup.workers[1]
    with pytest.raises(AssertionError):
        h.sup._enter(w, S.FORKING, h.now)


def test_a_worker_that_does_not_boot_in_time_is_aborted_then_killed():
    h = Harness(workers=1, timeout=5)
    out = h.tick(5.5)
    assert h.signals_to(1, out) == [signal.SIGUSR2]
    assert h.sup.workers[1].state is S.DUMPING
    out = h.tick(STACKS_GRACE)
    assert h.signals_to(1, out) == [signal.SIGABRT]
    assert h.sup.workers[1].state is S.ABORTED
    out = h.tick(KILL_GRACE)
    assert h.signals_to(1, out) == [signal.SIGKILL]
    h.exit(1, -signal.SIGKILL)
    assert h.sup.boot_failures == 1      # it never booted: a boot failure


# -- boot failures ---------------------------------------------------------------

def test_a_wave_of_boot_failures_counts_once_and_backs_off():
    h = Harness(workers=3, max_boot_failures=5)
    for n in (1, 2, 3):
        h.exit(n, BOOT_ERROR)
    assert h.sup.boot_failures == 1
    assert h.sup.spawn_after == pytest.approx(h.now + backoff(1))
    assert not h.spawns(h.tick(0.1))            # still backing off
    out = h.tick(0.2)
    assert len(h.spawns(out)) == 1              # one at a time until one boots


def test_boot_failures_with_nothing_serving_stop_the_server_with_status_3():
    h = Harness(workers=1, max_boot_failures=3)
    for _ in range(3):
        (n,) = h.numbers(S.BOOTING)
        out = h.exit(n, BOOT_ERROR)
        if h.sup.stopping:
            break
        h.tick(BACKOFF_MAX)
    assert h.sup.exit_code == BOOT_ERROR
    assert Stopping(True) in out
    assert h.sup.done


def test_replacements_that_fail_to_boot_never_stop_the_healthy_workers():
    h = booted(workers=2, max_requests=10, max_boot_failures=2, max_recycling=1)
    h.set(1, requests=11)
    out = h.tick()
    (spawn,) = h.spawns(out)
    assert h.sup.workers[1].state is S.REPLACED
    for _ in range(6):        # the replacement keeps failing: 3 x the limit
        h.exit(spawn.number, BOOT_ERROR)
        assert h.sup.workers[1].state is S.READY      # back to serving, not retired
        out = h.tick(BACKOFF_MAX)
        spawns = h.spawns(out)
        if not spawns:
            out = h.tick(BACKOFF_MAX)
            spawns = h.spawns(out)
        (spawn,) = spawns
    assert not h.sup.stopping
    assert h.sup.boot_failures >= 2
    assert len(h.sup.serving()) == 2
    # The dependency comes back: the replacement boots, the old one retires.
    h.ready(spawn.number)
    assert h.sup.workers[1].state is S.RETIRING
    assert h.sup.boot_failures == 0


def test_fork_failure_keeps_the_running_workers_and_retries_later():
    h = booted(workers=2)
    h.fail_forks = True
    h.exit(2, -signal.SIGSEGV)                       # a crash: a respawn is due
    h.tick(1.0)
    assert h.sup.spawn_after >= h.now
    assert not h.sup.stopping and h.numbers(S.READY) == [1]
    h.fail_forks = False
    out = h.tick(FORK_RETRY + BACKOFF_MAX)
    assert len(h.spawns(out)) == 1


# -- crashes after boot ------------------------------------------------------------

def test_crashes_after_boot_back_off_more_each_time_and_never_stop_the_server():
    h = booted(workers=1, max_boot_failures=2)
    delays = []
    for _ in range(6):
        (n,) = h.numbers(S.READY)
        h.exit(n, -signal.SIGSEGV)
        delays.append(round(h.sup.spawn_after - h.now, 3))
        h.now = h.sup.spawn_after
        out = h.tick(0.0)
        (spawn,) = h.spawns(out)
        h.ready(spawn.number)          # boots fine, and crashes right after
    assert delays == [backoff(i) for i in range(6)]
    assert not h.sup.stopping and h.sup.boot_failures == 0
    assert h.sup.crashes == 6 and "SIGSEGV" in h.sup.last_crash


def test_backoff_doubles_up_to_its_cap_and_never_overflows():
    # A streak can grow without end while old workers serve and their
    # replacements keep failing; 2.0 ** 1024 alone would raise OverflowError.
    assert [backoff(i) for i in range(4)] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert backoff(1024) == backoff(10**6) == BACKOFF_MAX


def test_the_crash_streak_resets_after_a_quiet_spell():
    h = booted(workers=1)
    h.exit(1, -signal.SIGSEGV)
    h.now = h.sup.spawn_after
    (spawn,) = h.spawns(h.tick(0.0))
    h.ready(spawn.number)
    h.exit(spawn.number, -signal.SIGSEGV, dt=CRASH_QUIET + 1)
    assert h.sup.crash_streak == 1
    assert h.sup.spawn_after - h.now == pytest.approx(backoff(0))


def test_a_worker_ready_on_the_board_but_not_yet_seen_crashes_after_boot():
    h = Harness(workers=1, max_boot_failures=1)
    h.set(1, state=READY)                  # ready; the master has not looked yet
    h.exit(1, -signal.SIGSEGV)
    assert h.sup.boot_failures == 0 and h.sup.crashes == 1
    assert not h.sup.stopping


# -- heartbeats, request_timeout, recycling ---------------------------------------

def test_a_silent_worker_is_aborted_and_its_death_is_not_a_crash():
    h = booted(workers=2, timeout=10)
    h.hung = {1}
    out = h.tick(10.5)
    assert h.signals_to(1, out) == [signal.SIGUSR2]      # the stacks first, on their own
    assert not h.sup.healthy(h.slots, h.now)
    out = h.tick(STACKS_GRACE)
    assert h.signals_to(1, out) == [signal.SIGABRT]
    out = h.tick(KILL_GRACE)
    assert h.signals_to(1, out) == [signal.SIGKILL]
    assert len(h.spawns(out)) == 1          # its replacement starts with the KILL
    out = h.exit(1, -signal.SIGKILL)
    assert h.sup.crashes == 0 and h.sup.boot_failures == 0
    assert not h.spawns(out)


def test_request_timeout_dumps_stacks_once_and_replaces_within_max_recycling():
    h = booted(workers=3, request_timeout=5, max_recycling=1)
    for n in (1, 2, 3):
        h.set(n, oldest_start=h.now, oldest_request="GET /slow")
    out = h.tick(6)
    usr2 = [a for a in out if isinstance(a, Signal) and a.sig == signal.SIGUSR2]
    assert len(usr2) == 3                  # every overdue request's stacks
    assert len(h.spawns(out)) == 1         # but one replacement at a time
    out = h.tick()
    assert not [a for a in out if isinstance(a, Signal) and a.sig == signal.SIGUSR2]
    assert not h.spawns(out)


def test_max_requests_recycles_one_at_a_time_and_retires_after_the_successor_is_ready():
    h = booted(workers=4, max_requests=100, max_requests_jitter=0, max_recycling=1)
    for n in (1, 2, 3, 4):
        h.set(n, requests=100)
    (spawn,) = h.spawns(h.tick())
    assert h.numbers(S.REPLACED) == [1]
    assert not h.spawns(h.tick())
    h.ready(spawn.number)
    assert h.sup.workers[1].state is S.RETIRING
    assert h.signals_to(1, h.log[-3:]) == [signal.SIGTERM]
    (spawn,) = h.spawns(h.tick())
    assert h.numbers(S.REPLACED) == [2]


def test_max_requests_jitter_spreads_the_limits():
    h = Harness(workers=8, max_requests=1000, max_requests_jitter=500)
    limits = {w.max_requests for w in h.sup.workers.values()}
    assert len(limits) > 4 and all(1000 <= x <= 1500 for x in limits)


def test_memory_limit_replaces_a_worker_over_it():
    h = booted(workers=2, max_worker_memory=100)
    out = h.tick(rss={1: 50 << 20, 2: 150 << 20})
    assert len(h.spawns(out)) == 1 and h.numbers(S.REPLACED) == [2]


# -- scaling -------------------------------------------------------------------------

def test_set_wanted_is_capped_and_retires_the_oldest_workers():
    h = booted(workers=3)
    assert h.sup.set_wanted(100) == 32
    h.act()
    assert h.sup.set_wanted(1) == 1
    out = h.tick()
    assert WantedChanged(1, 32) in out
    assert h.numbers(S.RETIRING)[:2] == [1, 2]


# -- reload: canary, probation, rollback ------------------------------------------------

def new_cfg(h: Harness, **changes: Any) -> Config:
    values = {"workers": h.cfg.workers, "canary_probation": h.cfg.canary_probation, **changes}
    return Config(values)


def test_reload_boots_one_canary_that_serves_on_probation_before_any_old_worker_leaves():
    h = booted(workers=2, canary_probation=2.0)
    cfg2 = new_cfg(h)
    ticket = h.sup.reload(cfg2, h.now, hooks="hooks-2")
    (spawn,) = h.spawns(h.act())
    assert (spawn.generation, spawn.cfg, spawn.hooks) == (2, cfg2, "hooks-2")
    h.ready(spawn.number)
    assert h.sup.workers[spawn.number].state is S.PROBATION
    h.tick(1.0)
    assert h.numbers(S.READY) == [1, 2] and h.sup.generation == 1      # nobody retired yet
    out = h.tick(1.0)
    assert Switch(cfg2, "hooks-2") in out
    assert h.sup.generation == 2 and h.numbers(S.RETIRING) == [1]
    h.tick()                                   # worker 2 is replaced at once
    (successor,) = [w for w in h.sup.workers.values() if w.state is S.BOOTING]
    h.ready(successor.number)
    h.retire_acknowledged()
    out = h.tick()
    assert ReloadDone((ticket,), True, 2) in out
    assert [a for a in h.log if isinstance(a, Ready)] == [Ready(1, 2), Ready(2, 2)]


def test_a_canary_that_dies_on_probation_rolls_the_reload_back_without_a_crash_loop():
    h = booted(workers=2)
    ticket = h.sup.reload(new_cfg(h), h.now)
    (spawn,) = h.spawns(h.act())
    h.ready(spawn.number)
    out = h.exit(spawn.number, -signal.SIGSEGV, dt=0.3)
    (done,) = [a for a in out if isinstance(a, ReloadDone)]
    assert done.tickets == (ticket,) and not done.ok and "SIGSEGV" in done.error
    assert h.sup.generation == 1 and h.sup.trial is None
    for _ in range(20):
        assert not h.spawns(h.tick())      # no new canary, no respawn of it
    assert h.numbers(S.READY) == [1, 2]


def test_a_canary_answering_mostly_5xx_fails_while_the_old_workers_answer_fine():
    h = booted(workers=2)
    ticket = h.sup.reload(new_cfg(h), h.now)
    (spawn,) = h.spawns(h.act())
    c = spawn.number
    h.ready(c)
    h.set(c, requests=10, errors=8)
    h.set(1, requests=20, errors=0)
    h.set(2, requests=20, errors=1)
    out = h.tick(0.3)
    assert signal.SIGTERM in h.signals_to(c, out)
    (done,) = [a for a in out if isinstance(a, ReloadDone)]
    assert done.tickets == (ticket,) and not done.ok and "8 of 10" in done.error
    assert h.sup.generation == 1


def test_a_canary_as_broken_as_the_old_code_is_not_blamed_for_it():
    h = booted(workers=2)
    h.sup.reload(new_cfg(h), h.now)
    (spawn,) = h.spawns(h.act())
    h.ready(spawn.number)
    h.set(spawn.number, requests=10, errors=9)
    h.set(1, requests=10, errors=9)
    h.set(2, requests=10, errors=8)
    h.tick(0.5)
    out = h.tick(0.6)
    assert any(isinstance(a, Switch) for a in out)


def test_a_reload_asked_for_during_a_canary_is_queued_not_lost():
    h = booted(workers=1, canary_probation=0.5)
    first = h.sup.reload(new_cfg(h), h.now, hooks="v2")
    (c2,) = h.spawns(h.act())
    second = h.sup.reload(new_cfg(h), h.now, hooks="v3")
    third = h.sup.reload(new_cfg(h), h.now, hooks="v3b")     # merged with the second
    assert not h.spawns(h.act())
    h.ready(c2.number)
    out = h.tick(0.6)
    assert any(isinstance(a, Switch) for a in out)
    (c3,) = [s for s in h.spawns(out) if s.generation == 3]
    assert c3.hooks == "v3b"
    h.ready(c3.number)
    h.tick(0.6)
    assert h.sup.generation == 3
    for _ in range(3):
        h.retire_acknowledged()
        h.reap_retired()
        booting = h.numbers(S.BOOTING)
        if booting:
            h.ready(*booting)
        h.tick()
    done = [a for a in h.log if isinstance(a, ReloadDone)]
    assert {t for d in done if d.ok for t in d.tickets} == {first, second, third}
    assert [d.generation for d in done if third in d.tickets] == [3]


def test_a_reload_with_another_worker_count_applies_it_once_accepted():
    h = booted(workers=2, canary_probation=0.0)
    h.sup.reload(new_cfg(h, workers=3), h.now)
    (c,) = h.spawns(h.act())
    assert h.sup.wanted == 2
    out = h.ready(c.number)
    assert WantedChanged(3, 2) in out and h.sup.wanted == 3


# -- stopping --------------------------------------------------------------------------

def test_a_graceful_stop_terms_everyone_and_kills_at_the_deadline():
    h = booted(workers=2, graceful_timeout=5)
    h.sup.stop(True, h.now)
    out = h.act()
    assert Stopping(True) in out
    assert sorted(a.sig for a in out if isinstance(a, Signal)) == [signal.SIGTERM] * 2
    assert not [a for a in h.tick(5.5) if isinstance(a, Signal)]
    out = h.tick(1.0)
    assert sorted(a.sig for a in out if isinstance(a, Signal)) == [signal.SIGKILL] * 2


def test_a_fast_stop_after_a_graceful_one_shortens_the_deadline():
    h = booted(workers=1, graceful_timeout=30)
    h.sup.stop(True, h.now)
    h.act()
    h.sup.stop(False, h.now)
    out = h.act()
    assert h.signals_to(1, out) == [signal.SIGQUIT]
    out = h.tick(2.5)
    assert h.signals_to(1, out) == [signal.SIGKILL]
    h.sup.stop(True, h.now)       # a fast stop stays fast
    assert not h.act()


def test_nothing_new_starts_while_stopping():
    h = booted(workers=2, max_requests=1)
    h.sup.reload(new_cfg(h), h.now)
    (canary,) = h.spawns(h.act())
    h.sup.stop(True, h.now)
    out = h.act()
    assert any(isinstance(a, ReloadDone) and not a.ok for a in out)
    assert signal.SIGTERM in h.signals_to(canary.number, out)
    ticket = h.sup.reload(new_cfg(h), h.now)
    assert ReloadDone((ticket,), False, error="the server is stopping") in h.act()
    h.set(1, requests=10)
    h.exit(2, -signal.SIGSEGV)
    assert not h.spawns(h.tick())
    for n in list(h.sup.workers):
        h.exit(n, 0)
    assert h.sup.done


def test_a_worker_forked_just_as_the_stop_began_is_stopped_too():
    h = booted(workers=1)
    h.sup._spawn(h.now)                    # decided before the stop ...
    h.sup.stop(True, h.now)
    out = h.act()                          # ... forked after it
    (late,) = [w for w in h.sup.workers.values() if w.number != 1]
    assert late.state is S.RETIRING
    assert signal.SIGTERM in h.signals_to(late.number, out)


# -- what the metrics count ------------------------------------------------------

def nonzero(h: Harness) -> dict[str, int]:
    return {cause: n for cause, n in h.sup.exits.items() if n}


def test_exits_are_counted_by_cause():
    h = booted(workers=2, max_requests=10, max_requests_jitter=0, max_recycling=1, timeout=10)
    h.set(1, requests=10)
    (spawn,) = h.spawns(h.tick())
    h.ready(spawn.number)
    h.reap_retired()
    assert nonzero(h) == {"max_requests": 1}
    h.exit(2, -signal.SIGSEGV)                  # a crash after boot
    assert nonzero(h) == {"max_requests": 1, "crash": 1}
    h.tick(5)
    (booting,) = h.numbers(S.BOOTING)
    h.exit(booting, BOOT_ERROR)          # its replacement fails to import
    assert nonzero(h) == {"max_requests": 1, "crash": 1, "boot_failure": 1}
    h.tick(5)
    h.ready(*h.numbers(S.BOOTING))
    silent = h.numbers(S.READY)[0]
    h.hung = {silent}
    h.tick(10.5)
    h.tick(STACKS_GRACE)
    h.tick(KILL_GRACE)
    h.exit(silent, -signal.SIGKILL)
    h.hung = set()
    assert nonzero(h)["timeout"] == 1
    h.ready(*h.numbers(S.BOOTING))
    assert len(h.numbers(S.READY)) == 2
    h.sup.set_wanted(1)
    h.tick()
    h.reap_retired()
    assert nonzero(h)["scale_down"] == 1
    h.sup.stop(True, h.now)
    h.act()
    h.reap_retired()
    assert nonzero(h) == {"max_requests": 1, "crash": 1, "boot_failure": 1, "timeout": 1,
                          "scale_down": 1, "stop": 1}


def test_a_reload_counts_the_old_generation_as_reload_exits():
    h = booted(workers=2, canary_probation=1.0)
    h.sup.reload(new_cfg(h), h.now, hooks="hooks-2")
    (canary,) = h.spawns(h.act())
    h.ready(canary.number)
    h.tick(1.0)
    h.tick()
    h.ready(*h.numbers(S.BOOTING))
    h.retire_acknowledged()
    h.reap_retired()
    assert nonzero(h) == {"reload": 2}


def test_request_timeouts_are_counted_once_per_request():
    h = booted(workers=2, request_timeout=5, max_recycling=1)
    h.set(1, oldest_start=h.now, oldest_request="GET /slow")
    h.tick(6)
    h.tick()
    h.tick()
    assert h.sup.request_timeouts == 1
    (successor,) = h.numbers(S.BOOTING)
    h.ready(successor)
    h.reap_retired()
    assert nonzero(h) == {"request_timeout": 1}


# -- the snapshot: what status, systemd and metrics are given ------------------------

def snapshot(h: Harness, dt: float = 0.0, **master: Any) -> MasterSnapshot:
    """What Master.snapshot() would make at ``h.now + dt`` (the clock is not moved)."""
    facts: dict[str, Any] = {"pid": 7, "app": "testapp:app", "listeners": ("http://127.0.0.1:1",),
                             "started": 1.7e9, "uptime": h.now + dt - 1000.0,
                             "upgrading": False, "handed_over": False, **master}
    return h.sup.snapshot(dict(h.slots), h.now + dt, **facts)


def test_the_snapshot_is_frozen_and_copies_what_it_shows():
    h = booted(workers=2)
    snap = snapshot(h)
    with pytest.raises(FrozenInstanceError):
        snap.stopping = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.exits["crash"] = 1  # type: ignore[index]
    h.exit(1, -signal.SIGSEGV)
    # The supervisor moved on; the snapshot still shows the moment it was made.
    assert [w.number for w in snap.workers] == [1, 2] and snap.exits["crash"] == 0
    assert snap.crashes == 0 and h.sup.crashes == 1


def test_the_snapshot_serves_the_supervisors_serving_workers():
    h = booted(workers=2, max_requests=10, max_recycling=1)
    assert [w.number for w in snapshot(h).serving] == [1, 2]
    h.set(1, requests=10)
    h.tick()
    (successor,) = h.numbers(S.BOOTING)
    snap = snapshot(h)
    # Replaced still serves until its successor is ready; a booting one does not yet.
    assert {w.number: (w.state, w.serving) for w in snap.workers} == {
        1: (S.REPLACED, True), 2: (S.READY, True), successor: (S.BOOTING, False)}
    assert snap.serving == tuple(w for w in snap.workers if w.number in (1, 2))
    assert [w.number for w in snap.serving] == sorted(w.number for w in h.sup.serving())
    h.ready(successor)
    assert [w.number for w in snapshot(h).serving] == [2, successor]     # 1 is retiring


def test_a_canary_on_probation_is_serving_and_the_reload_is_reported():
    h = booted(workers=2, canary_probation=2.0)
    h.sup.reload(new_cfg(h), h.now, hooks="hooks-2")
    (canary,) = h.spawns(h.act())
    snap = snapshot(h)
    assert snap.reloading and snap.reload_in_progress and snap.ready
    assert snap.reload_status == "generation 2: canary booting"
    h.ready(canary.number)
    snap = snapshot(h)
    assert len(snap.serving) == 3 and snap.reload_status == "generation 2: canary probation"
    assert snap.generation == 1


def test_an_upgrade_is_a_reload_in_progress_for_systemd():
    h = booted(workers=1)
    snap = snapshot(h, upgrading=True)
    assert not snap.reloading and snap.reload_in_progress and not snap.handed_over
    assert not snapshot(h).reload_in_progress


def test_the_snapshot_is_unhealthy_once_a_serving_worker_misses_its_heartbeat():
    h = booted(workers=2, timeout=10)
    h.hung = {1}
    h.tick(5.0)
    beat = h.slots[1].heartbeat
    assert snapshot(h, beat + 10.0 - h.now).healthy            # at the timeout: still fine
    assert not snapshot(h, beat + 10.5 - h.now).healthy        # past it, before the master looks
    h.tick(5.5)
    assert h.sup.workers[1].state is S.DUMPING
    assert not snapshot(h).healthy                              # being aborted
    h.tick(STACKS_GRACE)
    assert not snapshot(h).healthy
    h.tick(KILL_GRACE)
    assert h.sup.workers[1].state is S.KILLED
    assert snapshot(h).healthy            # the hung one is gone; the rest beat


def test_a_booting_or_retiring_worker_never_makes_the_snapshot_unhealthy():
    h = Harness(workers=1, timeout=10)
    assert snapshot(h, 9.0).healthy       # booting: its boot deadline is the supervisor's
    h.ready(1)
    h.sup.stop(True, h.now)
    h.act()
    h.hung = {1}
    assert snapshot(h, 60.0).healthy      # retiring: KILL at its deadline, not the watchdog


def test_the_ready_reason_follows_boot_crash_and_stop():
    h = Harness(workers=2)
    assert snapshot(h).not_ready == "workers are booting" and not snapshot(h).ready
    h.ready(1)
    assert snapshot(h).not_ready == "workers are booting"      # the first generation is not all up
    h.ready(2)
    assert snapshot(h).not_ready == "" and snapshot(h).ready
    h.exit(1, -signal.SIGSEGV)
    h.exit(2, -signal.SIGSEGV)
    assert snapshot(h).not_ready == "no worker is serving"
    assert snapshot(h).not_ready == h.sup.not_ready()
    h.tick(BACKOFF_MAX)
    h.ready(*h.numbers(S.BOOTING))
    assert snapshot(h).ready                                   # announced once is enough
    h.sup.stop(True, h.now)
    assert snapshot(h).not_ready == "stopping" and snapshot(h).stopping


def test_status_measures_every_age_from_the_snapshots_clock():
    from prefork.status import server_status

    h = booted(workers=1)
    h.set(1, requests=3, in_flight=1, oldest_start=h.now - 2.0, oldest_request="GET /slow")
    h.sup.crashes, h.sup.last_crash, h.sup.last_crash_at = 1, "worker 9 died", h.now - 4.0
    answer = server_status(snapshot(h, 10.0))
    master, (worker,) = answer["master"], answer["workers"]
    assert list(master)[:12] == ["pid", "app", "generation", "workers_wanted", "listeners",
                                 "uptime", "boot_failures", "last_boot_error", "crashes",
                                 "last_crash", "last_crash_age", "reload"]
    assert (master["pid"], master["app"], master["listeners"]) == (
        7, "testapp:app", ["http://127.0.0.1:1"])
    assert master["uptime"] == 10.0 and master["last_crash_age"] == 14.0
    assert master["last_boot_error"] == "" and master["reload"] == ""
    assert worker["state"] == "ready" and worker["requests"] == 3 and worker["in_flight"] == 1
    assert worker["oldest_request_age"] == 12.0 and worker["heartbeat_age"] == 10.0
    assert worker["uptime"] == 10.0


def test_systemd_status_counts_serving_workers_and_every_live_request():
    from prefork.systemd import Systemd

    h = booted(workers=2, max_requests=10, max_recycling=1)
    sd = Systemd()
    first = snapshot(h)
    assert sd._status_text(first) == "2 workers, 0 in flight, 0.0 req/s, generation 1"
    h.set(1, requests=10, in_flight=2)
    h.set(2, requests=4)
    h.tick()
    h.ready(*h.numbers(S.BOOTING))          # worker 1 retires, still running two requests
    assert h.sup.workers[1].state is S.RETIRING
    later = snapshot(h, first.now + 2.0 - h.now)
    assert sd._status_text(later) == "2 workers, 2 in flight, 7.0 req/s, generation 1"
