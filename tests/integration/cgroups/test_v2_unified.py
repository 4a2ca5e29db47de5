"""CgroupV2 against a real cgroup2 hierarchy: the host's own on a v2 host, the
unified mount (/sys/fs/cgroup/unified) on a hybrid one. On this hybrid host
the unified hierarchy has no memory/cpu/pids/io controller (they are bound to
v1) but has hugetlb, so what v2 can do here is tested for real: processes,
cgroup.freeze, cgroup.kill, cgroup.events, cpu.stat, PSI, and a v2 resource
controller (hugetlb) with apply/update/rollback and its effect."""

import os

import pytest

from berth.cgroups import CgroupV2, detect_mode, open_manager
from berth.errors import InvalidArgumentError, UnavailableError
from tests.integration.cgroups.conftest import UNIFIED
from tests.integration.cgroups.helpers import Child, cpu_used, proc_cgroups, wait_for
from tests.integration.conftest import unique


def cat(d: str, name: str) -> str:
    with open(f"{d}/{name}") as f:
        return f.read().strip()


BURN = "print('burning', flush=True)\nwhile True:\n    pass\n"


@pytest.fixture
def v2(privileged, unified_root_restored):
    mode = detect_mode()
    if mode == "v1":
        pytest.skip("no cgroup2 hierarchy on this host")
    root = UNIFIED if mode == "hybrid" else "/sys/fs/cgroup"
    mgr = open_manager("/" + unique("berthit-v2-"), "x", root=root, mode="v2")
    assert isinstance(mgr, CgroupV2)
    mgr.create()
    yield mgr
    if mgr.exists():
        mgr.kill_all(9)
        mgr.destroy()


@pytest.fixture
def hugepage():
    """One 2 MiB huge page in the host's pool for the test, then back."""
    path = "/proc/sys/vm/nr_hugepages"
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        pytest.skip("no 2 MiB huge pages on this kernel")
    with open(path) as f:
        before = f.read().strip()
    with open(path, "w") as f:
        f.write(str(int(before) + 1))
    with open(path) as f:
        now = int(f.read())
    try:
        if now <= int(before):
            pytest.skip("the kernel could not allocate a huge page")
        yield
    finally:
        with open(path, "w") as f:
            f.write(before)


def test_v2_processes_and_paths(v2):
    child = Child("", v2)
    try:
        assert v2.pids() == [child.pid]
        assert proc_cgroups(child.pid)[""] == v2.path[len(v2.root) :]
    finally:
        child.go()
        child.wait()
        child.kill()
    v2.destroy()
    assert not v2.exists()


def test_v2_freeze_thaw(v2):
    child = Child(BURN, v2)
    try:
        child.go()
        child.line()
        assert cpu_used(v2, 0.3) > 0.05  # cpu.stat is there without the cpu controller
        v2.freeze()
        assert v2.is_frozen()
        assert "frozen 1" in cat(v2.path, "cgroup.events")
        assert cpu_used(v2, 0.5) < 0.01
        v2.thaw()
        assert not v2.is_frozen()
        assert cpu_used(v2, 0.5) > 0.05
    finally:
        child.kill()


FORK_FIVE = """
import time
for _ in range(5):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
print("forked", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [9, 15])
def test_v2_kill_all(v2, sig):
    child = Child(FORK_FIVE, v2)
    try:
        child.go()
        assert child.line() == "forked"
        assert len(v2.pids()) == 6
        v2.kill_all(sig)  # 9: one write to cgroup.kill; 15: freeze, signal, thaw
        assert wait_for(lambda: v2.pids() == [])
        assert child.wait() == -sig
        assert not v2.is_frozen()
    finally:
        child.kill()


def test_v2_empty_event_and_stats(v2):
    child = Child(BURN, v2)
    try:
        with v2.watch_events() as watcher:
            child.go()
            child.line()
            # the burner joined the cgroup just now: let it burn a little first
            assert wait_for(lambda: v2.stats()["cpu"]["usage"]["total"] > 0)
            stats = v2.stats()
            assert set(stats["cpu"]["psi"]) == {"some", "full"}
            assert watcher.wait(0.05) == []
            child.p.kill()
            child.wait()
            assert {"type": "empty"} in watcher.wait(5)
    finally:
        child.kill()


def test_v2_controllers_absent_here_are_reported(v2):
    if "pids" in cat(v2.root, "cgroup.controllers").split():
        pytest.skip("pids controller available on cgroup v2 here")
    with pytest.raises(UnavailableError, match=r"write pids.max=5 in .*controller not enabled"):
        v2.apply({"pids": {"limit": 5}})


HUGE = """
import mmap
try:
    m = mmap.mmap(-1, 2 << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | 0x40000)
    m[0] = 1  # fault the page in: SIGBUS if the cgroup's limit is reached
    print("ok", flush=True)
