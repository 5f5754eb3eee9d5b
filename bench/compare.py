"""prefork against gunicorn (gthread), side by side, in one run.

Each server runs one worker with the same number of threads, pinned to CPU 0;
wrk runs pinned to CPU 1. For every app (hello, a Django view), every mode
(keep-alive, ``Connection: close``) and every connection count, each server
is measured for ``--duration`` seconds, in ``--rounds`` interleaved rounds
(the server order alternates), and the median is reported with the ratio
prefork/gunicorn. A last scenario opens 1000 idle keep-alive connections and
1000 that never send a byte, then times fresh requests.

    python -m bench                  # the full table (< 10 minutes), writes docs/benchmarks.md
    python -m bench --quick          # a short look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
APPS = {"hello": "bench.apps:hello", "django": "bench.djangoapp.wsgi:application"}


def server_command(name: str, app: str, port: int, threads: int) -> list[str]:
    py = sys.executable
    if name == "prefork":
        return [py, "-m", "prefork", "start", app, "--bind", f"127.0.0.1:{port}", "--workers", "1",
                "--threads", str(threads), "--loglevel", "warning", "--control-socket", ""]
    if name == "gunicorn":
        return [py, "-m", "gunicorn", "-k", "gthread", "-w", "1", "--threads", str(threads),
                "-b", f"127.0.0.1:{port}", "--keep-alive", "5", "--log-level", "warning", app]
    raise ValueError(name)


@dataclass
class Run:
    server: str
    app: str
    mode: str
    connections: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    rss_mib: float
    # Connections with a request in flight on average (Little's law: req/s x
    # mean latency). Well below ``connections`` means some were left waiting:
    # wrk only times the requests that were answered.
    active: float = float("nan")


@dataclass
class Results:
    runs: list[Run] = field(default_factory=list)
    idle_rss: dict[str, list[float]] = field(default_factory=dict)  # "server app" -> MiB
    starvation: dict[str, dict[str, float]] = field(default_factory=dict)


# Process groups of the servers started and not yet reaped: main() kills any
# that are still here when it exits, whatever the path out.
_STARTED: set[int] = set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(name: str, app: str, threads: int, pin: bool) -> Iterator[tuple[int, psutil.Process]]:
    port = free_port()
    argv = server_command(name, app, port, threads)
    if pin and shutil.which("taskset"):
        argv = ["taskset", "-c", "0", *argv]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    log = tempfile.TemporaryFile(prefix="bench-server-")  # kept for the error message

    def tail() -> str:
        log.seek(0)
        lines = log.read().decode("utf-8", "replace").rstrip().splitlines()[-15:]
        return "\n".join(["", f"$ {shlex.join(argv)}", *lines])

    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                            start_new_session=True)
    _STARTED.add(proc.pid)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}{tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    if c.recv(12).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer within 30 s{tail()}")
            time.sleep(0.1)
        workers = psutil.Process(proc.pid).children()
        yield port, (workers[0] if workers else psutil.Process(proc.pid))
    finally:
        stop_group(proc)
        _STARTED.discard(proc.pid)
        log.close()


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop a server started with ``start_new_session=True``: it leads its own
    process group, so TERM the group, then KILL whatever is left of it (a
    worker that outlived its master included)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")


def wrk(port: int, connections: int, seconds: float, close: bool, pin: bool) -> dict[str, float]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
            "-H", "Host: localhost"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://127.0.0.1:{port}/")
    if pin and shutil.which("taskset"):
        argv = ["taskset", "-c", "1", *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    out = proc.stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if proc.returncode != 0 or rps is None:
        # Never let a failed run enter the medians as 0 req/s.
        raise RuntimeError(f"wrk failed (exit {proc.returncode}): {shlex.join(argv)}\n"
                           f"{(proc.stderr + out).strip()[-500:]}")
    avg = re.search(r"^\s+Latency\s+(\S+)", out, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(rps.group(1)),
            "p50": _ms(p50.group(1)) if p50 else float("nan"),
            "p99": _ms(p99.group(1)) if p99 else float("nan"),
            "active": float(rps.group(1)) * (_ms(avg.group(1)) if avg else float("nan")) / 1000,
            "errors": errors + (int(non2xx.group(1)) if non2xx else 0)}


def _starved(active: float, connections: int, mode: str) -> bool:
    """Fewer than 80% of the kept-alive connections had a request in flight on
    average. (With ``close``, wrk's connects take time out of every connection's
    share, so the figure says less there.)"""
    return mode == "keepalive" and connections > 1 and active < 0.8 * connections


def starvation(port: int, fresh: int = 50) -> dict[str, float]:
    """1000 idle kept-alive + 1000 silent connections, then time fresh requests."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    idle: list[socket.socket] = []
    silent: list[socket.socket] = []
    times: list[float] = []
    served = 0
    try:
        for _ in range(1000):
            c = socket.create_connection(("127.0.0.1", port), timeout=5)
            c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            idle.append(c)
        for c in idle:
            with contextlib.suppress(OSError):
                c.recv(65536)
        for _ in range(1000):
            silent.append(socket.create_connection(("127.0.0.1", port), timeout=5))
        time.sleep(0.5)
        for _ in range(fresh):
            t0 = time.perf_counter()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as c:
                    c.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                    if c.recv(12).startswith(b"HTTP/1.1 200"):
                        served += 1
                        times.append((time.perf_counter() - t0) * 1000)
            except OSError:
                times.append(2000.0)
    finally:
        for c in idle + silent:
            c.close()
    times.sort()
    return {"served": served, "of": fresh, "median_ms": statistics.median(times),
            "max_ms": times[-1]}


