"""A long run under load with periodic reloads, watching for leaks.

A server (prefork by default) serves ``tests/apps/chaosapp.py`` under the
load of ``tests/chaos/kit.py`` for ``--minutes`` and gets a HUP every
``--hup-every`` seconds. Every ``--sample-every`` seconds the run records, for
the master and summed over its workers (the whole process group), the
resident memory, the open file descriptors (``/proc/PID/fd``) and the threads
(``Threads:`` in ``/proc/PID/status``), plus the requests served and failed so
far. A leak shows as a line that climbs reload after reload instead of
returning to a plateau.

Output: a CSV, and a plot of it (PNG with matplotlib; a hand-made SVG
without), in ``bench/results/`` unless ``--out`` says otherwise.

    python -m bench.soak                     # 30 minutes, HUP every 30 s (make soak)
    python -m bench.soak --minutes 3 --hup-every 20
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from bench.reliability import CLIENTS, ROOT, ChaosLoad, group_members, started

PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass
class Sample:
    """One look at the process group; memory in MiB."""

    t: float                # seconds since the load started
    workers: int
    master_rss: float
    workers_rss: float      # summed over the workers
    max_worker_rss: float
    master_fds: int
    total_fds: int
    master_threads: int
    total_threads: int
    ok: int                 # requests served so far
    failed: int             # requests failed so far
    hups: int               # HUPs sent so far


def _proc(pid: int) -> tuple[float, int, int] | None:
    """(RSS MiB, open fds, threads) of ``pid``, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            rss = int(f.read().split()[1]) * PAGE / 1048576
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        with open(f"/proc/{pid}/status") as f:
            threads = next(int(line.split()[1]) for line in f if line.startswith("Threads:"))
    except (OSError, StopIteration, ValueError):
        return None
    return rss, fds, threads


def sample(master: int, t: float, load: ChaosLoad, hups: int) -> Sample:
    m = _proc(master) or (0.0, 0, 0)
    others = [x for pid in group_members(master) if pid != master and (x := _proc(pid))]
    stats = load.stats
    return Sample(t=round(t, 1), workers=len(others),
                  master_rss=round(m[0], 2), workers_rss=round(sum(x[0] for x in others), 2),
                  max_worker_rss=round(max((x[0] for x in others), default=0.0), 2),
                  master_fds=m[1], total_fds=m[1] + sum(x[1] for x in others),
                  master_threads=m[2], total_threads=m[2] + sum(x[2] for x in others),
                  ok=stats.ok, failed=len(stats.failures), hups=hups)


def soak(server: str, minutes: float, hup_every: float, sample_every: float,
         csv_path: Path) -> tuple[list[Sample], list[float], ChaosLoad]:
    """The run; each sample goes to ``csv_path`` as it is taken, so a run
    that dies (or is stopped) at minute 29 keeps its 29 minutes."""
    samples: list[Sample] = []
    hup_times: list[float] = []
    seconds = minutes * 60
    with csv_path.open("w", newline="") as f, started(server, {}) as srv:
        w = csv.DictWriter(f, fieldnames=[x.name for x in fields(Sample)])
        w.writeheader()
        with ChaosLoad("127.0.0.1", srv.port, threads=CLIENTS, max_seconds=seconds + 60) as load:
            load.wait_for_ok(50)
            t0 = time.monotonic()
            next_hup, next_sample = t0 + hup_every, t0
            while (now := time.monotonic()) < t0 + seconds:
                if now >= next_sample:
                    samples.append(sample(srv.master, now - t0, load, len(hup_times)))
                    s = samples[-1]
                    w.writerow(asdict(s))
                    f.flush()
                    print(f"{s.t:7.0f} s  {s.workers} workers  RSS {s.master_rss:.1f} + "
                          f"{s.workers_rss:.1f} MiB  fds {s.total_fds}  threads "
                          f"{s.total_threads}  ok {s.ok}  failed {s.failed}", flush=True)
                    next_sample += sample_every
                if now >= next_hup:
                    srv.signal(signal.SIGHUP)
                    hup_times.append(now - t0)
                    next_hup += hup_every
                time.sleep(max(0.0, min(next_sample, next_hup) - time.monotonic()))
            samples.append(sample(srv.master, time.monotonic() - t0, load, len(hup_times)))
            w.writerow(asdict(samples[-1]))
    return samples, hup_times, load