except OSError as e:
    print("refused", e.errno, flush=True)
"""


def huge_page_allowed(mgr) -> bool:
    child = Child(HUGE, mgr)
    try:
        child.go()
        rc = child.wait()
        out = child.p.stdout.read().strip()
        return rc == 0 and out == "ok"
    finally:
        child.kill()


def test_v2_hugetlb_limit_update_and_rollback(v2, hugepage):
    if not os.path.exists(f"{v2.path}/hugetlb.2MB.max"):
        pytest.skip("hugetlb controller not on cgroup v2 here")
    v2.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})
    assert cat(v2.path, "hugetlb.2MB.max") == "0"
    assert not huge_page_allowed(v2)
    v2.update({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]})
    assert huge_page_allowed(v2)
    # a refused update leaves the previous limit in place
    with pytest.raises(InvalidArgumentError, match=r"write hugetlb.2MB.bogus=1 in "):
        v2.update(
            {
                "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
                "unified": {"hugetlb.2MB.bogus": "1"},
            }
        )
    assert cat(v2.path, "hugetlb.2MB.max") == str(2 << 20)
    assert v2.stats()["hugetlb"]["2MB"]["failcnt"] >= 1


def test_hybrid_hugetlb_through_unified(privileged, hugepage, unified_root_restored):
    """On a hybrid host without a v1 hugetlb hierarchy, hugepage limits go to
    the cgroup's unified directory."""
    if detect_mode() != "hybrid":
        pytest.skip("needs a hybrid host")
    cg = open_manager("/" + unique("berthit-"), "x")
    if "hugetlb" in cg.dirs:
        pytest.skip("hugetlb is a v1 hierarchy here")
    cg.create()
    try:
        cg.apply({"hugepageLimits": [{"pageSize": "2MB", "limit": 0}]})
        assert cat(cg.paths["unified"], "hugetlb.2MB.max") == "0"
        assert not huge_page_allowed(cg)
        cg.update({"hugepageLimits": [{"pageSize": "2MB", "limit": -1}]})
        assert huge_page_allowed(cg)
        assert cg.stats()["hugetlb"]["2MB"]["failcnt"] >= 1
    finally:
        cg.kill_all(9)
        cg.destroy()


OPEN_DEVICES = """
for dev in ("/dev/null", "/dev/zero", "/dev/full"):
    try:
        os.close(os.open(dev, os.O_RDWR))
        print(dev, "ok", flush=True)
    except OSError as e:
        print(dev, e.errno, flush=True)
"""


def open_results(mgr) -> list[str]:
    child = Child(OPEN_DEVICES, mgr)
    try:
        child.go()
        return [child.line() for _ in range(3)]
    finally:
        child.kill()


def test_v2_device_filter_enforced_and_replaced(v2):
    from berth.cgroups.devices import attached_programs

    v2.apply(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "r"},
            ]
        }
    )
    assert open_results(v2) == ["/dev/null ok", "/dev/zero 1", "/dev/full 1"]
    fd = os.open(v2.path, os.O_RDONLY)
    try:
        first = attached_programs(fd)
        assert len(first) == 1
        # update swaps the program: exactly one attached, a different one
        v2.update(
            {
                "devices": [
                    {"allow": False, "access": "rwm"},
                    {"allow": True, "type": "c", "major": 1, "access": "rw"},
                    {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"},
                ]
            }
        )
        second = attached_programs(fd)
        assert len(second) == 1 and second != first
    finally:
        os.close(fd)
    assert open_results(v2) == ["/dev/null ok", "/dev/zero 1", "/dev/full ok"]
