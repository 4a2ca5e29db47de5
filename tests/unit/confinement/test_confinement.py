"""Docker's default confinement as data: capabilities, paths and the default
seccomp profile, checked both as data and through the compiled filter's
verdicts (bpf.py interprets the exported program; nothing is loaded)."""

import errno
import os

import pytest

from berth import jsonio
from berth.errors import InvalidArgumentError
from berth.linux import capabilities, seccomp
from berth.runtime import confinement
from berth.runtime.confinement import DEFAULT_CAPABILITIES, default_seccomp_profile
from tests.unit.confinement import bpf

EPERM = seccomp.SCMP_ACT_ERRNO | errno.EPERM
ENOSYS = seccomp.SCMP_ACT_ERRNO | errno.ENOSYS
ALLOW = seccomp.SCMP_ACT_ALLOW
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_THREAD_FLAGS = 0x003D0F00  # what glibc's pthread_create passes
SIGCHLD = 17
AF_UNIX, AF_INET, AF_NETLINK, AF_ALG, AF_VSOCK = 1, 2, 16, 38, 40

x86_64_only = pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 numbers")


def allowed_names(profile: dict) -> set[str]:
    """Syscalls allowed whatever their arguments."""
    out = set()
    for r in profile["syscalls"]:
        if r["action"] == "SCMP_ACT_ALLOW" and "args" not in r:
            out.update(r["names"])
    return out


def rules_for(profile: dict, name: str) -> list[dict]:
    return [r for r in profile["syscalls"] if name in r["names"]]


def test_docker_default_capabilities():
    assert len(DEFAULT_CAPABILITIES) == 14
    assert len(set(DEFAULT_CAPABILITIES)) == 14
    assert capabilities.parse_caps(DEFAULT_CAPABILITIES) == 0xA80425FB
    assert "CAP_SYS_ADMIN" not in DEFAULT_CAPABILITIES
    assert "CAP_NET_ADMIN" not in DEFAULT_CAPABILITIES


def test_masked_and_readonly_paths():
    for p in ("/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/scsi",
              "/proc/acpi", "/proc/asound", "/proc/interrupts", "/proc/latency_stats",
              "/proc/timer_stats", "/sys/firmware", "/sys/devices/virtual/powercap"):  # fmt: skip
        assert p in confinement.DEFAULT_MASKED_PATHS
    assert confinement.DEFAULT_READONLY_PATHS == [
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
    ]  # fmt: skip
    assert not set(confinement.DEFAULT_MASKED_PATHS) & set(confinement.DEFAULT_READONLY_PATHS)


def test_thermal_throttle_paths(tmp_path):
    for n in (0, 1, 10, 2):
        (tmp_path / f"cpu{n}").mkdir()
    for n in (0, 2, 10):
        (tmp_path / f"cpu{n}" / "thermal_throttle").mkdir()
    (tmp_path / "cpufreq").mkdir()
    (tmp_path / "cpuidle").mkdir()
    want = [f"/sys/devices/system/cpu/cpu{n}/thermal_throttle" for n in (0, 2, 10)]
    assert confinement.thermal_throttle_paths(str(tmp_path)) == want
    assert confinement.masked_paths(str(tmp_path)) == confinement.DEFAULT_MASKED_PATHS + want
    assert confinement.thermal_throttle_paths(str(tmp_path / "missing")) == []


def test_profile_file_is_packaged_json():
    with open(confinement.PROFILE_PATH, "rb") as f:
        data = jsonio.loads(f.read())
    assert data["defaultAction"] == "SCMP_ACT_ERRNO"
    # every name in the data is a plausible syscall name, no duplicates in a rule
    for r in data["syscalls"]:
        assert len(r["names"]) == len(set(r["names"])), r["comment"]
        assert r["action"] in ("SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO")


