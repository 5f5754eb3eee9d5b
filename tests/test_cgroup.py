"""The CPU count from the cgroup quota, read from fake cgroup trees (and the real one)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from prefork import config
from prefork.cgroup import CpuLimit, Quota, affinity_cpus, cpu_quota, usable_cpus
from tests.server import ServerProcess

pytestmark = pytest.mark.timeout(30)

V2_MOUNT = "30 23 0:26 {root} /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
V1_MOUNT = ("32 31 0:29 {root} /sys/fs/cgroup/cpu,cpuacct rw,relatime master:9 - cgroup cgroup "
            "rw,cpu,cpuacct\n")
OTHER_MOUNTS = ("22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n"
                "24 22 0:5 / /proc rw,nosuid - proc proc rw\n")


def tree(tmp_path: Path, files: dict[str, str]) -> str:
    for name, text in files.items():
        p = tmp_path / name.lstrip("/")
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return str(tmp_path)


def v2(tmp_path: Path, path: str, mount_root: str, cpu_max: dict[str, str]) -> str:
    files = {"/proc/self/cgroup": f"0::{path}\n",
             "/proc/self/mountinfo": OTHER_MOUNTS + V2_MOUNT.format(root=mount_root),
             "/sys/fs/cgroup/cgroup.controllers": "cpuset cpu io memory pids\n"}
    files.update({f"/sys/fs/cgroup{d}/cpu.max": v for d, v in cpu_max.items()})
    return tree(tmp_path, files)


def v1(tmp_path: Path, path: str, mount_root: str, levels: dict[str, tuple[str, str]]) -> str:
    files = {"/proc/self/cgroup": f"5:memory:{path}\n4:cpu,cpuacct:{path}\n1:name=systemd:{path}\n",
             "/proc/self/mountinfo": OTHER_MOUNTS + V1_MOUNT.format(root=mount_root)}
    for d, (quota, period) in levels.items():
        files[f"/sys/fs/cgroup/cpu,cpuacct{d}/cpu.cfs_quota_us"] = quota + "\n"
        files[f"/sys/fs/cgroup/cpu,cpuacct{d}/cpu.cfs_period_us"] = period + "\n"
    return tree(tmp_path, files)


# -- cgroup v2 -----------------------------------------------------------------

def test_v2_in_its_own_cgroup_namespace_a_quota_of_1_5_cpus_gives_2(tmp_path):
    root = v2(tmp_path, "/", "/", {"": "150000 100000\n"})
    limit = usable_cpus(root, affinity=8)
    assert limit.quota == Quota(150000, 100000, "/sys/fs/cgroup/cpu.max")
    assert limit.cpus == 2
    assert limit.describe() == ("2 (cgroup quota 1.5 CPUs in /sys/fs/cgroup/cpu.max; "
                                "8 in the affinity)")


def test_v2_the_affinity_wins_when_it_is_smaller_than_the_quota(tmp_path):
    root = v2(tmp_path, "/", "/", {"": "800000 100000"})
    assert usable_cpus(root, affinity=2).cpus == 2


def test_v2_max_is_no_limit(tmp_path):
    root = v2(tmp_path, "/", "/", {"": "max 100000\n"})
    limit = usable_cpus(root, affinity=4)
    assert limit.quota is None and limit.cpus == 4
    assert limit.describe() == "4 (the affinity; no cgroup CPU quota)"


def test_v2_the_path_under_the_host_mount_and_a_tighter_parent(tmp_path):
    pod = "/kubepods.slice/kubepods-pod1.slice"
    root = v2(tmp_path, pod + "/cri-abc.scope", "/", {
        pod + "/cri-abc.scope": "max 100000",
        pod: "50000 100000",        # the pod's limit binds the container
        "/kubepods.slice": "max 100000",
    })
    q = cpu_quota(root)
    assert q is not None and q.source == f"/sys/fs/cgroup{pod}/cpu.max"
    assert usable_cpus(root, affinity=16).cpus == 1     # 0.5 CPU still runs one worker


def test_v2_a_mount_that_shows_its_own_subtree(tmp_path):
    # Docker without a cgroup namespace: /proc/self/cgroup names the host
    # path, the mount's root is that same cgroup.
    root = v2(tmp_path, "/docker/abc", "/docker/abc", {"": "300000 100000"})
    assert usable_cpus(root, affinity=8).cpus == 3


def test_v2_the_root_cgroup_has_no_cpu_max(tmp_path):
    root = v2(tmp_path, "/", "/", {})
    assert cpu_quota(root) is None


def test_v2_a_period_other_than_100ms(tmp_path):
    root = v2(tmp_path, "/", "/", {"": "25000 10000"})      # 2.5 CPUs
    assert usable_cpus(root, affinity=8).cpus == 3


def test_v2_without_mountinfo_uses_sys_fs_cgroup(tmp_path):
    root = tree(tmp_path, {"/proc/self/cgroup": "0::/\n",
                           "/sys/fs/cgroup/cpu.max": "200000 100000\n"})
    assert usable_cpus(root, affinity=8).cpus == 2


# -- cgroup v1 -----------------------------------------------------------------

def test_v1_a_container_sees_its_cgroup_as_the_mount(tmp_path):
    root = v1(tmp_path, "/docker/abc", "/docker/abc", {"": ("200000", "100000")})
    limit = usable_cpus(root, affinity=8)
    assert limit.cpus == 2
    assert limit.quota is not None
    assert limit.quota.source == "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us"


def test_v1_the_host_view_and_minus_one_for_no_limit(tmp_path):
    root = v1(tmp_path, "/a/b", "/", {"/a/b": ("-1", "100000"), "/a": ("120000", "100000"),
                                      "": ("-1", "100000")})
    assert usable_cpus(root, affinity=8).cpus == 2


def test_v1_no_quota_anywhere(tmp_path):
    root = v1(tmp_path, "/", "/", {"": ("-1", "100000")})
    assert usable_cpus(root, affinity=3).cpus == 3


def test_hybrid_uses_the_v1_cpu_controller(tmp_path):
    root = v1(tmp_path, "/x", "/", {"/x": ("100000", "100000")})
    (tmp_path / "proc/self/cgroup").write_text("4:cpu,cpuacct:/x\n0::/x\n")
    with open(tmp_path / "proc/self/mountinfo", "a") as f:
        f.write(V2_MOUNT.format(root="/").replace("/sys/fs/cgroup ", "/sys/fs/cgroup/unified "))
    assert usable_cpus(root, affinity=2).cpus == 1


def test_a_mount_point_with_an_escaped_space(tmp_path):
    root = tree(tmp_path, {
        "/proc/self/cgroup": "0::/\n",
        "/proc/self/mountinfo": "30 23 0:26 / /my\\040cgroup rw - cgroup2 cgroup2 rw\n",
        "/my cgroup/cpu.max": "100000 100000\n"})
    assert usable_cpus(root, affinity=4).cpus == 1


# -- what cannot be read counts as no limit, and never raises ------------------

@pytest.mark.parametrize("cpu_max", ["garbage\n", "", "100000 0", "0 100000", "-5 100000",
                                     "100000 abc", "\xff\xfe"])
def test_v2_a_malformed_cpu_max_is_no_limit(tmp_path, cpu_max):
    root = v2(tmp_path, "/", "/", {"": cpu_max})
    assert usable_cpus(root, affinity=4).cpus == 4


@pytest.mark.parametrize("quota,period", [("abc", "100000"), ("100000", "0"), ("100000", ""),
                                          ("", "100000"), ("1e5", "100000")])
def test_v1_malformed_files_are_no_limit(tmp_path, quota, period):
    root = v1(tmp_path, "/", "/", {"": (quota, period)})
    assert usable_cpus(root, affinity=4).cpus == 4


def test_a_malformed_level_does_not_hide_a_parents_quota(tmp_path):
    root = v2(tmp_path, "/a/b", "/", {"/a/b": "nonsense", "/a": "100000 100000"})
    assert usable_cpus(root, affinity=4).cpus == 1


@pytest.mark.parametrize("cgroup_file", [None, "", "nonsense\n", "0::\n", "::::\n",
                                         "4:cpu:/does/not/exist\n"])
def test_no_or_odd_proc_self_cgroup_is_no_limit(tmp_path, cgroup_file):
    files = {"/proc/self/mountinfo": "garbage line\n\n - cgroup2\n"}
    if cgroup_file is not None:
        files["/proc/self/cgroup"] = cgroup_file
    root = tree(tmp_path, files)
    assert usable_cpus(root, affinity=2) == CpuLimit(2, None)


def test_an_empty_root_is_no_limit(tmp_path):
    assert usable_cpus(str(tmp_path), affinity=5).cpus == 5


# -- the real machine and the workers default -------------------------------------

def test_on_this_machine_it_is_at_least_one_and_at_most_the_affinity():
    limit = usable_cpus()
    assert 1 <= limit.cpus <= affinity_cpus() == len(os.sched_getaffinity(0))


def test_the_workers_default_is_the_usable_cpu_count():
    assert config.BY_NAME["workers"].default == usable_cpus().cpus


V1_CPU = Path("/sys/fs/cgroup/cpu")


def _read_or_empty(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


@pytest.fixture
def real_cgroup_half_a_cpu():
    """A real v1 or v2 cgroup with a quota of half a CPU, removed afterwards."""
    name = f"prefork-test-{uuid.uuid4().hex[:8]}"
    v2_root = Path("/sys/fs/cgroup")
    if (V1_CPU / "cpu.cfs_quota_us").exists():
        d = V1_CPU / name
        quota_file, quota = "cpu.cfs_quota_us", "50000"
    elif "cpu" in _read_or_empty(v2_root / "cgroup.subtree_control").split():
        d = v2_root / name
        quota_file, quota = "cpu.max", "50000 100000"
    else:
        pytest.skip("no cgroup cpu controller to make a test cgroup in")
    try:
        d.mkdir()
        (d / quota_file).write_text(quota)
    except OSError as e:
        if d.exists():
            d.rmdir()
        pytest.skip(f"cannot make a cgroup with a CPU quota here ({d}): {e}")
    try:
        yield d
    finally:
        d.rmdir()


def test_in_a_real_cgroup_with_half_a_cpu_the_master_starts_one_worker(real_cgroup_half_a_cpu,
                                                                       tmp_path):
    import sys
    procs = real_cgroup_half_a_cpu / "cgroup.procs"
    script = (f'echo $$ > {procs} && exec "$0" -m prefork start hello:app --bind 127.0.0.1:0 '
              f'--control-socket {tmp_path / "ctl"}')
    srv = ServerProcess([], command=["sh", "-c", script, sys.executable])
    try:
        srv.wait_for_log(r"Ready: 1 workers serving")
        assert "CPUs: 1 (cgroup quota 0.5 CPUs in" in srv.log, srv.log
    finally:
        srv.stop()


def test_of_two_mounts_of_the_hierarchy_the_one_that_shows_our_cgroup(tmp_path):
    root = tree(tmp_path, {
        "/proc/self/cgroup": "0::/pods/web\n",
        "/proc/self/mountinfo": (
            "30 23 0:26 /other /mnt/elsewhere rw - cgroup2 cgroup2 rw\n"
            "31 23 0:26 /pods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
        "/mnt/elsewhere/cpu.max": "max 100000\n",
        "/sys/fs/cgroup/web/cpu.max": "100000 100000\n"})
    q = cpu_quota(root)
    assert q is not None and q.source == "/sys/fs/cgroup/web/cpu.max"


def test_a_long_mountinfo_is_read_to_the_cgroup_line(tmp_path):
    many = "".join(f"{100 + i} 22 0:{50 + i} / /var/run/secrets/volume-{i:04d} ro,relatime - "
                   f"tmpfs tmpfs rw,size=1024k\n" for i in range(300))
    root = tree(tmp_path, {"/proc/self/cgroup": "0::/pods/web\n",
                           "/proc/self/mountinfo": many + V2_MOUNT.format(root="/pods"),
                           "/sys/fs/cgroup/web/cpu.max": "100000 100000\n"})
    assert len((tmp_path / "proc/self/mountinfo").read_text()) > 20000
    assert usable_cpus(root, affinity=4).cpus == 1
