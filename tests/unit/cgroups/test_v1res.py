"""cgroup v1 controllers as functions over fake cgroup directories."""

import pytest

from berth.cgroups import fs, v1res
from berth.errors import InvalidArgumentError, UnavailableError
from tests.unit.cgroups.fakes import read, v1_tree


@pytest.fixture
def tree(tmp_path):
    return v1_tree(str(tmp_path))


def writes(w, name=None):
    return [(n, v) for _, n, v in w.written if name is None or n == name]


def test_memory_all_fields(tree):
    d = tree["memory"]
    w = fs.Writer()
    v1res.set_memory(
        d,
        {
            "limit": 100,
            "swap": 200,
            "reservation": 50,
            "kernel": 1000,
            "kernelTCP": 2000,
            "swappiness": 10,
            "disableOOMKiller": True,
            "useHierarchy": True,
        },
        w,
    )
    assert read(d, "memory.limit_in_bytes") == "100"
    assert read(d, "memory.memsw.limit_in_bytes") == "200"
    assert read(d, "memory.soft_limit_in_bytes") == "50"
    assert read(d, "memory.kmem.limit_in_bytes") == "1000"
    assert read(d, "memory.kmem.tcp.limit_in_bytes") == "2000"
    assert read(d, "memory.swappiness") == "10"
    assert read(d, "memory.oom_control") == "1"
    assert read(d, "memory.use_hierarchy") == "1"


