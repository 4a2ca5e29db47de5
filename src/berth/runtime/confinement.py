"""Docker's default confinement, as data the engine puts into OCI specs: the
default capabilities, masked and read-only paths, and the default seccomp
profile (``profiles/default-seccomp.json``, evaluated for a capability set and
an architecture).

Pure: nothing here touches the kernel. `thermal_throttle_paths` lists a
sysfs directory and `default_seccomp_profile` reads the packaged JSON file;
nothing else does I/O.
"""

import os

from berth import jsonio
from berth.errors import InvalidArgumentError

# Docker's 14 (moby oci/caps/defaults.go), in its order
DEFAULT_CAPABILITIES: list[str] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]

# Paths that leak host information or let a container poke the host's
# hardware; masked (a file under /dev/null, a directory under an empty
# read-only tmpfs). The per-CPU thermal_throttle directories are added by
# `masked_paths` since they depend on the host's CPUs (their sysfs files let a
# container change the host's throttling).
DEFAULT_MASKED_PATHS: list[str] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
]

# Host-wide kernel knobs that stay visible but must not be written.
DEFAULT_READONLY_PATHS: list[str] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
]

PROFILE_PATH = os.path.join(os.path.dirname(__file__), "profiles", "default-seccomp.json")

# `uname -m` (and Go's GOARCH, which Docker uses) -> libseccomp's native arch
_MACHINE_ARCH = {
    "x86_64": "SCMP_ARCH_X86_64",
    "amd64": "SCMP_ARCH_X86_64",
    "i386": "SCMP_ARCH_X86",
    "i686": "SCMP_ARCH_X86",
    "386": "SCMP_ARCH_X86",
    "aarch64": "SCMP_ARCH_AARCH64",
    "arm64": "SCMP_ARCH_AARCH64",
    "arm": "SCMP_ARCH_ARM",
    "armv6l": "SCMP_ARCH_ARM",
    "armv7l": "SCMP_ARCH_ARM",
    "armv8l": "SCMP_ARCH_ARM",
    "mips64": "SCMP_ARCH_MIPS64",
    "mips64el": "SCMP_ARCH_MIPSEL64",
    "mips64le": "SCMP_ARCH_MIPSEL64",
    "ppc64le": "SCMP_ARCH_PPC64LE",
    "s390x": "SCMP_ARCH_S390X",
    "riscv64": "SCMP_ARCH_RISCV64",
}


def masked_paths(cpu_root: str = "/sys/devices/system/cpu") -> list[str]:
    """DEFAULT_MASKED_PATHS plus this host's per-CPU thermal_throttle
    directories."""
    return DEFAULT_MASKED_PATHS + thermal_throttle_paths(cpu_root)


def thermal_throttle_paths(cpu_root: str = "/sys/devices/system/cpu") -> list[str]:
    """``<cpu_root>/cpuN/thermal_throttle`` for each CPU that has one, in CPU
    order; the paths are given as the container sees them (under /sys)."""
    try:
        names = os.listdir(cpu_root)
    except OSError:
        return []
    cpus = sorted(int(n[3:]) for n in names if n.startswith("cpu") and n[3:].isdigit())
    out = []
    for n in cpus:
        if os.path.isdir(os.path.join(cpu_root, f"cpu{n}", "thermal_throttle")):
            out.append(f"/sys/devices/system/cpu/cpu{n}/thermal_throttle")
    return out


def native_arch(arch: str | None = None) -> str:
    """The libseccomp name (``SCMP_ARCH_X86_64``) of `arch` (a ``uname -m`` or
    GOARCH name, or already an SCMP_ARCH_ name); None means this machine."""
    if arch is None:
        arch = os.uname().machine
    if arch.startswith("SCMP_ARCH_"):
        return arch
    try:
        return _MACHINE_ARCH[arch]
    except KeyError:
        raise InvalidArgumentError(
            f"default seccomp profile: unknown architecture {arch!r}", arch=arch
        ) from None


def _kernel_version(release: str) -> tuple[int, int]:
    parts = []
    for piece in release.split(".")[:2]:
        digits = ""
        for ch in piece:
            if not ch.isdigit():
                break
            digits += ch
        parts.append(int(digits or 0))
    while len(parts) < 2:
        parts.append(0)
    return parts[0], parts[1]


def _load_profile() -> dict:
    with open(PROFILE_PATH, "rb") as f:
        data = jsonio.loads(f.read())
    assert isinstance(data, dict)
    return data


def _matches(cond: dict, caps: set[str], arch: str, kernel: tuple[int, int]) -> bool:
    """True when every criterion of an includes/excludes object holds: all its
    caps held, the native arch among its arches, the kernel at least minKernel."""
    need = cond.get("caps")
    if need and not all(c in caps for c in need):
        return False
    arches = cond.get("arches")
    if arches and arch not in arches:
        return False
    min_kernel = cond.get("minKernel")
    return not (min_kernel and kernel < _kernel_version(min_kernel))


def _excluded(cond: dict, caps: set[str], arch: str) -> bool:
    """True when any criterion of an excludes object holds (Docker's reading:
    a rule is dropped if the container has one of the caps, or runs on one of
    the arches)."""
    if any(c in caps for c in cond.get("caps") or ()):
        return True
    return arch in (cond.get("arches") or ())


def default_seccomp_profile(
    caps: list[str], arch: str | None = None, *, kernel: str | None = None
) -> dict:
    """OCI ``linux.seccomp`` for a container holding capabilities `caps`
    (its bounding set: what it could ever use), on native architecture `arch`
    (this machine's when None) and kernel release `kernel` (this one's when
    None). Docker's protections: default EPERM, an allowlist, and the
    capability-conditional entries (mount, unshare, setns, bpf, ptrace,
    reboot, modules, clock setting ...), clone without namespace flags unless
    CAP_SYS_ADMIN, clone3 answering ENOSYS, AF_ALG and AF_VSOCK sockets
    refused."""
    profile = _load_profile()
    native = native_arch(arch)
    held = set(caps)
    kver = _kernel_version(kernel if kernel is not None else os.uname().release)
    arch_map: dict = profile["archMap"]
    if native not in arch_map:
        raise InvalidArgumentError(
            f"default seccomp profile: no architectures for {native}", arch=native
        )
    allowed: list[str] = []
    seen: set[str] = set()
    rules: list[dict] = []
    for rule in profile["syscalls"]:
        if "includes" in rule and not _matches(rule["includes"], held, native, kver):
            continue
        if "excludes" in rule and _excluded(rule["excludes"], held, native):
            continue
        if rule["action"] == "SCMP_ACT_ALLOW" and "args" not in rule:
            # one plain allow rule for all: same filter, and a name granted by
            # two cap groups (bpf, ptrace ...) appears once
            for name in rule["names"]:
                if name not in seen:
                    seen.add(name)
                    allowed.append(name)
            continue
        out = {"names": list(rule["names"]), "action": rule["action"]}
        if "errnoRet" in rule:
            out["errnoRet"] = rule["errnoRet"]
        if "args" in rule:
            out["args"] = [dict(a) for a in rule["args"]]
        rules.append(out)
    return {
        "defaultAction": profile["defaultAction"],
        "defaultErrnoRet": profile["defaultErrnoRet"],
        "architectures": list(arch_map[native]),
        "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}, *rules],
    }
