"""Compiling OCI linux.seccomp (no root: filters are exported, never loaded,
and their verdicts computed by the BPF interpreter in bpf.py)."""

import errno
import os

import pytest

from berth.errors import InvalidArgumentError
from berth.linux import seccomp
from tests.unit.confinement import bpf

X86_64 = os.uname().machine == "x86_64"
needs_x86_64 = pytest.mark.skipif(not X86_64, reason="syscall numbers checked on x86_64")

ALLOW = seccomp.SCMP_ACT_ALLOW
KILL_THREAD = seccomp.SCMP_ACT_KILL_THREAD


def errno_ret(e: int) -> int:
    return seccomp.SCMP_ACT_ERRNO | e


def verdict(flt: seccomp.Filter, name: str, *args: int, arch: str | None = None) -> int:
    nr = seccomp.resolve_syscall(name, arch)
    assert nr is not None, name
    token = {
        None: bpf.AUDIT_ARCH_X86_64,
        "SCMP_ARCH_X86_64": bpf.AUDIT_ARCH_X86_64,
        "SCMP_ARCH_X86": bpf.AUDIT_ARCH_I386,
        "SCMP_ARCH_X32": bpf.AUDIT_ARCH_X86_64,
    }[arch]
    return bpf.run(flt.export_bpf(), bpf.seccomp_data(nr, token, args))


def rule(names, action="SCMP_ACT_ALLOW", **kw):
    return {"names": names, "action": action, **kw}


pytestmark = needs_x86_64


def test_default_action_and_rules():
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                rule(["getpid", "read"]),
                rule(["getppid"], "SCMP_ACT_ERRNO", errnoRet=42),
                rule(["kill"], "SCMP_ACT_KILL_PROCESS"),
                rule(["tkill"], "SCMP_ACT_TRAP"),
                rule(["tgkill"], "SCMP_ACT_TRACE", errnoRet=7),
                rule(["uname"], "SCMP_ACT_LOG"),
                rule(["sysinfo"], "SCMP_ACT_KILL"),
            ],
        }
    )
    assert verdict(flt, "getpid") == ALLOW
    assert verdict(flt, "read") == ALLOW
    assert verdict(flt, "write") == errno_ret(errno.EPERM)  # errnoRet defaults to EPERM
    assert verdict(flt, "getppid") == errno_ret(42)
    assert verdict(flt, "kill") == seccomp.SCMP_ACT_KILL_PROCESS
    assert verdict(flt, "tkill") == seccomp.SCMP_ACT_TRAP
    assert verdict(flt, "tgkill") == seccomp.SCMP_ACT_TRACE | 7
    assert verdict(flt, "uname") == seccomp.SCMP_ACT_LOG
    assert verdict(flt, "sysinfo") == KILL_THREAD
    assert not flt.has_notify
    assert flt.flags == 0


def test_default_errno_ret():
    flt = seccomp.compile({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38})
    assert verdict(flt, "getpid") == errno_ret(errno.ENOSYS)


def test_architectures_and_bad_arch():
    cfg = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [rule(["getppid"], "SCMP_ACT_ERRNO", errnoRet=5)],
    }
    flt = seccomp.compile(cfg)
    assert verdict(flt, "getppid") == errno_ret(5)
    # the i386 number of getppid is 64: translated by name, not copied
    assert verdict(flt, "getppid", arch="SCMP_ARCH_X86") == errno_ret(5)
    assert verdict(flt, "getpid", arch="SCMP_ARCH_X86") == ALLOW
    # an architecture the filter does not name is killed (libseccomp's default)
    data = bpf.seccomp_data(39, bpf.AUDIT_ARCH_AARCH64)
    assert bpf.run(flt.export_bpf(), data) == KILL_THREAD
    native_only = seccomp.compile({**cfg, "architectures": []})
    assert verdict(native_only, "getppid", arch="SCMP_ARCH_X86") == KILL_THREAD


def test_args_are_anded_across_indexes_and_ored_within_one():
    # runc's reading: distinct indexes -> one rule (AND); a repeated index ->
    # one rule per comparison (OR)
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                rule(
                    ["kill"],
                    args=[
                        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"},
                    ],
                ),
                rule(
                    ["personality"],
                    args=[
                        {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                        {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                    ],
                ),
            ],
        }
    )
    assert verdict(flt, "kill", 1, 9) == ALLOW
    assert verdict(flt, "kill", 1, 15) == errno_ret(1)
    assert verdict(flt, "kill", 2, 9) == errno_ret(1)
    assert verdict(flt, "personality", 0) == ALLOW
    assert verdict(flt, "personality", 8) == ALLOW
    assert verdict(flt, "personality", 9) == errno_ret(1)


