"""runc update flags -> OCI resources."""

import pytest

from berth.cgroups.flags import ram_in_bytes, resources_from_update_flags
from berth.errors import InvalidArgumentError


@pytest.mark.parametrize(
    ("text", "n"),
    [
        ("512", 512),
        ("64k", 65536),
        ("1.5g", 1610612736),
        ("256MB", 256 << 20),
        ("2MiB", 2 << 20),
        ("-1", -1),
        ("10b", 10),
    ],
)
def test_ram_in_bytes(text, n):
    assert ram_in_bytes(text) == n


@pytest.mark.parametrize("text", ["", "g", "1x", "1.2.3m", "-5m"])
def test_ram_in_bytes_refuses(text):
    with pytest.raises(InvalidArgumentError, match=r"parse size"):
        ram_in_bytes(text)


def test_flags_to_resources():
    res = resources_from_update_flags(
        {
            "memory": "256m",
            "memory-swap": "-1",
            "cpu-quota": "50000",
            "cpu-period": "100000",
            "cpuset-cpus": "0-1",
            "pids-limit": "100",
            "blkio-weight": "300",
            "cpu-share": None,
        }
    )
    assert res == {
        "memory": {"limit": 256 << 20, "swap": -1},
        "cpu": {"quota": 50000, "period": 100000, "cpus": "0-1"},
        "pids": {"limit": 100},
        "blockIO": {"weight": 300},
    }


def test_flags_refused():
    with pytest.raises(InvalidArgumentError, match=r"--cpu-quota=half: not an integer"):
        resources_from_update_flags({"cpu-quota": "half"})
    with pytest.raises(InvalidArgumentError, match=r"--nope: unknown"):
        resources_from_update_flags({"nope": "1"})