def run(args: argparse.Namespace) -> Results:
    results = Results()
    servers = ["prefork", "gunicorn"]
    for rnd in range(args.rounds):
        order = servers if rnd % 2 == 0 else servers[::-1]
        for app in args.apps:
            for name in order:
                with serving(name, APPS[app], args.threads, not args.no_pin) as (port, worker):
                    time.sleep(0.5)
                    results.idle_rss.setdefault(f"{name} {app}", []).append(
                        worker.memory_info().rss / 1048576)
                    for mode in args.modes:
                        for conns in args.connections:
                            wrk(port, conns, 1, mode == "close", not args.no_pin)   # warm-up
                            r = wrk(port, conns, args.duration, mode == "close", not args.no_pin)
                            rss = worker.memory_info().rss / 1048576
                            results.runs.append(Run(name, app, mode, conns, r["rps"], r["p50"],
                                                    r["p99"], int(r["errors"]), rss,
                                                    r["active"]))
                            print(f"  round {rnd + 1} {name:8} {app:6} {mode:9} c={conns:<3} "
                                  f"{r['rps']:9.0f} req/s  p99 {r['p99']:7.2f} ms"
                                  + (f"  ERRORS {int(r['errors'])}" if r["errors"] else "")
                                  + (f"  only ~{r['active']:.0f} active" if _starved(r["active"], conns, mode)
                                     else ""),
                                  flush=True)
    if args.starvation:
        for name in servers:
            with serving(name, APPS["hello"], args.threads, not args.no_pin) as (port, _):
                results.starvation[name] = starvation(port)
    return results