PANELS = [("memory (RSS, MiB)", [("master_rss", "master"), ("workers_rss", "workers, summed"),
                                 ("max_worker_rss", "largest worker")]),
          ("open file descriptors", [("master_fds", "master"), ("total_fds", "all processes")]),
          ("threads", [("master_threads", "master"), ("total_threads", "all processes")])]


def plot_png(path: Path, samples: list[Sample], hups: list[float], title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(PANELS), 1, figsize=(9, 8), sharex=True)
    t = [s.t / 60 for s in samples]
    for ax, (label, series) in zip(axes, PANELS, strict=True):
        for key, name in series:
            ax.plot(t, [getattr(s, key) for s in samples], label=name)
        for h in hups:
            ax.axvline(h / 60, color="#bbb", linewidth=0.6, zorder=0)
        ax.set_ylabel(label)
        ax.set_ylim(bottom=0)
        ax.legend(loc="lower right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes (grey lines: HUP)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_svg(samples: list[Sample], hups: list[float], title: str) -> str:
    """The same three panels as polylines, for a machine without matplotlib."""
    width, panel_h, left, top = 860, 200, 70, 40
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c"]
    tmax = max((s.t for s in samples), default=1.0) or 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{top + len(PANELS) * (panel_h + 40)}" font-family="sans-serif" '
           'font-size="11">', f'<text x="10" y="20" font-weight="bold">{title}</text>']
    plot_w = width - left - 20
    for i, (label, series) in enumerate(PANELS):
        y0 = top + i * (panel_h + 40)
        ymax = max([getattr(s, k) for s in samples for k, _ in series] + [1]) * 1.1
        out.append(f'<rect x="{left}" y="{y0}" width="{plot_w}" height="{panel_h}" '
                   'fill="none" stroke="#999"/>')
        out.append(f'<text x="{left}" y="{y0 - 4}">{label} (0 to {ymax:.0f})</text>')
        for h in hups:
            x = left + plot_w * h / tmax
            out.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" y2="{y0 + panel_h}" '
                       'stroke="#ddd"/>')
        for j, (key, name) in enumerate(series):
            pts = " ".join(f"{left + plot_w * s.t / tmax:.1f},"
                           f"{y0 + panel_h - panel_h * getattr(s, key) / ymax:.1f}"
                           for s in samples)
            out.append(f'<polyline fill="none" stroke="{colours[j]}" points="{pts}"/>')
            out.append(f'<text x="{left + plot_w - 150}" y="{y0 + 14 + 13 * j}" '
                       f'fill="{colours[j]}">{name}</text>')
    out.append(f'<text x="{left}" y="{top + len(PANELS) * (panel_h + 40) - 15}">'
               f'0 to {tmax / 60:.1f} minutes (grey lines: HUP)</text>')
    out.append("</svg>")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--hup-every", type=float, default=30.0, help="seconds between HUPs")
    p.add_argument("--sample-every", type=float, default=5.0, help="seconds between samples")
    p.add_argument("--server", choices=["prefork", "gunicorn"], default="prefork")
    p.add_argument("--out", type=Path, default=None,
                   help="path of the CSV, or a directory for it (the plot goes beside it); "
                        "default bench/results/")
    args = p.parse_args(argv)

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)
    out = args.out or ROOT / "bench" / "results"
    if out.is_dir() or not out.suffix:
        out = out / f"soak-{args.server}-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    samples, hups, load = soak(args.server, args.minutes, args.hup_every, args.sample_every, out)
    title = (f"{args.server} soak: {args.minutes:g} min, HUP every {args.hup_every:g} s, "
             f"{samples[-1].ok:,} requests, {samples[-1].failed} failed")
    try:
        plot_png(out.with_suffix(".png"), samples, hups, title)
        plot = out.with_suffix(".png")
    except ImportError:
        plot = out.with_suffix(".svg")
        plot.write_text(plot_svg(samples, hups, title))
    first, last = samples[0], samples[-1]
    print(f"\n{title}")
    print(f"RSS {first.master_rss + first.workers_rss:.1f} -> {last.master_rss + last.workers_rss:.1f}"
          f" MiB, fds {first.total_fds} -> {last.total_fds}, threads {first.total_threads} -> "
          f"{last.total_threads}")
    print(load.report(limit=5))
    print(f"wrote {out} and {plot}")
    return 1 if last.failed else 0


if __name__ == "__main__":
    sys.exit(main())
