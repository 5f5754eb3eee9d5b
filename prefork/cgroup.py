"""How many CPUs this process may really use: affinity, capped by the cgroup quota.

In a container ``os.cpu_count()`` is the host's count and the CPU affinity
is usually all of them too; what limits the container is its cgroup's CPU
quota (Kubernetes ``resources.limits.cpu``, ``docker run --cpus``): so many
microseconds of CPU time per period. :func:`usable_cpus` reads that quota
and returns ``min(affinity, ceil(quota / period))``.

Where the quota is read:

- ``/proc/self/cgroup`` names this process's cgroup: ``0::PATH`` in the
  unified (v2) hierarchy, ``N:cpu,cpuacct:PATH`` in a v1 ``cpu`` one.
- ``/proc/self/mountinfo`` says where that hierarchy is mounted and which
  of its cgroups the mount shows as its root (a container sees only its
  own subtree), so that PATH can be found under the mount.
- v2: ``cpu.max`` holds ``QUOTA PERIOD`` or ``max PERIOD`` (no limit).
  v1: ``cpu.cfs_quota_us`` (``-1``: no limit) and ``cpu.cfs_period_us``.
  A parent's quota binds its children too, so every level from the
  process's cgroup up to the mount is read and the tightest one wins.

A hybrid host (v1 and v2 both mounted) has the ``cpu`` controller in one of
them: the v1 one when a v1 hierarchy has it. Whatever cannot be read or
makes no sense (a missing file, a malformed line, a zero period) counts as
no limit: this never raises, and the worst case is the affinity count.

``root`` is prepended to every path, so tests run on a fake tree.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_MOUNT = "/sys/fs/cgroup"


@dataclass(frozen=True)
class Quota:
    """``quota_us`` of CPU time per ``period_us``, read from ``source`` (a file path)."""

    quota_us: int
    period_us: int
    source: str

    @property
    def cpus(self) -> float:
        return self.quota_us / self.period_us

    @property
    def whole_cpus(self) -> int:
        """The quota rounded up: 1.5 CPUs of time keep 2 processes busy part-time."""
        return max(1, -(-self.quota_us // self.period_us))


@dataclass(frozen=True)
class CpuLimit:
    """The CPUs this process may use, and why."""

    affinity: int               # CPUs it may be scheduled on (sched_getaffinity)
    quota: Quota | None         # its cgroup's CPU quota; None: none found

    @property
    def cpus(self) -> int:
        if self.quota is None:
            return self.affinity
        return min(self.affinity, self.quota.whole_cpus)

    def describe(self) -> str:
        """For the start-up log: ``2 (cgroup quota 1.5 CPUs in /sys/fs/cgroup/cpu.max; 4 in the affinity)``."""
        if self.quota is None:
            return f"{self.cpus} (the affinity; no cgroup CPU quota)"
        return (f"{self.cpus} (cgroup quota {self.quota.cpus:.3g} CPUs in {self.quota.source}; "
                f"{self.affinity} in the affinity)")


def usable_cpus(root: str = "/", affinity: int | None = None) -> CpuLimit:
    """What :class:`CpuLimit` this process has; ``affinity`` overrides the
    scheduler's answer (for tests)."""
    if affinity is None:
        affinity = affinity_cpus()
    return CpuLimit(affinity, cpu_quota(root))


def affinity_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_quota(root: str = "/") -> Quota | None:
    """The tightest CPU quota on this process's cgroup and its parents, or None."""
    try:
        groups = _own_cgroups(_read(root, "/proc/self/cgroup"))
        mounts = _cgroup_mounts(root)
    except (OSError, ValueError, UnicodeError):
        return None
    try:
        if "cpu" in groups:
            return _tightest(root, _where(root, mounts, "cgroup", groups["cpu"]), _v1_quota)
        if "" in groups:
            return _tightest(root, _where(root, mounts, "cgroup2", groups[""]), _v2_quota)
    except (OSError, ValueError, UnicodeError):
        pass
    return None


# -- /proc/self/cgroup and /proc/self/mountinfo ---------------------------------