@pytest.mark.parametrize(
    ("op", "value", "value_two", "allowed", "denied"),
    [
        ("SCMP_CMP_NE", 5, 0, [0, 4, 6, 2**63], [5]),
        ("SCMP_CMP_LT", 5, 0, [0, 4], [5, 6, 2**40]),
        ("SCMP_CMP_LE", 5, 0, [0, 5], [6, 2**40]),
        ("SCMP_CMP_EQ", 2**40 + 3, 0, [2**40 + 3], [3, 2**40]),
        ("SCMP_CMP_GE", 5, 0, [5, 6, 2**40], [0, 4]),
        ("SCMP_CMP_GT", 5, 0, [6, 2**40], [0, 5]),
        ("SCMP_CMP_MASKED_EQ", 0xF0, 0x30, [0x30, 0x3F, 0x1_0000_0031], [0x40, 0x20, 0]),
    ],
)
def test_comparison_ops(op, value, value_two, allowed, denied):
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "syscalls": [
                rule(
                    ["lseek"], args=[{"index": 1, "value": value, "valueTwo": value_two, "op": op}]
                )
            ],
        }
    )
    for v in allowed:
        assert verdict(flt, "lseek", 3, v) == ALLOW, (op, v)
    for v in denied:
        assert verdict(flt, "lseek", 3, v) == errno_ret(1), (op, v)


def test_notify_and_flags():
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [rule(["uname"], "SCMP_ACT_NOTIFY")],
        }
    )
    assert flt.has_notify
    assert flt.flags == seccomp.SECCOMP_FILTER_FLAG_TSYNC | seccomp.SECCOMP_FILTER_FLAG_LOG
    assert verdict(flt, "uname") == seccomp.SCMP_ACT_NOTIFY


def test_rule_equal_to_default_is_skipped_like_runc():
    flt = seccomp.compile(
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(["getpid"], "SCMP_ACT_ALLOW")]}
    )
    assert verdict(flt, "getpid") == ALLOW


def test_unknown_syscall_is_skipped_and_listed_like_runc():
    cfg = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [rule(["getpid", "no_such_syscall", "getppid"])],
    }
    flt = seccomp.compile(cfg)
    assert flt.unknown_syscalls == ["no_such_syscall"]
    assert verdict(flt, "getppid") == ALLOW
    with pytest.raises(InvalidArgumentError) as ei:
        seccomp.compile(cfg, strict=True)
    assert str(ei.value) == (
        "parse linux.seccomp.syscalls[0].names: unknown syscall 'no_such_syscall'"
    )


def test_syscall_of_another_arch_resolves():
    # socketcall exists on i386 only; it is not an unknown name
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
            "syscalls": [rule(["socketcall"])],
        }
    )
    assert flt.unknown_syscalls == []
    assert verdict(flt, "socketcall", arch="SCMP_ARCH_X86") == ALLOW


@pytest.mark.parametrize(
    ("cfg", "field", "words"),
    [
        ({"defaultAction": "SCMP_ACT_NOPE"}, "linux.seccomp.defaultAction", "unknown seccomp action 'SCMP_ACT_NOPE'"),
        ({}, "linux.seccomp.defaultAction", "unknown seccomp action None"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.defaultAction", "cannot be the default"),
        ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "linux.seccomp.defaultErrnoRet", "expected an integer"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1}, "linux.seccomp.defaultErrnoRet", "only valid with"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}, "linux.seccomp.architectures[0]", "unknown architecture 'SCMP_ARCH_VAX'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["x86_64"]}, "linux.seccomp.architectures[0]", "unknown architecture 'x86_64'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FAST"]}, "linux.seccomp.flags[0]", "unknown seccomp flag"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_DENY"}]}, "linux.seccomp.syscalls[0].action", "unknown seccomp action 'SCMP_ACT_DENY'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]}, "linux.seccomp.syscalls[0].names", "non-empty list"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]}, "linux.seccomp.syscalls[0].errnoRet", "only valid with"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}, "linux.seccomp.syscalls[0].args[0].index", "from 0 to 5"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_LIKE"}]}]}, "linux.seccomp.syscalls[0].args[0].op", "unknown comparison 'SCMP_CMP_LIKE'"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]}, "linux.seccomp.syscalls[0].args[0].value", "expected an integer"),
    ],
)  # fmt: skip
def test_bad_configs_name_the_field(cfg, field, words):
    with pytest.raises(InvalidArgumentError) as ei:
        seccomp.compile(cfg)
    msg = str(ei.value)
    assert msg.startswith(f"parse {field}: "), msg
    assert words in msg
    assert ei.value.field == field


