"""Limits proven by their effect on real processes, with every manager the
host can run: on this hybrid host CgroupV1 both as "hybrid" (v1 controllers
plus the unified hierarchy) and as pure "v1" (the `cg` fixture's params)."""

import errno
import os
import shutil

import pytest

from berth.cgroups import from_host_paths
from berth.errors import ConflictError, InvalidArgumentError
from tests.integration.cgroups.helpers import Child, cpu_used, proc_cgroups, wait_for

MiB = 1 << 20

ALLOCATE = """
chunks = []
while True:
    chunks.append(bytearray(MiB))
    if len(chunks) == LIMIT:
        print("allocated", flush=True)
        sys.stdin.readline()
        LIMIT = -1
"""


def allocator(mgr, mib_then_wait: int = -1):
    """A child that allocates 1 MiB chunks; it stops after `mib_then_wait`
    MiB, says so, and goes on when told."""
    return Child(f"MiB = 1 << 20\nLIMIT = {mib_then_wait}\n" + ALLOCATE, mgr)


def test_lifecycle_paths_and_processes(cg, mode):
    for path in cg.host_paths().values():
        assert os.path.isdir(path)
    cg.create()  # idempotent
    child = Child("", cg)
    try:
        assert cg.pids() == [child.pid]
        name = "/" + os.path.basename(next(iter(cg.host_paths().values())))
        seen = proc_cgroups(child.pid)
        for key in cg.host_paths():
            key = "" if key == "unified" else key
            assert seen[key] == name, (key, seen)
        # a second process opening the cgroup from its saved paths sees the same
        again = from_host_paths(cg.host_paths())
        assert again.pids() == [child.pid] and again.mode == mode
        # rmdir refused while a process is inside, with the pid named
        with pytest.raises(ConflictError, match=rf"remove cgroup .*processes left: {child.pid}"):
            from berth.cgroups.base import remove_tree

            remove_tree(cg.paths["memory" if mode != "v2" else ""], timeout=0.05)
    finally:
        child.go()
        child.wait()
        child.kill()
    cg.destroy()  # retries while the exiting process leaves
    assert not cg.exists()
    cg.destroy()  # missing is fine


def test_memory_limit_oom_kill_and_events(cg):
    cg.apply({"memory": {"limit": 48 * MiB, "swap": 48 * MiB}})
    with cg.watch_events() as watcher:
        child = allocator(cg)
        try:
            child.go()
            assert child.wait(20) == -9  # SIGKILL from the OOM killer
        finally:
            child.kill()
        events = {e["type"]: e for e in watcher.wait(5)}
    assert events["oom_kill"]["count"] >= 1, events
    assert "oom" in events, events
    stats = cg.stats()
    assert stats["memory"]["events"]["oom_kill"] >= 1
    assert stats["memory"]["usage"]["limit"] == 48 * MiB
    assert stats["memory"]["usage"]["max"] >= 40 * MiB


FORK_LOOP = """
import time
n = 0
while True:
    try:
        pid = os.fork()
    except OSError as e:
        print(n, e.errno, flush=True)
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    n += 1
sys.stdin.readline()
"""


def test_pids_limit_stops_fork_loop_and_is_reported(cg):
    cg.apply({"pids": {"limit": 6}})
    with cg.watch_events() as watcher:
        child = Child(FORK_LOOP, cg)
        try:
            child.go()
            forked, err = (int(x) for x in child.line().split())
            assert err == errno.EAGAIN
            assert forked == 5  # the limit counts the forking process itself
            assert len(cg.pids()) == 6
            events = {e["type"]: e for e in watcher.wait(5)}
            assert events["pids.max"]["count"] >= 1, events
            stats = cg.stats()
            assert stats["pids"] == {
                "current": 6,
                "limit": 6,
                "peak": 6,
                "events": {"max": stats["pids"]["events"]["max"]},
            }
            assert stats["pids"]["events"]["max"] >= 1
        finally:
            cg.kill_all(9)
            child.kill()
    assert wait_for(lambda: cg.pids() == [])


BURN = "print('burning', flush=True)\nwhile True:\n    pass\n"