def test_memory_swap_order_keeps_memsw_above_limit(tree):
    d = tree["memory"]
    # growing (current limit is "unlimited" 9223372036854771712? no: lower it first)
    with open(f"{d}/memory.limit_in_bytes", "w") as f:
        f.write("100")
    w = fs.Writer()
    v1res.set_memory(d, {"limit": 300, "swap": 600}, w)
    assert writes(w) == [("memory.memsw.limit_in_bytes", "600"), ("memory.limit_in_bytes", "300")]
    w = fs.Writer()
    v1res.set_memory(d, {"limit": 50, "swap": 60}, w)
    assert writes(w) == [("memory.limit_in_bytes", "50"), ("memory.memsw.limit_in_bytes", "60")]
    w = fs.Writer()
    v1res.set_memory(d, {"limit": -1, "swap": -1}, w)
    assert writes(w) == [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]
    # unlimited memory, swap not given: swap unlimited too, as runc does
    w = fs.Writer()
    v1res.set_memory(d, {"limit": -1}, w)
    assert writes(w) == [("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]


def test_memory_without_swap_accounting(tree):
    import os

    d = tree["memory"]
    os.unlink(f"{d}/memory.memsw.limit_in_bytes")
    w = fs.Writer()
    v1res.set_memory(d, {"limit": 100, "swap": -1}, w)
    assert writes(w) == [("memory.limit_in_bytes", "100")]
    with pytest.raises(UnavailableError, match=r"swap accounting"):
        v1res.set_memory(d, {"limit": 100, "swap": 200}, fs.Writer())


def test_memory_kernel_limits_skipped_where_gone(tree):
    import os

    d = tree["memory"]
    os.unlink(f"{d}/memory.kmem.limit_in_bytes")
    w = fs.Writer()
    v1res.set_memory(d, {"kernel": 1000}, w)
    assert writes(w) == []


@pytest.mark.parametrize(
    "bad", [{"swappiness": 101}, {"limit": -2}, {"limit": "1G"}, {"reservation": 1.5}]
)
def test_memory_bad_values(tree, bad):
    with pytest.raises(InvalidArgumentError, match=r"memory"):
        v1res.set_memory(tree["memory"], bad, fs.Writer())


def test_disable_oom_killer_rollback_restores_flag(tree):
    d = tree["memory"]
    w = fs.Writer(record=True)
    v1res.set_memory(d, {"disableOOMKiller": True}, w, update=True)
    assert read(d, "memory.oom_control") == "1"
    w.rollback()
    # memory.oom_control reads as three lines but takes "0"/"1"
    assert read(d, "memory.oom_control") == "0"


def test_cpu_all_fields(tree):
    d = tree["cpu"]
    w = fs.Writer()
    v1res.set_cpu(
        d,
        {
            "shares": 512,
            "quota": 50000,
            "period": 200000,
            "burst": 1000,
            "realtimeRuntime": 950,
            "realtimePeriod": 1000,
            "idle": 1,
        },
        w,
    )
    assert writes(w) == [
        ("cpu.shares", "512"),
        ("cpu.cfs_period_us", "200000"),
        ("cpu.cfs_quota_us", "50000"),
        ("cpu.cfs_burst_us", "1000"),
        ("cpu.rt_period_us", "1000"),
        ("cpu.rt_runtime_us", "950"),
        ("cpu.idle", "1"),
    ]


def test_cpu_shares_clamped_by_kernel_is_an_error(tree, monkeypatch):
    d = tree["cpu"]
    real = fs.write

    def clamp(dirpath, name, value):
        real(dirpath, name, "262144" if name == "cpu.shares" else value)

    monkeypatch.setattr(fs, "write", clamp)
    with pytest.raises(InvalidArgumentError, match=r"cpu.shares=999999 .*the kernel set 262144"):
        v1res.set_cpu(d, {"shares": 999999}, fs.Writer())


def test_cpu_period_refused_first_then_quota_first(tree, monkeypatch):
    """The kernel refuses a period that makes the old quota invalid; then the
    quota goes first (runc's retry)."""
    import errno

    d = tree["cpu"]
    real = fs.write
    calls = []

    def kernel(dirpath, name, value):
        calls.append((name, value))
        if name == "cpu.cfs_period_us" and read(d, "cpu.cfs_quota_us") == "-1":
            raise fs.write_error(OSError(errno.EINVAL, "x"), dirpath, name, value)
        real(dirpath, name, value)

    monkeypatch.setattr(fs, "write", kernel)
    v1res.set_cpu(d, {"quota": 1000, "period": 5000}, fs.Writer())
    assert calls == [
        ("cpu.cfs_period_us", "5000"),
        ("cpu.cfs_quota_us", "1000"),
        ("cpu.cfs_period_us", "5000"),
    ]
    assert read(d, "cpu.cfs_period_us") == "5000"


def test_pids(tree):
    w = fs.Writer()
    v1res.set_pids(tree["pids"], {"limit": -1}, w)
    v1res.set_pids(tree["pids"], {"limit": 0}, w)  # 0 = unset
    assert writes(w) == [("pids.max", "max")]


def test_blkio(tree):
    d = tree["blkio"]
    w = fs.Writer()
    v1res.set_blkio(
        d,
        {
            "weight": 300,
            "leafWeight": 300,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 500}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 1024}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 10}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 20}],
        },
        w,
    )
    assert writes(w) == [
        ("blkio.weight", "300"),
        ("blkio.weight_device", "8:0 500"),
        ("blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio.throttle.write_bps_device", "8:16 1024"),
        ("blkio.throttle.read_iops_device", "8:0 10"),
        ("blkio.throttle.write_iops_device", "8:0 20"),
    ]
    with pytest.raises(InvalidArgumentError, match=r"blockIO.weight"):
        v1res.set_blkio(d, {"weight": 5}, fs.Writer())
    with pytest.raises(InvalidArgumentError, match=r"major"):
        v1res.set_blkio(d, {"throttleReadBpsDevice": [{"minor": 0, "rate": 1}]}, fs.Writer())


def test_blkio_bfq_fallback(tree):
    import os

    d = tree["blkio"]
    os.unlink(f"{d}/blkio.weight")
    for name in ("blkio.bfq.weight", "blkio.bfq.weight_device"):
        with open(f"{d}/{name}", "w") as f:
            f.write("default 100\n")
    w = fs.Writer()
    v1res.set_blkio(d, {"weight": 300, "weightDevice": [{"major": 8, "minor": 0, "weight": 50}]}, w)
    assert writes(w) == [("blkio.bfq.weight", "300"), ("blkio.bfq.weight_device", "8:0 50")]


def test_keyed_rollback_resets_new_keys_and_restores_old(tree):
    d = tree["blkio"]
    with open(f"{d}/blkio.throttle.read_bps_device", "w") as f:
        f.write("8:0 4096\n")
    w = fs.Writer(record=True)
    v1res.set_blkio(
        d,
        {
            "throttleReadBpsDevice": [
                {"major": 8, "minor": 0, "rate": 1},
                {"major": 8, "minor": 16, "rate": 2},
            ]
        },
        w,
    )
    restored = []
    real = fs.write
    fs.write = lambda dp, n, v: restored.append((n, v)) or real(dp, n, v)
    try:
        assert w.rollback() == []
    finally:
        fs.write = real
    assert restored == [
        ("blkio.throttle.read_bps_device", "8:16 0"),
        ("blkio.throttle.read_bps_device", "8:0 4096"),
    ]


