"""One suite run against every CgroupManager (v1, hybrid, v2) on fake trees:
what a resource means must not depend on the cgroup version."""

import errno
import os

import pytest

from berth.cgroups import CgroupV1, CgroupV2, from_host_paths, fs
from berth.errors import InvalidArgumentError, UnavailableError
from tests.unit.cgroups.fakes import read, v1_tree, v2_tree

MODES = ["v1", "hybrid", "v2"]

# semantic knob -> (hierarchy key on v1, file on v1, file on v2)
FILES = {
    "memory": ("memory", "memory.limit_in_bytes", "memory.max"),
    "pids": ("pids", "pids.max", "pids.max"),
    "weight": ("cpu", "cpu.shares", "cpu.weight"),
    "cpus": ("cpuset", "cpuset.cpus", "cpuset.cpus"),
}


@pytest.fixture(params=MODES)
def mgr(request, tmp_path):
    if request.param == "v2":
        root = str(tmp_path / "cg")
        return CgroupV2(v2_tree(root), root)
    paths = v1_tree(str(tmp_path), hybrid=request.param == "hybrid")
    return CgroupV1(paths, unified_root=str(tmp_path / "unified"))


def get(mgr, knob):
    key, v1name, v2name = FILES[knob]
    if mgr.mode == "v2":
        return read(mgr.path, v2name)
    return read(mgr.paths[key], v1name)


def fail_writes_to(monkeypatch, name, code=errno.EINVAL):
    """Make the "kernel" refuse every write to control file `name` (refused at
    open, since the fake's O_TRUNC would empty the file where cgroupfs ignores it)."""
    real = os.open

    def fake_open(path, flags, *args):
        if flags & os.O_WRONLY and name and str(path).endswith("/" + name):
            raise OSError(code, os.strerror(code), path)
        return real(path, flags, *args)

    monkeypatch.setattr(fs.os, "open", fake_open)


def test_mode_and_host_paths(mgr):
    hp = mgr.host_paths()
    if mgr.mode == "v2":
        assert list(hp) == [""]
    else:
        assert "memory" in hp and "name=systemd" in hp
        assert ("unified" in hp) == (mgr.mode == "hybrid")
    again = from_host_paths(hp)
    assert type(again) is type(mgr) and again.host_paths() == hp and again.mode == mgr.mode


def test_apply_means_the_same_everywhere(mgr):
    mgr.apply(
        {
            "memory": {"limit": 64 << 20},
            "pids": {"limit": 42},
            "cpu": {"shares": 1024, "cpus": "1"},
        }
    )
    assert get(mgr, "memory") == str(64 << 20)
    assert get(mgr, "pids") == "42"
    assert get(mgr, "weight") == ("39" if mgr.mode == "v2" else "1024")
    assert get(mgr, "cpus") == "1"


def test_unlimited_values(mgr):
    mgr.apply({"memory": {"limit": -1}, "pids": {"limit": -1}})
    assert get(mgr, "pids") == "max"
    assert get(mgr, "memory") == ("max" if mgr.mode == "v2" else "-1")


def test_empty_and_null_resources_write_nothing(mgr, monkeypatch):
    fail_writes_to(monkeypatch, "")  # never matches; just routes writes through
    before = {k: get(mgr, k) for k in FILES}
    mgr.apply({})
    mgr.apply({"memory": {}, "cpu": {"shares": 0, "quota": None}, "pids": None, "devices": []})
    mgr.update({"blockIO": {"weightDevice": []}})
    assert {k: get(mgr, k) for k in FILES} == before


def test_update_rolls_back_on_kernel_refusal(mgr, monkeypatch):
    mgr.apply({"memory": {"limit": 64 << 20}, "pids": {"limit": 42}})
    fail_writes_to(monkeypatch, "pids.max")
    with pytest.raises(InvalidArgumentError) as info:
        mgr.update({"memory": {"limit": 128 << 20}, "pids": {"limit": 7}})
    # the error names the file, the value and the directory
    assert "write pids.max=7 in " in str(info.value)
    assert str(info.value).endswith(": invalid argument")
    assert info.value.errno == errno.EINVAL
    assert get(mgr, "memory") == str(64 << 20)
    assert get(mgr, "pids") == "42"


def test_update_validation_error_writes_nothing(mgr):
    mgr.apply({"pids": {"limit": 42}})
    with pytest.raises(InvalidArgumentError, match=r"cpu.cpus=a-b"):
        mgr.update({"pids": {"limit": 10}, "cpu": {"cpus": "a-b"}})
    assert get(mgr, "pids") == "42"
    with pytest.raises(InvalidArgumentError, match=r"pids.limit"):
        mgr.update({"pids": {"limit": "10"}})
    with pytest.raises(InvalidArgumentError, match=r"resources"):
        mgr.update(["not", "a", "dict"])


def test_update_changes_only_what_is_given(mgr):
    mgr.apply({"memory": {"limit": 64 << 20}, "pids": {"limit": 42}})
    mgr.update({"pids": {"limit": 100}})
    assert get(mgr, "pids") == "100"
    assert get(mgr, "memory") == str(64 << 20)


def test_check_before_update(mgr):
    # the fake's usage is 4096000 bytes
    with pytest.raises(InvalidArgumentError, match=r"below current usage 4096000"):
        mgr.update({"memory": {"limit": 1 << 20, "checkBeforeUpdate": True}})
    mgr.update({"memory": {"limit": 1 << 20}})
    assert get(mgr, "memory") == str(1 << 20)


