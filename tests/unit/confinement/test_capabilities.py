"""The capability name table and parsing (no root, no kernel state changed)."""

import os
import re
import shutil
import subprocess

import pytest

from berth.errors import InvalidArgumentError
from berth.linux import capabilities as caps

HEADER = "/usr/include/linux/capability.h"


def _header_caps() -> dict[str, int]:
    with open(HEADER) as f:
        text = f.read()
    return {
        m[0]: int(m[1]) for m in re.findall(r"^#define\s+(CAP_[A-Z_]+)\s+(\d+)\s*$", text, re.M)
    }


@pytest.mark.skipif(not os.path.exists(HEADER), reason="linux headers not installed")
def test_table_matches_kernel_header():
    header = _header_caps()
    # the header may be newer than our table; every name we know must agree
    assert header["CAP_CHECKPOINT_RESTORE"] == 40
    for name, bit in caps.CAPS.items():
        assert header[name] == bit, name
    assert {n: b for n, b in header.items() if b <= 40} == caps.CAPS


@pytest.mark.skipif(not shutil.which("capsh"), reason="capsh not installed")
def test_table_matches_capsh_decode():
    for name, bit in caps.CAPS.items():
        out = subprocess.run(
            ["capsh", f"--decode={1 << bit:#x}"], capture_output=True, text=True, check=True
        ).stdout
        # capsh prints e.g. 0x0000000000000001=cap_chown
        assert out.strip().split("=", 1)[1] == name.lower(), name


def test_table_is_dense_and_complete():
    assert sorted(caps.CAPS.values()) == list(range(41))
    assert caps.CAP_NAMES[21] == "CAP_SYS_ADMIN"


def test_last_cap_reads_proc():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        assert caps.last_cap() == int(f.read())


def test_parse_caps_mask():
    assert caps.parse_caps([]) == 0
    assert caps.parse_caps(None) == 0
    assert caps.parse_caps(["CAP_CHOWN", "CAP_KILL"]) == (1 << 0) | (1 << 5)
    assert caps.parse_caps(["CAP_SYS_ADMIN", "CAP_SYS_ADMIN"]) == 1 << 21
    assert caps.names(caps.parse_caps(["CAP_KILL", "CAP_CHOWN"])) == ["CAP_CHOWN", "CAP_KILL"]


@pytest.mark.parametrize("bad", ["CAP_CHOWNN", "chown", "cap_chown", "CAP_", ""])
def test_parse_caps_unknown_name_names_it_and_field(bad):
    with pytest.raises(InvalidArgumentError) as ei:
        caps.parse_caps(["CAP_KILL", bad], "process.capabilities.bounding")
    msg = str(ei.value)
    assert repr(bad) in msg
    assert "process.capabilities.bounding" in msg
    assert msg == msg.lower() or bad != bad.lower()  # lower-case apart from the name itself
    assert ei.value.field == "process.capabilities.bounding"
    assert ei.value.capability == bad


def test_parse_caps_lenient_like_runc():
    ignored: list[str] = []
    mask = caps.parse_caps(["CAP_KILL", "CAP_UNKNOWN"], ignored=ignored, strict=False)
    assert mask == 1 << 5
    assert ignored == ["CAP_UNKNOWN"]


def test_parse_caps_beyond_kernel_is_ignored(monkeypatch):
    # a kernel older than CAP_BPF (5.8): the names are valid, the kernel lacks them
    monkeypatch.setattr(caps, "_last_cap", 37)
    ignored: list[str] = []
    mask = caps.parse_caps(["CAP_BPF", "CAP_AUDIT_READ", "CAP_PERFMON"], ignored=ignored)
    assert mask == 1 << 37
    assert ignored == ["CAP_BPF", "CAP_PERFMON"]
    assert caps.all_caps() == (1 << 38) - 1


def test_parse_caps_rejects_non_string():
    with pytest.raises(InvalidArgumentError, match="not a string"):
        caps.parse_caps([21], "process.capabilities.effective")  # type: ignore[list-item]


def test_parse_config_defaults_empty_and_checks_types():
    sets = caps.parse_config(None)
    assert sets == dict.fromkeys(caps.FIELDS, 0)
    sets = caps.parse_config({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]})
    assert sets["bounding"] == sets["effective"] == 1 << 5
    # CVE-2022-29162: what the config does not name stays empty
    assert sets["inheritable"] == sets["ambient"] == sets["permitted"] == 0
    with pytest.raises(InvalidArgumentError, match=r"process\.capabilities\.ambient"):
        caps.parse_config({"ambient": "CAP_KILL"})
    with pytest.raises(InvalidArgumentError, match=r"process\.capabilities\.permitted"):
        caps.parse_config({"permitted": ["CAP_NOPE"]})


def test_capget_reads_own_sets():
    eff, prm, inh = caps.capget()
    with open("/proc/self/status") as f:
        status = dict(line.split(":\t", 1) for line in f if line.startswith("Cap"))
    assert eff == int(status["CapEff"], 16)
    assert prm == int(status["CapPrm"], 16)
    assert inh == int(status["CapInh"], 16)
    assert caps.bounding() == int(status["CapBnd"], 16)
    assert caps.ambient() == int(status["CapAmb"], 16)


def test_bad_config_changes_nothing():
    before = caps.capget(), caps.bounding()
    with pytest.raises(InvalidArgumentError):
        caps.apply({"bounding": ["CAP_NOT_A_CAP"]}, switch_user=lambda: pytest.fail("called"))
    assert (caps.capget(), caps.bounding()) == before


def test_last_cap_without_proc(monkeypatch):
    # early in a container's init /proc may not be mounted: probe the bounding set
    def no_proc(*a, **kw):
        raise FileNotFoundError(2, "no such file", a[0])

    with open("/proc/sys/kernel/cap_last_cap") as f:
        want = int(f.read())
    monkeypatch.setattr(caps, "_last_cap", None)
    monkeypatch.setattr(caps, "open", no_proc, raising=False)
    assert caps.last_cap() == want
