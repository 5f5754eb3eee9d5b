"""What ``prefork status`` reports: the master and every worker.

The state comes from a :class:`~prefork.supervisor.MasterSnapshot` (the
counters in it from the scoreboard), memory and CPU from psutil. Nothing
here changes the master's state; it reads what it is given.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .supervisor import MasterSnapshot


def server_status(snap: MasterSnapshot) -> dict[str, Any]:
    """The status answer: ``{"master": {...}, "workers": [...]}``, workers by number.

    Ages are measured from ``snap.now``. The master's part carries its
    health too: boot failures, crashes after boot and the last one's cause,
    and where a reload is.
    """
    now = snap.now
    report = []
    for w in snap.workers:
        slot = w.slot
        info = {"pid": w.pid, "number": w.number, "generation": w.generation,
                "state": w.state.value,
                "requests": slot.requests, "in_flight": slot.in_flight,
                "oldest_request": slot.oldest_request,
                "oldest_request_age": round(now - slot.oldest_start, 3) if slot.oldest_start else 0,
                "heartbeat_age": round(now - slot.heartbeat, 3),
                "uptime": round(now - w.spawned, 1)}
        info.update(_process_info(w.pid, now - w.spawned))
        report.append(info)
    return {"master": {"pid": snap.pid, "app": snap.app,
                       "generation": snap.generation, "workers_wanted": snap.wanted,
                       "listeners": list(snap.listeners),
                       "uptime": round(snap.uptime, 1),
                       "boot_failures": snap.boot_failures,
                       "last_boot_error": snap.last_boot_error if snap.boot_failures else "",
                       "crashes": snap.crashes,
                       "last_crash": snap.last_crash,
                       "last_crash_age": (round(now - snap.last_crash_at, 1)
                                          if snap.crashes else None),
                       "reload": snap.reload_status,
                       **_process_info(snap.pid, snap.uptime)},
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