def test_cpu_quota_half_a_cpu(cg):
    cg.apply({"cpu": {"quota": 50000, "period": 100000}})
    child = Child(BURN, cg)
    try:
        child.go()
        child.line()
        used = cpu_used(cg, 2.0)
        assert 0.3 < used < 0.7, used
        assert cg.stats()["cpu"]["throttling"]["throttled_periods"] > 0
        # update lifts the quota: no more throttled periods, whatever the load
        cg.update({"cpu": {"quota": -1}})
        before = cg.stats()["cpu"]["throttling"]["throttled_periods"]
        cpu_used(cg, 0.5)
        assert cg.stats()["cpu"]["throttling"]["throttled_periods"] == before
    finally:
        child.kill()


def test_freeze_stops_progress_and_thaw_resumes(cg):
    child = Child(BURN, cg)
    try:
        child.go()
        child.line()
        cg.freeze()
        assert cg.is_frozen()
        with open(f"/proc/{child.pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        assert state in ("D", "S", "T"), state  # not running
        assert cpu_used(cg, 0.5) < 0.01
        cg.thaw()
        assert not cg.is_frozen()
        assert cpu_used(cg, 0.5) > 0.05  # loose: other work may share the CPUs
    finally:
        child.kill()


def test_update_changes_a_live_limit(cg):
    cg.apply({"memory": {"limit": 512 * MiB, "swap": 512 * MiB}})
    child = allocator(cg, mib_then_wait=16)
    try:
        child.go()
        assert child.line() == "allocated"
        cg.update({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}})
        assert cg.stats()["memory"]["usage"]["limit"] == 64 * MiB
        child.go()  # allocate on: the new limit kills it, the old would not have
        assert child.wait(20) == -9
    finally:
        child.kill()


def test_memory_limit_below_usage_refused_and_kept(cg, mode):
    if mode == "v2":
        pytest.skip("cgroup v2 never refuses memory.max: it reclaims or OOM-kills")
    cg.apply({"memory": {"limit": 256 * MiB, "swap": 256 * MiB}, "pids": {"limit": 50}})
    child = allocator(cg, mib_then_wait=64)
    try:
        child.go()
        assert child.line() == "allocated"
        with pytest.raises(InvalidArgumentError) as info:
            cg.update({"pids": {"limit": 20}, "memory": {"limit": 16 * MiB}})
        msg = str(info.value)
        assert f"write memory.limit_in_bytes={16 * MiB} in {cg.paths['memory']}: " in msg
        assert msg.endswith("device or resource busy")
        assert cg.stats()["memory"]["usage"]["limit"] == 256 * MiB
        assert cg.stats()["pids"]["limit"] == 50
        # the process survived the refusal
        assert child.p.poll() is None
    finally:
        child.kill()


def test_cpuset_outside_host_refused_and_rolled_back(cg):
    cg.apply({"memory": {"limit": 256 * MiB}, "cpu": {"cpus": "0"}})
    ncpu = os.cpu_count() or 1
    with pytest.raises(InvalidArgumentError) as info:
        cg.update({"memory": {"limit": 128 * MiB}, "cpu": {"cpus": f"0-{ncpu + 63}"}})
    assert f"write cpuset.cpus=0-{ncpu + 63} in " in str(info.value)
    # memory was written before cpuset failed: rolled back
    assert cg.stats()["memory"]["usage"]["limit"] == 256 * MiB
    assert cg.stats()["cpuset"]["cpus"] == [0]


def test_cpuset_pins_the_process(cg):
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 CPUs")
    cg.apply({"cpu": {"cpus": "1", "mems": "0"}})
    child = Child("", cg)
    try:
        assert os.sched_getaffinity(child.pid) == {1}
        cg.update({"cpu": {"cpus": "0"}})
        assert os.sched_getaffinity(child.pid) == {0}
    finally:
        child.kill()


def test_unknown_unified_key_refused(cg, mode):
    if mode == "v1":
        with pytest.raises(InvalidArgumentError, match="cgroup v1 host"):
            cg.update({"unified": {"memory.bogus": "1"}})
        return
    with pytest.raises(
        InvalidArgumentError, match=r"write memory.bogus=1 in .*no such cgroup file"
    ):
        cg.update({"unified": {"memory.bogus": "1"}})


def test_devices_rules_enforced_v1(cg, mode):
    if mode == "v2":
        pytest.skip("device rules on v2 need the eBPF filter")
    cg.apply(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"},
            ]
        }
    )
    code = """
for dev in ("/dev/null", "/dev/zero"):
    try:
        os.close(os.open(dev, os.O_RDONLY))
        print(dev, "ok", flush=True)
    except OSError as e:
        print(dev, e.errno, flush=True)
"""
    child = Child(code, cg)
    try:
        child.go()
        assert child.line() == "/dev/null ok"
        assert child.line() == f"/dev/zero {errno.EPERM}"
    finally:
        child.kill()
    with open(f"{cg.paths['devices']}/devices.list") as f:
        assert f.read().split("\n")[0] == "c 1:3 rw"