def test_first_of_two_unconditional_rules_wins_like_runc():
    # libseccomp keeps the first action given to a syscall; runc passes such
    # configs through, and so does berth
    for first, second in ((1, 2), (2, 1)):
        cfg = {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                rule(["getppid"], "SCMP_ACT_ERRNO", errnoRet=first),
                rule(["getppid"], "SCMP_ACT_ERRNO", errnoRet=second),
            ],
        }
        assert verdict(seccomp.compile(cfg), "getppid") == errno_ret(first)


def test_optimize_levels_agree(tmp_path):
    from berth.runtime.confinement import DEFAULT_CAPABILITIES, default_seccomp_profile

    prof = default_seccomp_profile(DEFAULT_CAPABILITIES, "x86_64", kernel="6.1.0")
    tree = seccomp.compile(prof)
    linear = seccomp.compile(prof, optimize=1, hot=())
    assert tree.bpf != linear.bpf
    for name in ("getpid", "read", "openat", "keyctl", "mount", "clone3", "bpf", "kexec_load"):
        assert verdict(tree, name) == verdict(linear, name), name
    for arch in ("SCMP_ARCH_X86", "SCMP_ARCH_X32"):
        for name in ("getpid", "read", "keyctl", "mount"):
            assert verdict(tree, name, arch=arch) == verdict(linear, name, arch=arch)


def test_cache_round_trip_and_torn_entry(tmp_path):
    cfg = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule(["getpid", "nope_nope"])]}
    first = seccomp.compile(cfg, cache_dir=str(tmp_path))
    (entry,) = os.listdir(tmp_path)
    again = seccomp.compile(cfg, cache_dir=str(tmp_path))
    assert (again.bpf, again.flags, again.has_notify, again.nr_seccomp, again.unknown_syscalls) == (
        first.bpf, first.flags, first.has_notify, first.nr_seccomp, first.unknown_syscalls,
    )  # fmt: skip
    # a torn or tampered entry is detected by its digest and rebuilt
    path = tmp_path / entry
    data = path.read_bytes()
    path.write_bytes(data[:-8] + b"\x06\x00\x00\x00\xff\xff\xff\x7f")
    rebuilt = seccomp.compile(cfg, cache_dir=str(tmp_path))
    assert rebuilt.bpf == first.bpf
    assert path.read_bytes() == data
    # a different config gets its own entry
    seccomp.compile({**cfg, "defaultErrnoRet": 2}, cache_dir=str(tmp_path))
    assert len(os.listdir(tmp_path)) == 2


