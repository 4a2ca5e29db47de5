"""The pure conversions between OCI values and cgroup file values."""

import pytest

from berth.cgroups import convert
from berth.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("shares", "weight"), [(0, 0), (2, 1), (1024, 39), (262144, 10000), (512, 20)]
)
def test_shares_to_weight_matches_runc(shares, weight):
    assert convert.shares_to_weight(shares) == weight


@pytest.mark.parametrize("shares", [2, 100, 1024, 4096, 262144])
def test_weight_to_shares_inverts_within_one_weight_step(shares):
    back = convert.weight_to_shares(convert.shares_to_weight(shares))
    # one cpu.weight step is ~26 shares wide
    assert abs(back - shares) <= 27
    assert convert.shares_to_weight(back) == convert.shares_to_weight(shares)


@pytest.mark.parametrize(("blkio", "io"), [(0, 0), (10, 1), (500, 4950), (1000, 10000)])
def test_blkio_weight_to_io_weight_matches_runc(blkio, io):
    assert convert.blkio_weight_to_io_weight(blkio) == io
    if blkio:
        assert abs(convert.io_weight_to_blkio_weight(io) - blkio) <= 1


@pytest.mark.parametrize(
    ("swap", "memory", "v2"),
    [(-1, 100, -1), (0, -1, -1), (0, 100, 0), (300, 100, 200), (100, 100, 0)],
)
def test_memory_swap_to_v2(swap, memory, v2):
    assert convert.memory_swap_to_v2(swap, memory) == v2


@pytest.mark.parametrize(("swap", "memory"), [(50, 100), (200, 0), (200, -1)])
def test_memory_swap_to_v2_refuses(swap, memory):
    with pytest.raises(InvalidArgumentError, match=r"memory"):
        convert.memory_swap_to_v2(swap, memory)


def test_cpu_max_keeps_what_is_not_given():
    assert convert.cpu_max(50000, None) == "50000 100000"
    assert convert.cpu_max(None, 20000, "30000 100000") == "30000 20000"
    assert convert.cpu_max(-1, 250000) == "max 250000"
    assert convert.cpu_max(None, None, "max 100000") == "max 100000"


def test_device_rules():
    assert convert.device_rule({"allow": False, "access": "rwm"}) == (False, "a *:* rwm")
    assert convert.device_rule(
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
    ) == (True, "c 1:3 rw")
    assert convert.device_rule({"allow": True, "type": "b", "major": 8, "access": "m"}) == (
        True,
        "b 8:* m",
    )
    assert convert.device_rule({"allow": True, "type": "c", "major": -1, "minor": -1})[1] == (
        "c *:* rwm"
    )
    for bad in (
        {"allow": "yes"},
        {"allow": True, "type": "x"},
        {"allow": True, "access": "rwx"},
        {"allow": True, "type": "c", "major": "1"},
    ):
        with pytest.raises(InvalidArgumentError):
            convert.device_rule(bad)


def test_cpuset_syntax():
    assert convert.check_cpuset("0-3,5", "cpu.cpus") == "0-3,5"
    assert convert.parse_cpuset("0-2,5") == [0, 1, 2, 5]
    assert convert.parse_cpuset("") == []
    for bad in ("a", "1-", "3-1", "0,,x", 3):
        with pytest.raises(InvalidArgumentError, match=r"cpu.cpus"):
            convert.check_cpuset(bad, "cpu.cpus")


def test_hugepage_size_and_int_checks():
    assert convert.hugepage_size("2MB") == "2MB"
    for bad in ("2M", "MB", "2mb", 2, "x2MB"):
        with pytest.raises(InvalidArgumentError, match=r"pageSize"):
            convert.hugepage_size(bad)
    with pytest.raises(InvalidArgumentError, match=r"not an integer"):
        convert.check_int(True, "pids.limit")
    with pytest.raises(InvalidArgumentError, match=r"out of range"):
        convert.check_int(101, "memory.swappiness", 0, 100)