def median_table(results: Results) -> list[dict[str, object]]:
    rows = []
    keys = sorted({(r.app, r.mode, r.connections) for r in results.runs},
                  key=lambda k: (k[0] != "hello", k[1] != "keepalive", k[2]))
    for app, mode, conns in keys:
        row: dict[str, object] = {"app": app, "mode": mode, "connections": conns}
        for name in ("prefork", "gunicorn"):
            runs = [r for r in results.runs if (r.server, r.app, r.mode, r.connections)
                    == (name, app, mode, conns)]
            if not runs:
                continue
            row[name] = {"rps": statistics.median(r.rps for r in runs),
                         "p50": statistics.median(r.p50_ms for r in runs),
                         "p99": statistics.median(r.p99_ms for r in runs),
                         "rss": statistics.median(r.rss_mib for r in runs),
                         "errors": sum(r.errors for r in runs), "rounds": len(runs),
                         "active": statistics.median(r.active for r in runs)}
        if "prefork" in row and "gunicorn" in row:
            g = row["gunicorn"]["rps"]  # type: ignore[index]
            row["ratio"] = row["prefork"]["rps"] / g if g else float("inf")  # type: ignore[index]
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, object]], results: Results) -> str:
    lines = ["| app | mode | conns | prefork req/s | gunicorn req/s | **ratio** | prefork p50 / p99 ms "
             "| gunicorn p50 / p99 ms | RSS MiB (prefork / gunicorn) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        p, g = row.get("prefork"), row.get("gunicorn")
        if not (isinstance(p, dict) and isinstance(g, dict)):
            continue
        flag = " ⚠ errors" if p["errors"] or g["errors"] else ""
        for name, v in (("prefork", p), ("gunicorn", g)):
            if _starved(v["active"], row["connections"], row["mode"]):   # type: ignore[arg-type]
                flag += f" ⚠ {name}: ~{v['active']:.0f} of {row['connections']} conns active"
        lines.append(
            f"| {row['app']} | {'keep-alive' if row['mode'] == 'keepalive' else 'close'} "
            f"| {row['connections']} | {p['rps']:,.0f} | {g['rps']:,.0f} | **{row['ratio']:.2f}×**"
            f"{flag} | {p['p50']:.2f} / {p['p99']:.2f} | {g['p50']:.2f} / {g['p99']:.2f} "
            f"| {p['rss']:.1f} / {g['rss']:.1f} |")
    if results.idle_rss:
        idle = {k: statistics.median(v) for k, v in results.idle_rss.items()}
        lines += ["", "Worker RSS at idle (MiB, median): " + ", ".join(
            f"{k} {v:.1f}" for k, v in idle.items())]
    if results.starvation:
        lines += ["", "1000 idle keep-alive + 1000 silent connections open, then 50 fresh "
                  "requests (hello):", "",
                  "| server | fresh requests served | median ms | worst ms |", "|---|---:|---:|---:|"]
        for name, s in results.starvation.items():
            lines.append(f"| {name} | {s['served']}/{s['of']} | {s['median_ms']:.1f} "
                         f"| {s['max_ms']:.1f} |")
    return "\n".join(lines)


def svg_chart(rows: list[dict[str, object]]) -> str:
    """A bar chart of the ratios, as SVG (no plotting library needed)."""
    rows = [r for r in rows if "ratio" in r]
    width, bar, gap, left = 760, 18, 8, 230
    height = 40 + len(rows) * (bar + gap)
    top = max([float(r["ratio"]) for r in rows] + [1.0])  # type: ignore[arg-type]
    scale = (width - left - 60) / top
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             'font-family="sans-serif" font-size="12">',
             '<text x="10" y="18" font-weight="bold">prefork req/s ÷ gunicorn req/s '
             '(1 worker, same threads)</text>']
    x1 = left + scale
    parts.append(f'<line x1="{x1:.0f}" y1="26" x2="{x1:.0f}" y2="{height}" stroke="#999" '
                 'stroke-dasharray="4"/>')
    for i, r in enumerate(rows):
        y = 30 + i * (bar + gap)
        label = f"{r['app']} {'keep-alive' if r['mode'] == 'keepalive' else 'close'} c={r['connections']}"
        ratio = float(r["ratio"])  # type: ignore[arg-type]
        parts.append(f'<text x="10" y="{y + 13}">{label}</text>')
        parts.append(f'<rect x="{left}" y="{y}" width="{ratio * scale:.0f}" height="{bar}" '
                     'fill="#3a7bd5"/>')
        parts.append(f'<text x="{left + ratio * scale + 5:.0f}" y="{y + 13}">{ratio:.2f}×</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import gunicorn
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"gunicorn {gunicorn.__version__}, {platform.system()} {platform.release()}")