def test_recorded_entry_is_read_back_and_checked(tmp_path):
    from berth.paths import RuntimePaths
    from berth.runtime.filters import compile_seccomp, recorded_entry, seccomp_cache_dir

    paths = RuntimePaths(str(tmp_path / "root"))
    cfg = {"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [rule(["getpid"])]}}}
    first = compile_seccomp(paths, cfg)
    entry = recorded_entry(first)
    assert entry and os.listdir(seccomp_cache_dir(paths)) == [entry]
    again = compile_seccomp(paths, cfg, entry)
    assert (again.bpf, again.flags, again.cache_path) == (first.bpf, first.flags, first.cache_path)
    # a torn entry or a name that is not one fall back to the config's own
    path = tmp_path / "root" / "@seccomp-cache" / entry
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    assert compile_seccomp(paths, cfg, entry).bpf == first.bpf
    assert path.read_bytes() == data
    for bogus in ("../x.bpf", ".bpf", "nope", ""):
        assert compile_seccomp(paths, cfg, bogus).bpf == first.bpf
    assert recorded_entry(None) is None
    assert compile_seccomp(paths, {"linux": {}}, entry) is None


def test_module_imports_light():
    import subprocess
    import sys

    code = (
        "import sys; import berth.linux.seccomp, berth.linux.capabilities; "
        "bad = {'re', 'json', 'enum', 'dataclasses', 'logging', 'typing'} & set(sys.modules); "
        "print(sorted(bad))"
    )
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {os.path.join(os.path.dirname(seccomp.__file__), '..', '..')!r}); {code}"], capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert out.strip() == "[]"
    # and libseccomp is not opened until a filter is compiled
    code2 = "import berth.linux.seccomp as s; print(s._lib is None)"
    out = subprocess.run(
        [sys.executable, "-c", code2], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "True"


def test_dumps_loads_round_trip():
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [rule(["uname"], "SCMP_ACT_NOTIFY"), rule(["nope_nope"], "SCMP_ACT_KILL")],
        }
    )
    data = flt.dumps()
    back = seccomp.Filter.loads(data)
    assert (back.bpf, back.flags, back.has_notify, back.nr_seccomp, back.unknown_syscalls) == (
        flt.bpf, flt.flags, True, flt.nr_seccomp, ["nope_nope"],
    )  # fmt: skip
    for bad in (data[:-1], data[:-8], b"", b"{}\n", data.replace(b'"flags":2', b'"flags":3')[:-8]):
        with pytest.raises(InvalidArgumentError, match="damaged or not a filter"):
            seccomp.Filter.loads(bad)


def test_enosys_for_syscalls_newer_than_the_profile():
    # runc's rule: numbers above the highest the config names answer ENOSYS,
    # so programs for newer kernels fall back instead of failing on EPERM
    cfg = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            rule(["getpid", "openat", "close"]),
            rule(["kill"], "SCMP_ACT_ERRNO", errnoRet=3),
        ],
    }
    flt = seccomp.compile(cfg)
    x86_64, i386 = bpf.AUDIT_ARCH_X86_64, bpf.AUDIT_ARCH_I386
    top = seccomp.resolve_syscall("openat")  # 257, the highest named on x86_64

    def at(nr, arch=x86_64):
        return bpf.run(flt.export_bpf(), bpf.seccomp_data(nr, arch))

    assert at(top) == ALLOW
    assert at(top + 1) == errno_ret(errno.ENOSYS)
    assert at(1000) == errno_ret(errno.ENOSYS)
    assert at(seccomp.resolve_syscall("kill")) == errno_ret(3)
    assert at(seccomp.resolve_syscall("keyctl")) == errno_ret(errno.EPERM)  # 250 < 257
    top_i386 = seccomp.resolve_syscall("openat", "SCMP_ARCH_X86")  # 295
    assert at(top_i386, i386) == ALLOW
    assert at(top_i386 + 1, i386) == errno_ret(errno.ENOSYS)
    assert at(seccomp.resolve_syscall("keyctl", "SCMP_ARCH_X86"), i386) == errno_ret(errno.EPERM)
    x32_top = seccomp.resolve_syscall("openat", "SCMP_ARCH_X32")
    assert at(x32_top) == ALLOW
    assert at(x32_top + 1) == errno_ret(errno.ENOSYS)
    # x32's old-ABI block (512-547 above the x32 bit) is the program's business
    assert at(bpf.X32_SYSCALL_BIT + 530) == errno_ret(errno.EPERM)
    # an architecture the filter does not name still hits the bad-arch action
    assert bpf.run(flt.export_bpf(), bpf.seccomp_data(1000, bpf.AUDIT_ARCH_AARCH64)) == KILL_THREAD

    plain = seccomp.compile(cfg, enosys=False)
    assert flt.bpf.endswith(plain.bpf) and flt.instructions > plain.instructions
    assert bpf.run(plain.export_bpf(), bpf.seccomp_data(1000, x86_64)) == errno_ret(errno.EPERM)
    # nothing to add when the default allows
    allow = {**cfg, "defaultAction": "SCMP_ACT_ALLOW"}
    assert seccomp.compile(allow).bpf == seccomp.compile(allow, enosys=False).bpf


# The kernel's seccomp action cache (Linux 5.11+) answers ALLOW from a
# bitmap, without running the BPF program, for every syscall whose verdict it
# can prove from the number and architecture alone (kernel/seccomp.c,
# seccomp_is_const_allow). Without it every syscall of a container runs the
# default profile's ~1300 instructions. These tests check the structure of
# the exported program, not timings: one shared load of an argument or of the
# instruction pointer would silently turn the cache off for every syscall.