def test_hugetlb(tree):
    d = tree["hugetlb"]
    w = fs.Writer()
    v1res.set_hugetlb(d, [{"pageSize": "2MB", "limit": 4194304}], w)
    assert read(d, "hugetlb.2MB.limit_in_bytes") == "4194304"
    assert read(d, "hugetlb.2MB.rsvd.limit_in_bytes") == "4194304"
    with pytest.raises(InvalidArgumentError, match=r"hugetlb.1GB.limit_in_bytes=0 .*not supported"):
        v1res.set_hugetlb(d, [{"pageSize": "1GB", "limit": 0}], fs.Writer())


def test_network(tree):
    w = fs.Writer()
    v1res.set_net_cls(tree["net_cls"], {"classID": 0x100001}, w)
    v1res.set_net_prio(tree["net_prio"], {"priorities": [{"name": "eth0", "priority": 5}]}, w)
    assert writes(w) == [("net_cls.classid", "1048577"), ("net_prio.ifpriomap", "eth0 5")]
    with pytest.raises(InvalidArgumentError, match=r"needs a name"):
        v1res.set_net_prio(tree["net_prio"], {"priorities": [{"priority": 5}]}, w)


def test_rdma(tree):
    w = fs.Writer()
    v1res.set_rdma(tree["rdma"], {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}}, w)
    assert writes(w) == [("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000")]


def test_devices_in_order_and_rollback(tree):
    d = tree["devices"]
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
        {"allow": True, "type": "c", "major": 136, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"},
    ]
    w = fs.Writer(record=True)
    v1res.set_devices(d, rules, w)
    assert writes(w) == [
        ("devices.deny", "a *:* rwm"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 136:* rwm"),
        ("devices.deny", "c 1:3 w"),
    ]
    restored = []
    real = fs.write
    fs.write = lambda dp, n, v: restored.append((n, v)) or real(dp, n, v)
    try:
        w.rollback()
    finally:
        fs.write = real
    # devices.list was "a *:* rwm": allow everything again
    assert restored == [("devices.allow", "a")]


def test_devices_rollback_to_a_whitelist(tree):
    d = tree["devices"]
    with open(f"{d}/devices.list", "w") as f:
        f.write("c 1:3 rwm\nc 5:0 rwm\n")
    w = fs.Writer(record=True)
    v1res.set_devices(d, [{"allow": True, "type": "c", "major": 10, "minor": 200}], w)
    restored = []
    real = fs.write
    fs.write = lambda dp, n, v: restored.append((n, v)) or real(dp, n, v)
    try:
        w.rollback()
    finally:
        fs.write = real
    assert restored == [
        ("devices.deny", "a"),
        ("devices.allow", "c 1:3 rwm"),
        ("devices.allow", "c 5:0 rwm"),
    ]


def test_apply_resources_routes_to_hierarchies(tree):
    v1res.apply_resources(
        tree,
        {
            "memory": {"limit": 1 << 20},
            "cpu": {"quota": 20000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 9},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 0}],
            "network": {"classID": 7},
        },
        fs.Writer(),
    )
    assert read(tree["memory"], "memory.limit_in_bytes") == str(1 << 20)
    assert read(tree["cpu"], "cpu.cfs_quota_us") == "20000"
    assert read(tree["cpuset"], "cpuset.cpus") == "0"
    assert read(tree["pids"], "pids.max") == "9"
    assert read(tree["hugetlb"], "hugetlb.2MB.limit_in_bytes") == "0"
    assert read(tree["net_cls"], "net_cls.classid") == "7"


def test_controller_dirs_split_comounted_hierarchies():
    dirs = v1res.controller_dirs(
        {"cpu,cpuacct": "/a", "name=systemd": "/b", "unified": "/c", "memory": "/d"}
    )
    assert dirs == {"cpu": "/a", "cpuacct": "/a", "memory": "/d"}