FORK_FIVE = """
import time
for _ in range(5):
    if os.fork() == 0:
        time.sleep(60)
        os._exit(0)
print("forked", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("sig", [15, 9])
def test_kill_all_reaches_every_process(cg, sig):
    child = Child(FORK_FIVE, cg)
    try:
        child.go()
        assert child.line() == "forked"
        assert len(cg.pids()) == 6
        cg.kill_all(sig)
        assert wait_for(lambda: cg.pids() == [])
        assert child.wait() == -sig
        assert not cg.is_frozen()
    finally:
        child.kill()


def test_kill_all_sigkill_reaches_a_paused_cgroup(cg):
    child = Child(FORK_FIVE, cg)
    try:
        child.go()
        assert child.line() == "forked"
        cg.freeze()
        cg.kill_all(9)
        assert wait_for(lambda: cg.pids() == [])
        assert child.wait() == -9
    finally:
        child.kill()
    cg.destroy()
    assert not cg.exists()


def test_relative_cgroups_path_is_under_own_cgroup(privileged):
    from berth.cgroups import open_manager
    from berth.cgroups.hierarchy import own_cgroups
    from tests.integration.conftest import unique

    name = unique("berthit-rel-")
    mgr = open_manager(name, "x")
    own = own_cgroups()
    try:
        mgr.create()
        child = Child("", mgr)
        try:
            seen = proc_cgroups(child.pid)
            for key in mgr.host_paths():
                k = "" if key == "unified" else key
                assert seen[k] == own[k].rstrip("/") + "/" + name, (key, seen[k])
        finally:
            child.go()
            child.wait()
            child.kill()
    finally:
        mgr.destroy()
    assert not mgr.exists()


def test_raising_memory_above_memsw_says_to_set_swap(cg, mode):
    if mode == "v2":
        pytest.skip("v1 memory.memsw only")
    cg.apply({"memory": {"limit": 64 * MiB, "swap": 64 * MiB}})
    with pytest.raises(InvalidArgumentError, match=r"memory\+swap limit 67108864 is lower"):
        cg.update({"memory": {"limit": 128 * MiB}})
    assert cg.stats()["memory"]["usage"]["limit"] == 64 * MiB
    cg.update({"memory": {"limit": 128 * MiB, "swap": 128 * MiB}})
    assert cg.stats()["memory"]["usage"]["limit"] == 128 * MiB


@pytest.fixture
def loop_device(workdir):
    """A loop device over a 8 MiB file: (path, major, minor)."""
    import subprocess

    if not shutil.which("losetup"):
        pytest.skip("losetup not installed")
    img = os.path.join(workdir, "disk.img")
    with open(img, "wb") as f:
        f.truncate(8 * MiB)
    dev = subprocess.run(
        ["losetup", "-f", "--show", img], capture_output=True, text=True, check=True
    ).stdout.strip()
    try:
        with open(f"/sys/block/{os.path.basename(dev)}/dev") as f:
            major, minor = (int(x) for x in f.read().split(":"))
        yield dev, major, minor
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


def test_blkio_read_throttle_slows_direct_reads(cg, loop_device):
    dev, major, minor = loop_device
    cg.apply(
        {"blockIO": {"throttleReadBpsDevice": [{"major": major, "minor": minor, "rate": MiB}]}}
    )
    code = (
        "import time\nt = time.monotonic()\n"
        f"fd = os.open({dev!r}, os.O_RDONLY | os.O_DIRECT)\n"
        "import mmap\nbuf = mmap.mmap(-1, 1 << 16)\n"
        "for _ in range(16):\n    os.readv(fd, [buf])\n"
        "print(time.monotonic() - t, flush=True)\n"
    )
    child = Child(code, cg)
    try:
        child.go()
        took = float(child.line())
    finally:
        child.kill()
    # 1 MiB at 1 MiB/s; unthrottled it takes a few milliseconds
    assert took > 0.5, took
    reads = [
        e["value"]
        for e in cg.stats()["blkio"]["ioServiceBytesRecursive"]
        if (e["major"], e["minor"], e["op"]) == (major, minor, "Read")
    ]
    assert reads and reads[0] >= MiB
