"""The cgroup v2 eBPF device filter, run in a small eBPF interpreter and
compared with the v1 devices controller's semantics on many rule sets."""

import random

import pytest

from berth.cgroups.devices import compile_rules
from berth.errors import InvalidArgumentError

BITS = {"m": 1, "r": 2, "w": 4}
TYPES = {"b": 1, "c": 2}


def run(prog: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    """Execute the subset of eBPF the compiler emits on a bpf_cgroup_dev_ctx."""
    ctx = [(access << 16) | dev_type, major, minor]
    reg = [0] * 11
    pc = 0
    steps = 0
    n = len(prog) // 8
    while True:
        steps += 1
        assert steps < 100000 and 0 <= pc < n, "runaway program"
        code = prog[pc * 8]
        dst = prog[pc * 8 + 1] & 0xF
        src = prog[pc * 8 + 1] >> 4
        off = int.from_bytes(prog[pc * 8 + 2 : pc * 8 + 4], "little", signed=True)
        imm = int.from_bytes(prog[pc * 8 + 4 : pc * 8 + 8], "little", signed=True)
        pc += 1
        if code == 0x61:
            assert src == 1 and off in (0, 4, 8)
            reg[dst] = ctx[off // 4]
        elif code == 0x54:
            reg[dst] &= imm & 0xFFFFFFFF
        elif code == 0x74:
            reg[dst] = (reg[dst] & 0xFFFFFFFF) >> imm
        elif code == 0xBC:
            reg[dst] = reg[src] & 0xFFFFFFFF
        elif code == 0xB7:
            reg[dst] = imm
        elif code == 0x55:
            if reg[dst] != imm:
                pc += off
        elif code == 0x15:
            if reg[dst] == imm:
                pc += off
        elif code == 0x05:
            pc += off
        elif code == 0x95:
            return reg[0]
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def v1_model(rules, dev_type: str, access: str, major: int, minor: int) -> bool:
    """The v1 controller under an allow-all parent: per access bit, the last
    rule covering the device and bit decides; uncovered bits are allowed."""
    for bit in access:
        verdict = True
        for r in rules:
            kind = r.get("type", "a")
            if kind != "a":
                if kind != dev_type:
                    continue
                if r.get("major", -1) not in (-1, None, major):
                    continue
                if r.get("minor", -1) not in (-1, None, minor):
                    continue
            if bit in r.get("access", "rwm"):
                verdict = r["allow"]
        if not verdict:
            return False
    return True


def allowed(rules, dev_type, access, major, minor) -> bool:
    mask = sum(BITS[c] for c in access)
    return run(compile_rules(rules), TYPES[dev_type], mask, major, minor) == 1


DEFAULT = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rw"},
    {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"},
]


@pytest.mark.parametrize(
    ("dev", "access", "ok"),
    [
        (("c", 1, 3), "rw", True),
        (("c", 1, 5), "r", True),
        (("c", 1, 5), "rw", False),  # the later deny of w wins
        (("c", 136, 7), "rwm", True),
        (("c", 5, 2), "rw", True),
        (("c", 5, 2), "m", False),
        (("b", 8, 0), "r", False),
        (("c", 1, 8), "r", False),
    ],
)
def test_typical_container_rules(dev, access, ok):
    assert allowed(DEFAULT, dev[0], access, dev[1], dev[2]) is ok


def test_allow_rules_add_up_per_access_bit():
    rules = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"},
    ]
    assert allowed(rules, "c", "rw", 1, 3)
    assert not allowed(rules, "c", "m", 1, 3)


def test_no_rules_cover_means_allowed_and_deny_all_denies():
    assert allowed([{"allow": True, "type": "b", "major": 8, "access": "r"}], "c", "rw", 1, 3)
    assert not allowed([{"allow": False, "access": "rwm"}], "c", "r", 1, 3)


def test_matches_v1_semantics_on_random_rule_sets():
    rng = random.Random(1234)
    devices = [("c", 1, 3), ("c", 1, 5), ("b", 8, 0), ("b", 8, 1), ("c", 136, 0)]
    for _ in range(120):
        rules = []
        for _ in range(rng.randint(1, 6)):
            rule = {
                "allow": rng.random() < 0.6,
                "access": "".join(c for c in "rwm" if rng.random() < 0.6) or "r",
            }
            kind = rng.choice("abc")
            if kind != "a":
                rule["type"] = kind
                dev = rng.choice(devices)
                rule["major"] = rng.choice([dev[1], -1])
                rule["minor"] = rng.choice([dev[2], -1, None])
            rules.append(rule)
        for dev in devices:
            for access in ("r", "w", "m", "rw", "rwm"):
                want = v1_model(rules, dev[0], access, dev[1], dev[2])
                assert allowed(rules, dev[0], access, dev[1], dev[2]) is want, (rules, dev, access)


def test_bad_rules_refused_before_any_bpf():
    with pytest.raises(InvalidArgumentError):
        compile_rules([{"allow": True, "type": "x"}])
