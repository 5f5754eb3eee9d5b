"""prefork against gunicorn (gthread) under the events of a server's life.

For each event, each server is started afresh (2 workers, 4 threads, the
app of ``tests/apps/chaosapp.py``), put under the load of
``tests/chaos/kit.py`` (client threads, kept-alive and
connection-per-request, GET and POST of varied sizes, every body checked,
no retries), and the event happens while the load runs:

    steady     no event (the baseline: both should fail nothing)
    hup        HUP x5, one every 2 s
    recycle    max_requests 50 (+ jitter 20): workers replaced constantly
    scale      TTIN, TTIN, TTOU, TTOU, each waited for
    kill       SIGKILL of one worker
    upgrade    USR2, the new master's workers answer, TERM to the old master
    logs       logrotate x3: both log files renamed, USR1

What is waited for is the same for both servers and learnt from outside
(process trees, which worker pids answer), never from either
server's log. The result is a markdown table: requests and failed requests
per event and server, with the kinds of failures.

    python -m bench.reliability              # everything (about 3 minutes)
    python -m bench.reliability --only hup,kill --write
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.compare import free_port, machine, stop_group

ROOT = Path(__file__).resolve().parent.parent
# The load lives with the chaos tests (the tests package, found from the root
# like bench); the app it imports by its plain name, as the servers know it.
sys.path.insert(0, str(ROOT / "tests" / "apps"))
from tests.chaos.kit import ChaosLoad, LoadStats, group_members  # noqa: E402

DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- reliability:begin -->", "<!-- reliability:end -->"
WORKERS, THREADS, CLIENTS = 2, 4, 6
APP = "chaosapp:app"


@dataclass
class Server:
    """One server under test: its first master, its log directory, and the
    master USR2 started, once :meth:`find_successor` has seen it."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    logdir: Path
    successor: int | None = None

    @property
    def master(self) -> int:
        return self.proc.pid

    def workers(self, master: int | None = None) -> list[int]:
        """The live worker processes of ``master`` (the first one by default)."""
        try:
            kids = psutil.Process(master or self.master).children()
        except psutil.NoSuchProcess:
            return []
        return sorted(p.pid for p in kids if p.status() != psutil.STATUS_ZOMBIE
                      and p.pid != self.successor)

    def find_successor(self) -> int | None:
        """The new master after USR2: the first master's child that has
        children of its own (workers have none). Both servers fork it from the
        old master; the pidfile would not do, gunicorn 27 names it
        ``PIDFILE.2`` until promoted."""
        try:
            for child in psutil.Process(self.master).children():
                if child.children():
                    self.successor = child.pid
                    return child.pid
        except psutil.NoSuchProcess:
            pass
        return None

    def signal(self, sig: int) -> None:
        os.kill(self.master, sig)


def command(name: str, port: int, logdir: Path, extra: dict[str, str]) -> list[str]:
    """The command line for ``name``, with the same meaning for both servers."""
    py = sys.executable
    bind = f"127.0.0.1:{port}"
    if name == "prefork":
        argv = [py, "-m", "prefork", "start", APP, "--bind", bind, "--workers", str(WORKERS),
                "--threads", str(THREADS), "--control-socket", "",
                "--errorlog", str(logdir / "error.log")]
        if "max_requests" in extra:
            argv += ["--max-requests", extra["max_requests"],
                     "--max-requests-jitter", extra["jitter"]]
        if "accesslog" in extra:
            argv += ["--accesslog", str(logdir / "access.log")]
        return argv
    if name == "gunicorn":
        # --keep-alive 5: prefork's default (gunicorn's is 2 s), as in bench/compare.py.
        # No control socket: gunicorn 27's default path is per user, shared by
        # every gunicorn on the machine.
        argv = [py, "-m", "gunicorn", "-k", "gthread", "-w", str(WORKERS), "--threads",
                str(THREADS), "-b", bind, "--keep-alive", "5", "--no-control-socket",
                "--error-logfile", str(logdir / "error.log")]
        if "max_requests" in extra:
            argv += ["--max-requests", extra["max_requests"],
                     "--max-requests-jitter", extra["jitter"]]
        if "accesslog" in extra:
            argv += ["--access-logfile", str(logdir / "access.log")]
        return [*argv, APP]
    raise ValueError(name)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"{what}: not within {timeout:g} s")