def _unconditional_allows(profile: dict) -> set[str]:
    plain = {
        n
        for sc in profile["syscalls"]
        if sc["action"] == "SCMP_ACT_ALLOW" and not sc.get("args")
        for n in sc["names"]
    }
    other = {
        n
        for sc in profile["syscalls"]
        if sc["action"] != "SCMP_ACT_ALLOW" or sc.get("args")
        for n in sc["names"]
    }
    return plain - other


@pytest.mark.parametrize("caps", ["docker", "all"])
@pytest.mark.parametrize("optimize", [2, 1])
def test_default_profile_keeps_the_kernel_action_cache(caps, optimize):
    from berth.linux.capabilities import CAPS
    from berth.runtime.confinement import DEFAULT_CAPABILITIES, default_seccomp_profile

    held = DEFAULT_CAPABILITIES if caps == "docker" else list(CAPS)
    prof = default_seccomp_profile(held, "x86_64", kernel="6.18.0")
    flt = seccomp.compile(prof, optimize=optimize)
    allowed = _unconditional_allows(prof)
    assert {"getpid", "read", "write", "openat", "close", "futex", "mmap"} <= allowed
    # the kernel caches its native and compat architectures: x86-64 and i386
    for arch, token in (("SCMP_ARCH_X86_64", bpf.AUDIT_ARCH_X86_64), ("SCMP_ARCH_X86", bpf.AUDIT_ARCH_I386)):  # fmt: skip
        nrs = {n: seccomp.resolve_syscall(n, arch) for n in allowed}
        nrs = {n: nr for n, nr in nrs.items() if nr is not None and nr >= 0}
        cached = flt.kernel_cached(sorted(nrs.values()), token)
        missing = sorted(n for n, nr in nrs.items() if nr not in cached)
        assert not missing, f"{arch}: the kernel would run the BPF program for {missing}"
        # the argument-checked rules are the ones that cannot be cached (with
        # CAP_SYS_ADMIN, clone is allowed whatever its flags)
        for name in ("socket", "personality", "clone")[: 3 if caps == "docker" else 2]:
            nr = seccomp.resolve_syscall(name, arch)
            if nr is not None and nr >= 0:
                assert not seccomp.const_allow(flt.bpf, nr, token), (arch, name)


def test_kernel_cache_emulator_agrees_with_the_program_and_spots_prologues():
    from berth.runtime.confinement import DEFAULT_CAPABILITIES, default_seccomp_profile

    prof = default_seccomp_profile(DEFAULT_CAPABILITIES, "x86_64", kernel="6.18.0")
    flt = seccomp.compile(prof)
    cached = flt.kernel_cached(range(600), bpf.AUDIT_ARCH_X86_64)
    assert len(cached) > 250
    # whatever the arguments and instruction pointer, a cached syscall is allowed
    for nr in range(600):
        for args, ip in (((), 0), ((2**64 - 1,) * 6, 0x7FFF12345678), ((0x7E020000, 16, 1), 1)):
            v = bpf.run(flt.export_bpf(), bpf.seccomp_data(nr, bpf.AUDIT_ARCH_X86_64, args, ip))
            if nr in cached:
                assert v == ALLOW, nr
    # the regressions the cache test exists for: a shared prologue reading the
    # instruction pointer or an argument (same verdicts, no cache at all)
    for offset in (8, 16, 20):  # instruction_pointer, args[0] (low, high)
        prologue = (0x20).to_bytes(2, "little") + b"\0\0" + offset.to_bytes(4, "little")
        broken = seccomp.Filter(prologue + flt.bpf, 0, False, flt.nr_seccomp, [])
        assert broken.kernel_cached(range(600), bpf.AUDIT_ARCH_X86_64) == set()
    # an instruction the kernel's emulator does not follow (tax) does the same
    tax = (0x07).to_bytes(2, "little") + b"\0\0\0\0\0\0"
    assert seccomp.Filter(tax + flt.bpf, 0, False, 0, []).kernel_cached([39]) == set()
    # and a plain allow-all filter is cached for everything
    ret_allow = (0x06).to_bytes(2, "little") + b"\0\0" + ALLOW.to_bytes(4, "little")
    one = seccomp.Filter(ret_allow, 0, False, 0, [])
    assert one.instructions == 1
    assert one.kernel_cached(range(600), bpf.AUDIT_ARCH_X86_64) == set(range(600))