def commands(args: argparse.Namespace) -> list[str]:
    """The exact server and wrk command lines the run used, for the docs."""
    pin = [] if args.no_pin else ["taskset", "-c", "0"]
    py = os.path.relpath(sys.executable, ROOT)
    out = []
    for name in ("prefork", "gunicorn"):
        for app in args.apps:
            argv = [*pin, *server_command(name, APPS[app], 0, args.threads)]
            argv = [py if a == sys.executable else a.replace("127.0.0.1:0", "127.0.0.1:PORT")
                    for a in argv]
            out.append(shlex.join(argv))
    wrk_pin = "" if args.no_pin else "taskset -c 1 "
    for mode in args.modes:
        close = " -H 'Connection: close'" if mode == "close" else ""
        out.append(f"{wrk_pin}wrk -t1 -c{{{','.join(map(str, args.connections))}}} "
                   f"-d{args.duration}s --latency -H 'Host: localhost'{close} "
                   "http://127.0.0.1:PORT/")
    return out


def write_doc(table: str, args: argparse.Namespace) -> None:
    section = "\n".join([
        BEGIN,
        f"Generated by `make bench` on {time.strftime('%Y-%m-%d')}: {machine()}.",
        f"Each figure is the median of {args.rounds} interleaved rounds of {args.duration:g} s; "
        f"one worker, {args.threads} threads, server pinned to CPU 0, "
        "`wrk -t1 --latency` pinned to CPU 1.",
        "",
        "![ratios](benchmarks.svg)",
        "",
        table,
        "",
        "Commands (`PORT` is a free port picked for each server start; each measurement is "
        "preceded by a 1 s warm-up with the same wrk command):",
        "",
        "```sh",
        *commands(args),
        "```",
        END,
    ])
    text = DOC.read_text() if DOC.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + section + tail)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, help="whole seconds per measurement (default 3)")
    p.add_argument("--rounds", type=int, help="interleaved rounds (default 3)")
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--connections", type=lambda s: [int(x) for x in s.split(",")],
                   help="comma-separated (default 1,16,64,256)")
    p.add_argument("--only", dest="apps", type=lambda s: s.split(","), default=list(APPS))
    p.add_argument("--modes", type=lambda s: s.split(","), default=["keepalive", "close"])
    p.add_argument("--no-starvation", dest="starvation", action="store_false")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    p.add_argument("--quick", action="store_true",
                   help="1 round of 1 s, 16 and 256 connections, no starvation scenario "
                   "(explicit flags win)")
    args = p.parse_args(argv)
    # Defaults; --quick only changes what was not given explicitly.
    quick = args.quick
    if args.rounds is None:
        args.rounds = 1 if quick else 3
    if args.duration is None:
        args.duration = 1 if quick else 3
    if args.connections is None:
        args.connections = [16, 256] if quick else [1, 16, 64, 256]
    if quick:
        args.starvation = False
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (make bench does it)", file=sys.stderr)
        return 2
    # The servers run in sessions of their own, so a TERM/HUP that killed this
    # process outright would leave them running: turn it into an exit that
    # goes through serving()'s cleanup.
    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    signal.signal(signal.SIGHUP, _exit)
    t0 = time.monotonic()
    try:
        results = run(args)
    finally:
        for pgid in list(_STARTED):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
    rows = median_table(results)
    table = format_table(rows, results)
    print()
    print(table)
    for row in rows:
        if "ratio" in row:
            print(f"ratio {row['app']} {row['mode']} c={row['connections']}: {row['ratio']:.2f}")
    print(f"\n(took {time.monotonic() - t0:.0f} s)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"{stamp}.json").write_text(json.dumps(
        {"args": vars(args), "runs": [asdict(r) for r in results.runs],
         "idle_rss": results.idle_rss, "starvation": results.starvation}, indent=1))
    if not args.no_write:
        write_doc(table, args)
        (DOC.parent / "benchmarks.svg").write_text(svg_chart(rows))
        print(f"wrote {DOC.relative_to(ROOT)} and docs/benchmarks.svg")
    return 0