def test_unified_map(mgr):
    if mgr.mode == "v1":
        with pytest.raises(InvalidArgumentError, match=r"cgroup v1 host"):
            mgr.apply({"unified": {"pids.max": "5"}})
        return
    d = mgr.paths["unified" if mgr.mode == "hybrid" else ""]
    with pytest.raises(InvalidArgumentError) as info:
        mgr.update({"unified": {"cgroup.freeze": "0", "memory.nosuchknob": "5"}})
    assert "memory.nosuchknob=5" in str(info.value)
    assert "no such cgroup file" in str(info.value)
    assert read(d, "cgroup.freeze") == "0"
    for bad in ("../x", "/etc/passwd", "noperiod"):
        with pytest.raises(InvalidArgumentError, match=r"not a cgroup file name"):
            mgr.apply({"unified": {bad: "1"}})
    mgr.apply({"unified": {"cgroup.freeze": "1"}})
    assert read(d, "cgroup.freeze") == "1"


def test_pids_recursive(mgr, tmp_path):
    d = mgr.paths["pids"] if mgr.mode != "v2" else mgr.path
    with open(f"{d}/cgroup.procs", "w") as f:
        f.write("12\n5\n")
    os.mkdir(f"{d}/child")
    with open(f"{d}/child/cgroup.procs", "w") as f:
        f.write("7\n12\n")
    assert mgr.pids() == [5, 7, 12]


def test_freeze_thaw(mgr):
    if mgr.mode == "v2":
        # the fake kernel reports frozen as soon as asked
        with open(f"{mgr.path}/cgroup.events", "w") as f:
            f.write("populated 1\nfrozen 1\n")
    assert not mgr.is_frozen()
    mgr.freeze()
    assert mgr.is_frozen()
    if mgr.mode == "v2":
        with open(f"{mgr.path}/cgroup.events", "w") as f:
            f.write("populated 1\nfrozen 0\n")
    mgr.thaw()
    assert not mgr.is_frozen()


def test_kill_all_with_no_process(mgr):
    if mgr.mode != "v2":
        mgr.kill_all(15)
        # frozen while listing, thawed after
        assert read(mgr.paths["freezer"], "freezer.state") == "THAWED"
    if mgr.mode != "v1":
        mgr.kill_all(9)
        d = mgr.paths["unified" if mgr.mode == "hybrid" else ""]
        assert read(d, "cgroup.kill") == "1"
    assert mgr.pids() == []


def test_v2_freeze_timeout_leaves_cgroup_thawed(tmp_path, monkeypatch):
    from berth.cgroups import base
    from berth.errors import ConflictError

    root = str(tmp_path / "cg")
    mgr = CgroupV2(v2_tree(root), root)
    monkeypatch.setattr(base.time, "monotonic", iter(range(0, 1000, 10)).__next__)
    with pytest.raises(ConflictError, match=r"freeze cgroup .*: timed out"):
        mgr.freeze()
    assert read(mgr.path, "cgroup.freeze") == "0"


def test_stats_shape(mgr):
    s = mgr.stats()
    assert set(s) >= {"cpu", "memory", "pids", "blkio", "hugetlb", "cpuset"}
    assert s["cpu"]["throttling"] == {
        "periods": 10,
        "throttled_periods": 4,
        "throttled_time": 12000 if mgr.mode == "v2" else 12345,
    }
    assert s["pids"]["current"] == 3 and s["pids"]["limit"] == 0
    assert s["pids"]["events"] == {"max": 7}
    assert s["memory"]["usage"]["usage"] == 4096000
    assert s["memory"]["cache"] == 1000
    assert s["memory"]["events"]["oom_kill"] == 2
    assert s["cpuset"] == {"cpus": [0, 1], "mems": [0]}
    reads = {(e["op"], e["value"]) for e in s["blkio"]["ioServiceBytesRecursive"]}
    assert {("Read", 4096), ("Write", 512)} <= reads
    assert s["hugetlb"]["2MB"]["failcnt"] == 1
    if mgr.mode != "v1":
        assert s["cpu"]["psi"]["some"] == {"avg10": 1.5, "avg60": 0.0, "avg300": 0.0, "total": 42}
    else:
        assert "psi" not in s["cpu"]


def test_missing_controller_is_unavailable(tmp_path):
    paths = v1_tree(str(tmp_path))
    del paths["pids"]
    mgr = CgroupV1(paths)
    with pytest.raises(UnavailableError, match=r"controller pids is not mounted"):
        mgr.apply({"pids": {"limit": 5}})


def test_container_mounts():
    v1 = CgroupV1(
        {"cpu,cpuacct": "/h/cpu,cpuacct/c", "name=systemd": "/h/systemd/c", "unified": "/h/u/c"}
    )
    assert v1.container_mounts() == [
        ("cpu,cpuacct", "/h/cpu,cpuacct/c"),
        ("systemd", "/h/systemd/c"),
        ("unified", "/h/u/c"),
    ]
    assert v1.container_symlinks() == [("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct")]
    v2 = CgroupV2("/h/c", "/h")
    assert v2.container_mounts() == [("", "/h/c")] and v2.container_symlinks() == []


def test_v1_create_failing_half_way_removes_what_it_made(tmp_path):
    from berth.errors import BerthError

    root = tmp_path
    (root / "memory").mkdir()
    (root / "pids").write_text("not a directory")  # mkdir under it fails
    mgr = CgroupV1({"memory": str(root / "memory/a/b"), "pids": str(root / "pids/a/b")})
    with pytest.raises(BerthError, match=r"create cgroup"):
        mgr.create()
    assert os.listdir(root / "memory") == []