def test_profile_shape_for_docker_defaults():
    prof = default_seccomp_profile(DEFAULT_CAPABILITIES, "x86_64", kernel="6.1.0")
    assert prof["defaultAction"] == "SCMP_ACT_ERRNO"
    assert prof["defaultErrnoRet"] == errno.EPERM
    assert prof["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert set(prof) == {"defaultAction", "defaultErrnoRet", "architectures", "syscalls"}
    names = allowed_names(prof)
    assert 340 <= len(names) <= 400
    for blocked in ("keyctl", "add_key", "request_key", "mount", "umount2", "unshare", "setns",
                    "bpf", "reboot", "init_module", "finit_module", "kexec_load", "clock_settime",
                    "settimeofday", "open_by_handle_at", "perf_event_open", "userfaultfd",
                    "clone", "clone3", "socket", "personality", "swapon", "pivot_root",
                    "iopl", "acct", "lookup_dcookie", "fsopen", "move_mount"):  # fmt: skip
        assert blocked not in names, blocked
    for needed in ("read", "write", "openat", "execve", "getpid", "futex", "arch_prctl",
                   "chroot", "ptrace", "rseq", "io_uring_setup", "seccomp"):  # fmt: skip
        assert needed in names, needed
    assert rules_for(prof, "clone3") == [
        {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS}
    ]
    (clone,) = rules_for(prof, "clone")
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "op": "SCMP_CMP_MASKED_EQ"}]
    # output is plain OCI: no includes/excludes/comments left
    for r in prof["syscalls"]:
        assert set(r) <= {"names", "action", "args", "errnoRet"}


def test_cap_conditional_entries():
    base = allowed_names(default_seccomp_profile(DEFAULT_CAPABILITIES, "x86_64", kernel="6.1"))
    admin_prof = default_seccomp_profile(
        [*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], "x86_64", kernel="6.1"
    )
    admin = allowed_names(admin_prof)
    assert {
        "mount",
        "umount2",
        "unshare",
        "setns",
        "clone",
        "clone3",
        "bpf",
        "sethostname",
    } <= admin
    assert (
        not rules_for(admin_prof, "clone3")
        or rules_for(admin_prof, "clone3")[0]["action"] == "SCMP_ACT_ALLOW"
    )
    assert all("args" not in r for r in rules_for(admin_prof, "clone"))
    assert admin - base >= {"mount", "unshare"}
    cases = {
        "CAP_SYS_BOOT": "reboot", "CAP_SYS_MODULE": "finit_module", "CAP_SYS_PACCT": "acct",
        "CAP_SYS_PTRACE": "kcmp", "CAP_SYS_RAWIO": "iopl", "CAP_SYS_TIME": "clock_settime",
        "CAP_SYS_TTY_CONFIG": "vhangup", "CAP_SYS_NICE": "mbind", "CAP_SYSLOG": "syslog",
        "CAP_BPF": "bpf", "CAP_PERFMON": "perf_event_open", "CAP_DAC_READ_SEARCH": "open_by_handle_at",
    }  # fmt: skip
    for cap, name in cases.items():
        assert name not in base, name
        with_cap = default_seccomp_profile([cap], "x86_64", kernel="6.1")
        assert name in allowed_names(with_cap), (cap, name)
    # chroot needs CAP_SYS_CHROOT, which Docker's defaults hold
    assert "chroot" in base
    assert "chroot" not in allowed_names(default_seccomp_profile([], "x86_64", kernel="6.1"))