def _own_cgroups(text: str) -> dict[str, str]:
    """Controller -> cgroup path; ``""`` for the unified (v2) hierarchy."""
    groups: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            groups.setdefault("", path)
        for c in controllers.split(","):
            if c == "cpu":
                groups["cpu"] = path
    return groups


@dataclass(frozen=True)
class _Mount:
    fstype: str             # cgroup (v1) or cgroup2
    root: str               # the cgroup the mount shows at its top
    point: str              # where it is mounted
    options: frozenset[str]


def _cgroup_mounts(root: str) -> list[_Mount]:
    try:
        # A pod's mountinfo easily runs past a page (secrets, config maps).
        text = _read(root, "/proc/self/mountinfo", 1 << 20)
    except OSError:
        return []
    mounts = []
    for line in text.splitlines():
        # ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER_OPTIONS
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 3 or tail[0] not in ("cgroup", "cgroup2"):
            continue
        mounts.append(_Mount(tail[0], _unescape(fields[3]), _unescape(fields[4]),
                             frozenset(tail[2].split(","))))
    return mounts


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \040-style octal.
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def _where(root: str, mounts: list[_Mount], fstype: str, path: str) -> tuple[str, str]:
    """(the cgroup's directory, the mount point above which nothing is visible)."""
    candidates = [m for m in mounts if m.fstype == fstype
                  and (fstype == "cgroup2" or "cpu" in m.options)]
    if not candidates:      # no mountinfo: where systemd and Docker mount them
        point = DEFAULT_MOUNT
        if fstype == "cgroup":
            point = next((p for p in (f"{DEFAULT_MOUNT}/cpu,cpuacct", f"{DEFAULT_MOUNT}/cpu")
                          if os.path.isdir(_join(root, p))), f"{DEFAULT_MOUNT}/cpu")
        candidates = [_Mount(fstype, "/", point, frozenset())]
    # Mounted more than once: the mount that shows the most of our path.
    m = max(candidates, key=lambda c: (_under(path, c.root), len(c.root)))
    rel = ""
    mount_root = m.root.rstrip("/")
    if _under(path, mount_root):
        rel = path[len(mount_root):]
    directory = os.path.normpath(m.point + "/" + rel.lstrip("/")) if rel.strip("/") else m.point
    if not os.path.isdir(_join(root, directory)):
        # The path is not under the mount as named (a cgroup namespace shows
        # "/", a bind mount shows its own subtree): the mount is ours.
        directory = m.point
    return directory, m.point


# -- the quota files -------------------------------------------------------------

def _v2_quota(root: str, directory: str) -> Quota | None:
    path = f"{directory}/cpu.max"
    fields = _read(root, path).split()
    if not fields or fields[0] == "max":
        return None
    quota = int(fields[0])
    period = int(fields[1]) if len(fields) > 1 else 100_000
    return _checked(quota, period, path)


def _v1_quota(root: str, directory: str) -> Quota | None:
    path = f"{directory}/cpu.cfs_quota_us"
    quota = int(_read(root, path).strip())
    if quota < 0:          # -1: no limit
        return None
    return _checked(quota, int(_read(root, f"{directory}/cpu.cfs_period_us").strip()), path)


def _checked(quota: int, period: int, path: str) -> Quota | None:
    if quota <= 0 or period <= 0:
        return None
    return Quota(quota, period, path)


def _tightest(root: str, where: tuple[str, str],
              read_level: Callable[[str, str], Quota | None]) -> Quota | None:
    directory, top = where
    best: Quota | None = None
    while True:
        try:
            q = read_level(root, directory)
        except (OSError, ValueError, UnicodeError):
            q = None        # this level unreadable or malformed: no limit from it
        if q is not None and (best is None or q.cpus < best.cpus):
            best = q
        if directory == top or len(directory) <= len(top) or directory in ("/", ""):
            return best
        directory = os.path.dirname(directory)


def _under(path: str, top: str) -> bool:
    top = top.rstrip("/")
    return path == top or path.startswith(top + "/")


def _join(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _read(root: str, path: str, limit: int = 4096) -> str:
    with open(_join(root, path), encoding="ascii", errors="strict") as f:
        return f.read(limit)
