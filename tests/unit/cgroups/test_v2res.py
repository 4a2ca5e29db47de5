"""cgroup v2 controllers over a fake directory, with runc's conversions."""

import os

import pytest

from berth.cgroups import fs, v2res
from berth.errors import InvalidArgumentError, UnavailableError
from tests.unit.cgroups.fakes import read, v2_tree


@pytest.fixture
def d(tmp_path):
    return v2_tree(str(tmp_path / "cg"))


def writes(w):
    return [(n, v) for _, n, v in w.written]


def test_memory_conversions(d):
    w = fs.Writer()
    v2res.set_memory(d, {"limit": 100, "swap": 300, "reservation": 50}, w)
    assert writes(w) == [
        ("memory.swap.max", "200"),
        ("memory.max", "100"),
        ("memory.low", "50"),
    ]
    w = fs.Writer()
    v2res.set_memory(d, {"limit": 100, "swap": 100}, w)
    assert writes(w) == [("memory.swap.max", "0"), ("memory.max", "100")]
    w = fs.Writer()
    v2res.set_memory(d, {"limit": -1}, w)
    assert writes(w) == [("memory.swap.max", "max"), ("memory.max", "max")]


def test_memory_swap_alone_uses_current_limit(d):
    with open(f"{d}/memory.max", "w") as f:
        f.write("1000\n")
    w = fs.Writer()
    v2res.set_memory(d, {"swap": 1500}, w)
    assert writes(w) == [("memory.swap.max", "500")]
    with open(f"{d}/memory.max", "w") as f:
        f.write("max\n")
    with pytest.raises(InvalidArgumentError, match=r"needs a memory limit"):
        v2res.set_memory(d, {"swap": 1500}, fs.Writer())


def test_memory_v1_only_fields_ignored(d):
    w = fs.Writer()
    v2res.set_memory(
        d, {"swappiness": 10, "kernel": 5, "kernelTCP": 5, "disableOOMKiller": True}, w
    )
    assert writes(w) == []


def test_memory_no_swap_accounting(d):
    os.unlink(f"{d}/memory.swap.max")
    w = fs.Writer()
    v2res.set_memory(d, {"limit": 100, "swap": -1}, w)
    assert writes(w) == [("memory.max", "100")]
    with pytest.raises(UnavailableError, match=r"swap accounting"):
        v2res.set_memory(d, {"limit": 100, "swap": 200}, fs.Writer())


def test_cpu(d):
    w = fs.Writer()
    v2res.set_cpu(d, {"shares": 1024, "quota": 50000, "period": 200000, "burst": 10, "idle": 0}, w)
    assert writes(w) == [
        ("cpu.weight", "39"),
        ("cpu.max", "50000 200000"),
        ("cpu.max.burst", "10"),
        ("cpu.idle", "0"),
    ]
    # period alone keeps the quota in place
    w = fs.Writer()
    v2res.set_cpu(d, {"period": 100000}, w)
    assert writes(w) == [("cpu.max", "50000 100000")]
    w = fs.Writer()
    v2res.set_cpu(d, {"quota": -1}, w)
    assert writes(w) == [("cpu.max", "max 100000")]


def test_cpu_realtime_unavailable_on_v2(d):
    with pytest.raises(UnavailableError, match=r"realtime"):
        v2res.set_cpu(d, {"realtimeRuntime": 100}, fs.Writer())


def test_cpuset_and_pids(d):
    w = fs.Writer()
    v2res.set_cpu(d, {"cpus": "0-1", "mems": "0"}, w)
    v2res.set_pids(d, {"limit": -1}, w)
    assert writes(w) == [("cpuset.cpus", "0-1"), ("cpuset.mems", "0"), ("pids.max", "max")]


def test_io_weight_conversion_and_max(d):
    w = fs.Writer()
    v2res.set_io(
        d,
        {
            "weight": 500,
            "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
            "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}],
        },
        w,
    )
    assert writes(w) == [
        ("io.weight", "default 4950"),
        ("io.weight", "8:0 10000"),
        ("io.max", "8:0 rbps=1048576"),
        ("io.max", "8:0 wiops=max"),
    ]


def test_io_bfq_takes_blkio_scale(d):
    with open(f"{d}/io.bfq.weight", "w") as f:
        f.write("default 100\n")
    w = fs.Writer()
    v2res.set_io(d, {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 20}]}, w)
    assert writes(w) == [("io.bfq.weight", "500"), ("io.bfq.weight", "8:0 20")]


def test_io_max_rollback(d):
    with open(f"{d}/io.max", "w") as f:
        f.write("8:0 rbps=10 wbps=max riops=max wiops=max\n")
    w = fs.Writer(record=True)
    v2res.set_io(
        d,
        {
            "throttleReadBpsDevice": [
                {"major": 8, "minor": 0, "rate": 5},
                {"major": 8, "minor": 16, "rate": 5},
            ]
        },
        w,
    )
    restored = []
    real = fs.write
    fs.write = lambda dp, n, v: restored.append((n, v)) or real(dp, n, v)
    try:
        w.rollback()
    finally:
        fs.write = real
    assert restored == [
        ("io.max", "8:16 rbps=max wbps=max riops=max wiops=max"),
        ("io.max", "8:0 rbps=10 wbps=max riops=max wiops=max"),
    ]


def test_hugetlb_and_rdma(d):
    w = fs.Writer()
    v2res.apply_resources(
        d,
        {
            "hugepageLimits": [{"pageSize": "2MB", "limit": -1}],
            "rdma": {"mlx5_1": {"hcaHandles": 3}},
        },
        w,
    )
    assert writes(w) == [
        ("hugetlb.2MB.max", "max"),
        ("hugetlb.2MB.rsvd.max", "max"),
        ("rdma.max", "mlx5_1 hca_handle=3"),
    ]


def test_network_is_unavailable_on_v2(d):
    with pytest.raises(UnavailableError, match=r"net_cls"):
        v2res.apply_resources(d, {"network": {"classID": 1}}, fs.Writer())


def test_unified_overrides_converted_values(d):
    v2res.apply_resources(
        d, {"cpu": {"shares": 1024}, "unified": {"cpu.weight": "250"}}, fs.Writer()
    )
    assert read(d, "cpu.weight") == "250"