def test_min_kernel_and_arches():
    old = allowed_names(default_seccomp_profile(DEFAULT_CAPABILITIES, "x86_64", kernel="4.4.0-210"))
    assert "ptrace" not in old
    new = allowed_names(default_seccomp_profile(DEFAULT_CAPABILITIES, "x86_64", kernel="4.8.0"))
    assert "ptrace" in new
    arm = default_seccomp_profile(DEFAULT_CAPABILITIES, "aarch64", kernel="6.1")
    assert arm["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in allowed_names(arm)
    assert "set_tls" in allowed_names(arm)
    s390 = default_seccomp_profile(DEFAULT_CAPABILITIES, "s390x", kernel="6.1")
    (clone,) = rules_for(s390, "clone")
    assert clone["args"][0]["index"] == 1
    assert (
        default_seccomp_profile([], "amd64", kernel="6.1")["architectures"][0] == "SCMP_ARCH_X86_64"
    )
    with pytest.raises(InvalidArgumentError, match="unknown architecture 'vax'"):
        default_seccomp_profile([], "vax")


@pytest.fixture(scope="module")
def flt():
    prof = default_seccomp_profile(DEFAULT_CAPABILITIES, "x86_64", kernel="6.1")
    return seccomp.compile(prof)


@pytest.fixture(scope="module")
def admin():
    prof = default_seccomp_profile([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"], "x86_64", kernel="6.1")
    return seccomp.compile(prof)


@x86_64_only
class TestCompiledDefault:
    """What the compiled default filter answers, instruction by instruction."""

    @staticmethod
    def v(flt, name, *args, arch=bpf.AUDIT_ARCH_X86_64, nr_arch=None):
        nr = seccomp.resolve_syscall(name, nr_arch)
        return bpf.run(flt.export_bpf(), bpf.seccomp_data(nr, arch, args))

    def test_allowlist(self, flt):
        for name in ("getpid", "read", "openat", "close", "execve", "mmap", "futex"):
            assert self.v(flt, name) == ALLOW, name
        for name in ("keyctl", "add_key", "mount", "unshare", "setns", "bpf", "kexec_load"):
            assert self.v(flt, name) == EPERM, name

    def test_clone_and_clone3(self, flt, admin):
        assert self.v(flt, "clone", SIGCHLD) == ALLOW  # fork
        assert self.v(flt, "clone", CLONE_THREAD_FLAGS) == ALLOW  # pthread_create
        assert self.v(flt, "clone", CLONE_NEWUSER | SIGCHLD) == EPERM
        assert self.v(flt, "clone", CLONE_NEWNS | SIGCHLD) == EPERM
        assert self.v(flt, "clone3") == ENOSYS
        assert self.v(admin, "clone", CLONE_NEWUSER | SIGCHLD) == ALLOW
        assert self.v(admin, "clone3") == ALLOW
        assert self.v(admin, "mount") == ALLOW

    def test_socket_families(self, flt):
        for fam in (AF_UNIX, AF_INET, AF_NETLINK, 10, 37, 39, 41, 44, 45):
            assert self.v(flt, "socket", fam, 1, 0) == ALLOW, fam
        for fam in (AF_ALG, AF_VSOCK):
            assert self.v(flt, "socket", fam, 1, 0) == EPERM, fam
            # the kernel reads the family as an int: high bits must not get past
            assert self.v(flt, "socket", (1 << 32) | fam, 1, 0) == EPERM, fam
            assert self.v(flt, "socket", (0xFFFF << 48) | fam, 1, 0) == EPERM, fam

    def test_personality(self, flt):
        for p in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF):
            assert self.v(flt, "personality", p) == ALLOW, p
        for p in (0x0040000, 0x0400000, 0x1):  # ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, ...
            assert self.v(flt, "personality", p) == EPERM, p

    def test_32bit_and_x32_syscalls(self, flt):
        i386 = bpf.AUDIT_ARCH_I386
        assert self.v(flt, "getpid", arch=i386, nr_arch="SCMP_ARCH_X86") == ALLOW
        assert self.v(flt, "socketcall", arch=i386, nr_arch="SCMP_ARCH_X86") == ALLOW
        assert self.v(flt, "keyctl", arch=i386, nr_arch="SCMP_ARCH_X86") == EPERM
        assert self.v(flt, "getpid", nr_arch="SCMP_ARCH_X32") == ALLOW
        assert self.v(flt, "keyctl", nr_arch="SCMP_ARCH_X32") == EPERM
        # any other architecture is killed
        data = bpf.seccomp_data(39, bpf.AUDIT_ARCH_AARCH64)
        assert bpf.run(flt.export_bpf(), data) == seccomp.SCMP_ACT_KILL_THREAD