@contextlib.contextmanager
def started(name: str, extra: dict[str, str]) -> Iterator[Server]:
    """Start ``name`` in a session of its own; on the way out stop its whole
    process group (a new master from USR2 included) and check it is gone."""
    tmp = Path(tempfile.mkdtemp(prefix=f"reliability-{name}-"))
    port = free_port()
    argv = command(name, port, tmp, extra)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "tests" / "apps")]))
    out = open(tmp / "stdout.log", "wb")    # noqa: SIM115 (closed below)
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                            start_new_session=True)
    srv = Server(name, proc, port, tmp)
    try:
        wait_for(lambda: len(srv.workers()) == WORKERS and _answers(port), 30,
                 f"{name} did not start ({argv})")
        yield srv
    finally:
        new = srv.successor
        if new and psutil.pid_exists(new):
            with contextlib.suppress(ProcessLookupError):
                os.kill(new, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                wait_for(lambda: new not in group_members(proc.pid), 20,
                         "the new master stopping")
        stop_group(proc)
        out.close()
        with contextlib.suppress(TimeoutError):
            wait_for(lambda: not group_members(proc.pid), 10, "the process group emptying")
        for pid in group_members(proc.pid):
            print(f"  warning: {name} left pid {pid} behind; killing it", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def _answers(port: int) -> bool:
    import socket
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
            c.sendall(b"GET /blob?size=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return c.recv(12).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


# -- the events --------------------------------------------------------------
# Each gets the server and the running load, and returns once the event is
# over; the load then runs SETTLE seconds more before it is stopped.

SETTLE = 2.0


def steady(srv: Server, load: ChaosLoad) -> None:
    time.sleep(8)


def hup(srv: Server, load: ChaosLoad) -> None:
    for _ in range(5):
        srv.signal(signal.SIGHUP)
        time.sleep(2)


def recycle(srv: Server, load: ChaosLoad) -> None:
    time.sleep(8)


def scale(srv: Server, load: ChaosLoad) -> None:
    def count_is(n: int) -> Callable[[], bool]:
        return lambda: len(srv.workers()) == n

    for sig, n in [(signal.SIGTTIN, 3), (signal.SIGTTIN, 4), (signal.SIGTTOU, 3),
                   (signal.SIGTTOU, 2)]:
        srv.signal(sig)
        wait_for(count_is(n), 15, f"{srv.name}: {n} workers")
        time.sleep(1)


def kill(srv: Server, load: ChaosLoad) -> None:
    victim = srv.workers()[0]
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: len(w := srv.workers()) == WORKERS and victim not in w, 15,
             f"{srv.name}: a replacement for the killed worker")
    time.sleep(2)


def upgrade(srv: Server, load: ChaosLoad) -> None:
    old = srv.master
    srv.signal(signal.SIGUSR2)
    new = int(wait_for(srv.find_successor, 20, f"{srv.name}: a new master"))  # type: ignore[call-overload]
    # Ready means: every worker of the new master has answered a request.
    wait_for(lambda: len(w := srv.workers(new)) == WORKERS
             and all(load.stats.pids[p] for p in w), 20,
             f"{srv.name}: the new master's workers answering")
    os.kill(old, signal.SIGTERM)
    srv.proc.wait(30)
    time.sleep(2)


def logs(srv: Server, load: ChaosLoad) -> None:
    for n in (1, 2, 3):
        for log in ("error.log", "access.log"):
            with contextlib.suppress(FileNotFoundError):
                (srv.logdir / log).rename(srv.logdir / f"{log}.{n}")
        srv.signal(signal.SIGUSR1)
        time.sleep(2)


EVENTS: dict[str, tuple[str, Callable[[Server, ChaosLoad], None], dict[str, str]]] = {
    "steady": ("no event (baseline, 8 s)", steady, {}),
    "hup": ("HUP ×5, one every 2 s", hup, {}),
    "recycle": ("max_requests 50 + jitter 20 (8 s)", recycle,
                {"max_requests": "50", "jitter": "20"}),
    "scale": ("TTIN, TTIN, TTOU, TTOU", scale, {}),
    "kill": ("SIGKILL of one worker", kill, {}),
    "upgrade": ("USR2, then TERM to the old master", upgrade, {}),
    "logs": ("logs renamed + USR1, ×3", logs, {"accesslog": "1"}),
}


def run_one(name: str, event: str) -> LoadStats:
    _, action, extra = EVENTS[event]
    with started(name, extra) as srv:
        with ChaosLoad("127.0.0.1", srv.port, threads=CLIENTS) as load:
            load.wait_for_ok(100)
            action(srv, load)
            time.sleep(SETTLE)
        if load.stats.failures:
            print("    " + load.report(limit=3).replace("\n", "\n    "), flush=True)
        return load.stats


@dataclass
class Tally:
    """The stats of every round of one event on one server, added up."""

    requests: int = 0
    failed: int = 0
    reconnects: int = 0
    pids: int = 0
    kinds: Counter[str] = field(default_factory=Counter)

    def add(self, stats: LoadStats) -> None:
        self.requests += stats.requests
        self.failed += len(stats.failures)
        self.reconnects += stats.reconnects
        self.pids += len(stats.pids)
        self.kinds.update(stats.kinds())


def cell(t: Tally) -> str:
    kinds = ", ".join(f"{k} {n}" for k, n in t.kinds.most_common())
    return f"{t.requests:,} / **{t.failed}**" + (f" ({kinds})" if kinds else "")


def table(results: dict[str, dict[str, Tally]]) -> str:
    servers = ("prefork", "gunicorn")
    lines = ["| event | prefork requests / failed | gunicorn gthread requests / failed "
             "| stale kept-alive reopened (p / g) | worker pids that answered (p / g) |",
             "|---|---:|---:|---:|---:|"]
    for event, by_server in results.items():
        row = [EVENTS[event][0]] + [cell(by_server[s]) if s in by_server else "–"
                                    for s in servers]
        row.append(" / ".join(str(by_server[s].reconnects) if s in by_server else "–"
                              for s in servers))
        row.append(" / ".join(str(by_server[s].pids) if s in by_server else "–"
                              for s in servers))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_doc(text: str, took: float, rounds: int) -> None:
    import prefork
    section = "\n".join([
        BEGIN,
        f"Generated by `make reliability` on {time.strftime('%Y-%m-%d')}: {machine()}; "
        f"prefork {prefork.__version__}. "
        f"{WORKERS} workers × {THREADS} threads each, {CLIENTS} client threads; "
        f"each figure adds up {rounds} rounds; the run took {took / 60:.1f} minutes.",
        "",
        text,
        END,
    ])
    doc = DOC.read_text()
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + section + tail)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reliability",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--only", type=lambda s: s.split(","), default=list(EVENTS),
                   help=f"comma-separated events (default all: {','.join(EVENTS)})")
    p.add_argument("--servers", type=lambda s: s.split(","), default=["prefork", "gunicorn"])
    p.add_argument("--rounds", type=int, default=2,
                   help="runs of each event on each server, added up (default 2)")
    p.add_argument("--write", action="store_true",
                   help=f"put the table into {DOC.relative_to(ROOT)}")
    args = p.parse_args(argv)
    unknown = set(args.only) - set(EVENTS)
    if unknown:
        p.error(f"unknown events: {', '.join(sorted(unknown))}")

    # A TERM to this process must still stop the servers (own sessions).
    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    t0 = time.monotonic()
    results: dict[str, dict[str, Tally]] = {}
    for rnd in range(args.rounds):
        for event in args.only:
            # Alternate which server goes first, so neither always runs on a
            # machine the other has just warmed (or tired).
            for name in args.servers if rnd % 2 == 0 else args.servers[::-1]:
                print(f"round {rnd + 1} {EVENTS[event][0]:38} {name:8}", end=" ", flush=True)
                try:
                    stats = run_one(name, event)
                except (TimeoutError, subprocess.TimeoutExpired) as e:
                    print(f"did not complete: {e}", flush=True)
                    continue
                results.setdefault(event, {}).setdefault(name, Tally()).add(stats)
                print(f"{stats.requests:7} requests, {len(stats.failures)} failed, "
                      f"{stats.reconnects} reopened", flush=True)
    took = time.monotonic() - t0
    text = table(results)
    print()
    print(text)
    print(f"\n(took {took:.0f} s)")
    if args.write:
        write_doc(text, took, args.rounds)
        print(f"wrote {DOC.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
