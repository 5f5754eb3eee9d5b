"""What ``prefork status`` reports: the master and every worker.

The counters come from the scoreboard, memory and CPU from psutil. Nothing
here changes the master's state; it reads what it is given.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .hooks import ServerView
    from .scoreboard import SlotView
    from .supervisor import WorkerRecord


def server_status(server: ServerView, started: float, workers: Iterable[WorkerRecord],
                  slots: dict[int, SlotView], health: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """The status answer: ``{"master": {...}, "workers": [...]}``, workers by number.

    ``started`` is the master's start as ``time.time()``; ``health`` (boot
    failures, crashes after boot and the last one's cause) goes into the
    master's part as it is.
    """
    now, wall = time.monotonic(), time.time()
    report = []
    for w in sorted(workers, key=lambda x: x.number):
        slot = slots.get(w.number)
        if slot is None or not w.pid:
            continue        # not forked yet
        info = {"pid": w.pid, "number": w.number, "generation": w.generation,
                "state": w.state.value,
                "requests": slot.requests, "in_flight": slot.in_flight,
                "oldest_request": slot.oldest_request,
                "oldest_request_age": round(now - slot.oldest_start, 3) if slot.oldest_start else 0,
                "heartbeat_age": round(now - slot.heartbeat, 3),
                "uptime": round(now - w.spawned, 1)}
        info.update(_process_info(w.pid, now - w.spawned))
        report.append(info)
    return {"master": {"pid": server.pid, "app": server.app,
                       "generation": server.generation, "workers_wanted": server.workers,
                       "listeners": list(server.bind),
                       "uptime": round(wall - started, 1),
                       **(health or {}),
                       **_process_info(server.pid, wall - started)},
            "workers": report}


def memory_rss(pid: int) -> int:
    """The resident set size of ``pid`` in bytes; 0 when it cannot be read."""
    try:
        import psutil
        return int(psutil.Process(pid).memory_info().rss)
    except Exception:
        return 0


def _process_info(pid: int, uptime: float) -> dict[str, Any]:
    """RSS, USS and PSS (shared pages split fairly) and average CPU % since start."""
    try:
        import psutil
        proc = psutil.Process(pid)
        try:
            mem = proc.memory_full_info()
            uss, pss = int(mem.uss), int(getattr(mem, "pss", 0))
        except psutil.AccessDenied:
            mem, uss, pss = proc.memory_info(), 0, 0
        cpu = proc.cpu_times()
        return {"rss": int(mem.rss), "uss": uss, "pss": pss,
                "cpu_percent": round(100 * (cpu.user + cpu.system) / max(uptime, 0.001), 1)}
    except Exception:
        return {"rss": 0, "uss": 0, "pss": 0, "cpu_percent": 0.0}
