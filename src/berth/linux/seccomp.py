"""seccomp filters from OCI ``linux.seccomp``, compiled with libseccomp (ctypes on
libseccomp.so.2) and loaded with the seccomp(2) system call.

Two steps, so the runtime can do the expensive one before it forks::

    flt = compile(spec["linux"]["seccomp"])   # parent: libseccomp -> BPF bytes
    ...fork, namespaces, capabilities...
    listener = flt.load()                     # child, last step before execve

`compile` drives libseccomp only to build the program, then exports the
classic-BPF bytes and releases the context; `Filter.load` hands those bytes to
the kernel itself, so the container's init never needs libseccomp mapped, and
every kernel flag (TSYNC, LOG, SPEC_ALLOW, WAIT_KILLABLE_RECV) is available
whatever libseccomp version is installed.

Behaviour chosen to match runc 1.1 (libcontainer/seccomp/seccomp_linux.go):

* a syscall name libseccomp cannot resolve is skipped (runc logs it at debug
  level), and listed in ``Filter.unknown_syscalls`` so the caller can warn;
  ``strict=True`` makes it an error instead;
* a rule whose action equals the default action is redundant and skipped;
* the args of one rule are ANDed into one libseccomp rule, unless two of them
  test the same argument index: then each becomes a rule of its own (ORed),
  since libseccomp cannot test one argument twice in a rule;
* SCMP_ACT_ERRNO and SCMP_ACT_TRACE return ``errnoRet`` (EPERM if absent).
  ``errnoRet`` on any other action is an error, as the runtime-spec says it
  must be (runc 1.1.5 silently ignores it);
* when one syscall gets two unconditional rules, the first wins (libseccomp
  keeps it; runc passes such configs through too);
* a syscall numbered above every one the config names answers ENOSYS
  (runc's stub), unless the default action allows: see `compile`;
* no_new_privs is not set here: the runtime owns ``process.noNewPrivileges``.
  Without it, loading needs CAP_SYS_ADMIN, so runc loads the filter before
  dropping capabilities in that case; berth's runtime must do the same.

Errors in the config are InvalidArgumentError naming the field
(``linux.seccomp.syscalls[3].args[0].op``); libseccomp missing is
UnavailableError. Imported on every container start: only ``os`` and
``ctypes`` at import time; libseccomp is opened on the first `compile`.
"""

import ctypes
import os
import sys

from berth.errors import (
    InternalError,
    InvalidArgumentError,
    PermissionDeniedError,
    UnavailableError,
    from_oserror,
)

# <seccomp.h> (libseccomp 2.5): actions
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO = 0x00050000  # | errno
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_TRACE = 0x7FF00000  # | message
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000

# <seccomp.h>: enum scmp_compare
SCMP_CMP_NE = 1
SCMP_CMP_LT = 2
SCMP_CMP_LE = 3
SCMP_CMP_EQ = 4
SCMP_CMP_GE = 5
SCMP_CMP_GT = 6
SCMP_CMP_MASKED_EQ = 7

# <seccomp.h>: enum scmp_filter_attr
SCMP_FLTATR_ACT_BADARCH = 2
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_OPTIMIZE = 8

# <seccomp.h>: __NR_SCMP_ERROR
_NR_SCMP_ERROR = -1

# <linux/seccomp.h>
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5
SECCOMP_MODE_FILTER = 2

# <linux/prctl.h>
PR_SET_SECCOMP = 22
PR_GET_NO_NEW_PRIVS = 39

_ACTIONS = {
    "SCMP_ACT_KILL": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": SCMP_ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": SCMP_ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": SCMP_ACT_TRAP,
    "SCMP_ACT_ERRNO": SCMP_ACT_ERRNO,
    "SCMP_ACT_TRACE": SCMP_ACT_TRACE,
    "SCMP_ACT_ALLOW": SCMP_ACT_ALLOW,
    "SCMP_ACT_LOG": SCMP_ACT_LOG,
    "SCMP_ACT_NOTIFY": SCMP_ACT_NOTIFY,
}

_OPS = {
    "SCMP_CMP_NE": SCMP_CMP_NE,
    "SCMP_CMP_LT": SCMP_CMP_LT,
    "SCMP_CMP_LE": SCMP_CMP_LE,
    "SCMP_CMP_EQ": SCMP_CMP_EQ,
    "SCMP_CMP_GE": SCMP_CMP_GE,
    "SCMP_CMP_GT": SCMP_CMP_GT,
    "SCMP_CMP_MASKED_EQ": SCMP_CMP_MASKED_EQ,
}

_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": SECCOMP_FILTER_FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": SECCOMP_FILTER_FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
}

# The syscalls a container runs most often, checked first in the linear
# layout (optimize=1). The binary tree (optimize=2, the default) ignores
# priorities: its BPF is the same with or without them. On Linux 5.11+ the
# order matters only for syscalls whose verdict depends on arguments: the
# kernel answers every unconditionally allowed one from its action cache
# without running the program (see `const_allow`).
HOT_SYSCALLS = (
    "read",
    "write",
    "futex",
    "epoll_wait",
    "epoll_pwait",
    "recvfrom",
    "sendto",
    "getpid",
    "close",
    "openat",
    "newfstatat",
    "fstat",
    "mmap",
    "lseek",
    "clock_gettime",
)

SYSCALL_MAX_ARGS = 6
_U64 = (1 << 64) - 1


class _ArgCmp(ctypes.Structure):
    # struct scmp_arg_cmp
    _fields_ = (
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    )


class _SockFprog(ctypes.Structure):
    # struct sock_fprog, <linux/filter.h>
    _fields_ = (("len", ctypes.c_ushort), ("filter", ctypes.c_void_p))


_lib: ctypes.CDLL | None = None
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.prctl.argtypes = (
    ctypes.c_int,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
    ctypes.c_ulong,
)


def libseccomp() -> ctypes.CDLL:
    """libseccomp.so.2, opened on first use with its prototypes declared."""
    global _lib
    if _lib is not None:
        return _lib
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        raise UnavailableError(
            "open libseccomp.so.2: not installed (apt install libseccomp2)"
        ) from exc
    vp, u32, cint = ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int
    lib.seccomp_init.argtypes = (u32,)
    lib.seccomp_init.restype = vp
    lib.seccomp_release.argtypes = (vp,)
    lib.seccomp_release.restype = None
    lib.seccomp_arch_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_arch_resolve_name.restype = u32
    lib.seccomp_arch_native.argtypes = ()
    lib.seccomp_arch_native.restype = u32
    lib.seccomp_syscall_resolve_name_arch.argtypes = (u32, ctypes.c_char_p)
    lib.seccomp_syscall_resolve_name_arch.restype = cint
    lib.seccomp_arch_add.argtypes = (vp, u32)
    lib.seccomp_arch_add.restype = cint
    lib.seccomp_attr_set.argtypes = (vp, cint, u32)
    lib.seccomp_attr_set.restype = cint
    lib.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    lib.seccomp_syscall_resolve_name.restype = cint
    lib.seccomp_syscall_priority.argtypes = (vp, cint, ctypes.c_uint8)
    lib.seccomp_syscall_priority.restype = cint
    lib.seccomp_rule_add_array.argtypes = (vp, u32, cint, ctypes.c_uint, ctypes.POINTER(_ArgCmp))
    lib.seccomp_rule_add_array.restype = cint
    lib.seccomp_export_bpf.argtypes = (vp, cint)
    lib.seccomp_export_bpf.restype = cint
    _lib = lib
    return lib


def version() -> tuple[int, int, int]:
    """libseccomp's (major, minor, micro)."""

    class _Version(ctypes.Structure):
        _fields_ = (("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint))

    lib = libseccomp()
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return (v.major, v.minor, v.micro)


def resolve_syscall(name: str, arch: str | None = None) -> int | None:
    """The number of syscall `name` on `arch` (``SCMP_ARCH_X86``; None for the
    native one), or None if libseccomp does not know it there. For the native
    arch, a syscall only other arches have gets libseccomp's pseudo-number
    (< 0), which rules accept."""
    lib = libseccomp()
    if arch is None:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
    else:
        nr = lib.seccomp_syscall_resolve_name_arch(arch_token(arch), name.encode())
    return None if nr == _NR_SCMP_ERROR else nr


def arch_token(arch: str) -> int:
    """libseccomp's token (the kernel's AUDIT_ARCH_ value) for ``SCMP_ARCH_*``."""
    token = 0
    if arch.startswith("SCMP_ARCH_"):
        token = libseccomp().seccomp_arch_resolve_name(arch[len("SCMP_ARCH_") :].lower().encode())
    if not token:
        raise InvalidArgumentError(f"resolve seccomp architecture: unknown {arch!r}", arch=arch)
    return token


class Filter:
    """A compiled filter: classic-BPF bytes plus the flags to load them with.

    Holds no libseccomp state, so it can be built before fork and loaded in
    the child (or loaded several times, e.g. by each `exec`)."""

    def __init__(
        self, bpf: bytes, flags: int, has_notify: bool, nr_seccomp: int, unknown: list[str]
    ) -> None:
        self.bpf = bpf
        self.flags = flags
        self.has_notify = has_notify
        self.nr_seccomp = nr_seccomp
        self.unknown_syscalls = unknown
        # the cache entry holding this program (`compile` with a cache_dir,
        # `read_cached`), or None
        self.cache_path: str | None = None
        self._prog: tuple | None = None  # (buffer, sock_fprog): `prepare`

    def prepare(self) -> None:
        """Build the sock_fprog that `load` hands to the kernel, now: in the
        parent, before it forks the process that loads the filter, not in
        that process, where it takes ~0.4 ms here (ctypes' first cast, and
        each page it writes copied from the parent's)."""
        if self._prog is None:
            buf = ctypes.create_string_buffer(self.bpf, len(self.bpf))
            self._prog = (buf, _SockFprog(len(self.bpf) // 8, ctypes.cast(buf, ctypes.c_void_p)))

    def export_bpf(self) -> bytes:
        return self.bpf

    def dumps(self) -> bytes:
        """The filter as bytes (a JSON line, then the program), for a cache
        file or a pipe to a freshly exec'd init; see `Filter.loads`."""
        import _sha256

        from berth import jsonio

        meta = {
            "sha256": _sha256.sha256(self.bpf).hexdigest(),
            "flags": self.flags,
            "notify": self.has_notify,
            "nr": self.nr_seccomp,
            "unknown": self.unknown_syscalls,
        }
        return jsonio.dumps(meta).encode() + b"\n" + self.bpf

    @classmethod
    def loads(cls, data: bytes) -> "Filter":
        """The inverse of `dumps`; InvalidArgumentError if `data` is torn or
        altered (its digest is checked)."""
        import _sha256

        from berth import jsonio

        head, _, bpf = bytes(data).partition(b"\n")
        try:
            meta = jsonio.loads(head)
            ok = (
                isinstance(meta, dict)
                and meta["sha256"] == _sha256.sha256(bpf).hexdigest()
                and len(bpf) % 8 == 0
                and bpf
            )
            if ok:
                return cls(bpf, meta["flags"], meta["notify"], meta["nr"], meta["unknown"])
        except (ValueError, KeyError, TypeError):
            pass
        raise InvalidArgumentError("read seccomp filter: damaged or not a filter")

    @property
    def instructions(self) -> int:
        """The program's length in BPF instructions (the kernel takes 4096)."""
        return len(self.bpf) // 8

    def kernel_cached(self, nrs: "range | list[int]", arch: int = 0) -> set[int]:
        """The syscall numbers among `nrs` that the kernel's seccomp action
        cache (Linux 5.11+) will answer ALLOW for without running this
        program; `arch` is an AUDIT_ARCH_ value (0: this machine's).

        The kernel fills the cache when the filter is loaded, for its native
        and compat architectures (x86-64 and i386 here), by emulating the
        program for each number (`const_allow`). A syscall it cannot prove is
        allowed runs the BPF program on every call. See `const_allow`."""
        arch = arch or _native_audit_arch()
        return {nr for nr in nrs if const_allow(self.bpf, nr, arch)}

    def load(self) -> int | None:
        """Install the filter on the calling thread (all threads with
        SECCOMP_FILTER_FLAG_TSYNC). Returns the user-notification listener fd
        (close-on-exec) when the filter has SCMP_ACT_NOTIFY rules, else None."""
        flags = self.flags
        if self.has_notify:
            flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER
            if flags & SECCOMP_FILTER_FLAG_TSYNC:
                # the return value cannot be both a listener fd and a thread id
                # that failed to sync: the kernel requires TSYNC_ESRCH (5.7+)
                flags |= SECCOMP_FILTER_FLAG_TSYNC_ESRCH
        else:
            # the kernel refuses WAIT_KILLABLE_RECV without a listener (EINVAL);
            # it only changes how notifications wait, so it is moot here
            flags &= ~SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        self.prepare()
        prog = self._prog[1]  # type: ignore[index]
        r = _libc.syscall(self.nr_seccomp, SECCOMP_SET_MODE_FILTER, flags, ctypes.byref(prog))
        if r < 0:
            e = ctypes.get_errno()
            if e == 38 and flags == 0:  # ENOSYS: a kernel before 3.17 has only prctl
                r = _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0)
                if r >= 0:
                    return None
                e = ctypes.get_errno()
            raise _load_error(e, flags)
        if self.has_notify:
            return int(r)
        if r > 0:
            raise InternalError(f"load seccomp filter: thread {r} could not be synchronised")
        return None


def _load_error(e: int, flags: int) -> Exception:
    if e == 13 and _libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0:  # EACCES
        return PermissionDeniedError(
            "load seccomp filter: permission denied "
            "(no_new_privs is not set and CAP_SYS_ADMIN is missing)",
            errno=e,
        )
    if e == 22:  # EINVAL
        return InvalidArgumentError(
            f"load seccomp filter: invalid argument (flags {flags:#x} not supported by this kernel?)",
            errno=e,
        )
    return from_oserror(OSError(e, os.strerror(e)), "load seccomp filter")


def _bad(field: str, what: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"parse {field}: {what}", field=field)


def _int(value: object, field: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(field, f"expected an integer from {lo} to {hi}, got {value!r}")
    return value


def parse_action(name: object, errno_ret: object, field: str, errno_field: str) -> int:
    """An OCI action name (and errnoRet) -> libseccomp's action value."""
    if not isinstance(name, str) or name not in _ACTIONS:
        raise _bad(field, f"unknown seccomp action {name!r}")
    act = _ACTIONS[name]
    if act in (SCMP_ACT_ERRNO, SCMP_ACT_TRACE):
        ret = 1 if errno_ret is None else _int(errno_ret, errno_field, 0, 0xFFFF)  # EPERM
        return act | ret
    if errno_ret is not None:
        raise _bad(
            errno_field, f"errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {name}"
        )
    return act


def _parse_args(args: object, field: str) -> list[list[tuple[int, int, int, int]]]:
    """OCI args -> the libseccomp rules to add: one ANDed rule, or one rule per
    comparison when an argument index repeats (runc's rule)."""
    if args is None:
        return [[]]
    if not isinstance(args, list):
        raise _bad(field, "expected a list")
    conds = []
    for j, a in enumerate(args):
        f = f"{field}[{j}]"
        if not isinstance(a, dict):
            raise _bad(f, "expected an object")
        index = _int(a.get("index"), f"{f}.index", 0, SYSCALL_MAX_ARGS - 1)
        op_name = a.get("op")
        if op_name not in _OPS:
            raise _bad(f"{f}.op", f"unknown comparison {op_name!r}")
        value = _int(a.get("value", 0), f"{f}.value", 0, _U64)
        value_two = _int(a.get("valueTwo", 0), f"{f}.valueTwo", 0, _U64)
        conds.append((index, _OPS[op_name], value, value_two))
    indexes = [c[0] for c in conds]
    if len(set(indexes)) != len(indexes):
        return [[c] for c in conds]
    return [conds]


class _Ctx:
    """A libseccomp context that is always released."""

    def __init__(self, lib: ctypes.CDLL, default: int) -> None:
        self.lib = lib
        self.ptr = lib.seccomp_init(default)
        if not self.ptr:
            raise InvalidArgumentError(
                f"create seccomp filter: libseccomp refused default action {default:#x} "
                "(not supported by this kernel?)"
            )

    def __enter__(self) -> "_Ctx":
        return self

    def __exit__(self, *exc: object) -> None:
        self.lib.seccomp_release(self.ptr)
        self.ptr = None


def compile(
    seccomp_config: dict,
    *,
    strict: bool = False,
    optimize: int = 2,
    hot: "tuple[str, ...] | list[str]" = HOT_SYSCALLS,
    cache_dir: str | None = None,
    enosys: bool = True,
) -> Filter:
    """Build the BPF program for OCI ``linux.seccomp`` without loading it.

    `optimize` is libseccomp's SCMP_FLTATR_CTL_OPTIMIZE: 1 orders syscalls by
    priority (a linear scan), 2 lays them out as a binary search tree, which
    keeps an allowed syscall's cost flat however long the allowlist is.
    `hot` syscalls get the highest priority (linear layout only). With `strict`, a syscall name
    libseccomp does not know is an error instead of being skipped.

    Cost at run time (Linux 5.11+): every syscall the program allows
    whatever its arguments is answered from the kernel's per-filter action
    cache without running the program, as long as the program reads nothing
    but the number and the architecture on the way to that ALLOW
    (`Filter.kernel_cached`; the unit tests hold the default profile to it).
    What remains is the kernel's slower syscall entry that any filter at all
    brings (syscall_trace_enter -> __secure_computing), the same for a
    one-instruction filter: ~12 ns a call on the reference VM, 10% of a bare
    getpid(). The layout decides only the argument-checked syscalls (socket,
    personality, clone in Docker's profile): ~6 ns more with the tree, ~120
    ns with the linear layout (bench/seccomp.py).

    `enosys` (runc's behaviour): a syscall numbered above every syscall the
    config names, for its architecture, answers ENOSYS instead of the default
    action, so a program built for a newer kernel than the profile (or than
    libseccomp) falls back as it would on an older kernel, instead of taking
    EPERM as a hard failure. Not added when the default action allows.

    `cache_dir`: keep compiled programs there, keyed by the config, these
    options, libseccomp's version and API level and the machine. Compiling
    Docker's profile for x86_64+x86+x32 takes libseccomp ~18 ms, most of a
    container start; a cached one is read in well under a millisecond. The
    digest in an entry only catches torn writes: the directory must be
    writable by the runtime's user alone (it lives under the runtime's root),
    since whoever can write an entry decides the container's filter."""
    if cache_dir is not None:
        return _cached(seccomp_config, strict, optimize, tuple(hot), cache_dir, enosys)
    return _compile(seccomp_config, strict, optimize, hot, enosys)


def _compile(
    seccomp_config: dict,
    strict: bool,
    optimize: int,
    hot: "tuple[str, ...] | list[str]",
    enosys: bool,
) -> Filter:
    base = "linux.seccomp"
    if not isinstance(seccomp_config, dict):
        raise _bad(base, "expected an object")
    default = parse_action(
        seccomp_config.get("defaultAction"),
        seccomp_config.get("defaultErrnoRet"),
        f"{base}.defaultAction",
        f"{base}.defaultErrnoRet",
    )
    flags = 0
    cfg_flags = seccomp_config.get("flags") or []
    if not isinstance(cfg_flags, list):
        raise _bad(f"{base}.flags", "expected a list")
    for i, name in enumerate(cfg_flags):
        if name not in _FLAGS:
            raise _bad(f"{base}.flags[{i}]", f"unknown seccomp flag {name!r}")
        flags |= _FLAGS[name]
    arches = seccomp_config.get("architectures") or []
    if not isinstance(arches, list):
        raise _bad(f"{base}.architectures", "expected a list")
    syscalls = seccomp_config.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise _bad(f"{base}.syscalls", "expected a list")

    if default == SCMP_ACT_NOTIFY:
        raise _bad(f"{base}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")

    # parse the rules before touching libseccomp: a bad config fails the same
    # way whether or not libseccomp is installed (architecture names are the
    # exception: libseccomp knows them)
    rules = []
    has_notify = False
    for i, sc in enumerate(syscalls):
        f = f"{base}.syscalls[{i}]"
        if not isinstance(sc, dict):
            raise _bad(f, "expected an object")
        names = sc.get("names")
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and n for n in names)
        ):
            raise _bad(f"{f}.names", "expected a non-empty list of syscall names")
        act = parse_action(sc.get("action"), sc.get("errnoRet"), f"{f}.action", f"{f}.errnoRet")
        arg_rules = _parse_args(sc.get("args"), f"{f}.args")
        if act == default:
            continue  # redundant (libseccomp would refuse it with EACCES)
        has_notify = has_notify or act == SCMP_ACT_NOTIFY
        rules.append((f, names, act, arg_rules))

    lib = libseccomp()
    unknown: list[str] = []
    with _Ctx(lib, default) as ctx:
        # no_new_privs belongs to the runtime (process.noNewPrivileges)
        _check(lib.seccomp_attr_set(ctx.ptr, SCMP_FLTATR_CTL_NNP, 0), "set seccomp attribute nnp")
        if optimize:
            rc = lib.seccomp_attr_set(ctx.ptr, SCMP_FLTATR_CTL_OPTIMIZE, optimize)
            _check(rc, f"set seccomp optimization level {optimize}")
        for i, arch in enumerate(arches):
            f = f"{base}.architectures[{i}]"
            if not isinstance(arch, str):
                raise _bad(f, f"unknown architecture {arch!r}")
            try:
                token = arch_token(arch)
            except InvalidArgumentError:
                raise _bad(f, f"unknown architecture {arch!r}") from None
            rc = lib.seccomp_arch_add(ctx.ptr, token)
            if rc not in (0, -17):  # EEXIST: the native one is there already
                _check(rc, f"add seccomp architecture {arch}")
        for f, names, act, arg_rules in rules:
            for name in names:
                nr = lib.seccomp_syscall_resolve_name(name.encode())
                if nr == _NR_SCMP_ERROR:
                    if strict:
                        raise _bad(f"{f}.names", f"unknown syscall {name!r}")
                    unknown.append(name)
                    continue
                for conds in arg_rules:
                    arr = (_ArgCmp * max(len(conds), 1))()
                    for k, (index, op, a, b) in enumerate(conds):
                        arr[k] = _ArgCmp(index, op, a, b)
                    rc = lib.seccomp_rule_add_array(ctx.ptr, act, nr, len(conds), arr)
                    if rc < 0:
                        raise _rule_error(rc, f, name)
        for prio, name in enumerate(reversed(hot), start=255 - len(hot) + 1):
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr != _NR_SCMP_ERROR:
                _check(lib.seccomp_syscall_priority(ctx.ptr, nr, prio), f"prioritise {name}")
        bpf = _export(lib, ctx.ptr)
        if enosys and default not in (SCMP_ACT_ALLOW, SCMP_ACT_LOG):
            tokens = [lib.seccomp_arch_native()]
            tokens += [arch_token(a) for a in arches if arch_token(a) not in tokens]
            names = {n for _, ns, _, _ in rules for n in ns}
            bpf = _enosys_stub(lib, tokens, names) + bpf
        nr_seccomp = lib.seccomp_syscall_resolve_name(b"seccomp")
    if nr_seccomp < 0:
        raise UnavailableError(
            "resolve syscall seccomp: unknown to libseccomp on this architecture"
        )
    return Filter(bpf, flags, has_notify, nr_seccomp, unknown)


def _cached(
    seccomp_config: dict,
    strict: bool,
    optimize: int,
    hot: tuple[str, ...],
    cache_dir: str,
    enosys: bool,
) -> Filter:
    import _sha256
    import marshal
    import sys

    lib = libseccomp()
    lib.seccomp_api_get.restype = ctypes.c_uint
    # marshal's version 0 (no references, no interning: the same bytes for
    # equal values whatever their history) is a faithful serialisation of
    # JSON's values, bools apart from ints, in a fifth of the time of a JSON
    # dump (~0.15 vs ~0.8 ms for Docker's profile, in a freshly forked monitor)
    key_material = marshal.dumps(
        [
            "berth-seccomp-cache/2",
            seccomp_config,
            strict,
            optimize,
            list(hot),
            enosys,
            list(version()),
            lib.seccomp_api_get(),
            os.uname().machine,
            sys.version_info[:2],
        ],
        0,
    )
    key = _sha256.sha256(key_material).hexdigest()
    path = os.path.join(cache_dir, f"{key}.bpf")
    flt = read_cached(path)
    if flt is not None:
        return flt
    # absent or torn: compile again and replace it
    flt = _compile(seccomp_config, strict, optimize, hot, enosys)
    try:
        os.makedirs(cache_dir, exist_ok=True)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(flt.dumps())
        # no fsync: a cache entry torn by a crash fails its digest and is rebuilt
        os.rename(tmp, path)
        flt.cache_path = path
    except OSError:
        pass  # a read-only or full cache directory only costs the next compile
    return flt


def read_cached(path: str) -> "Filter | None":
    """The filter in cache entry `path` (see `compile`'s cache_dir), or None
    when it is absent or torn (its digest is checked). The caller vouches
    that `path` is the entry of the config it wants: e.g. the one `compile`
    gave (Filter.cache_path) for a config that has not changed since."""
    try:
        with open(path, "rb") as f:
            flt = Filter.loads(f.read())
    except (OSError, InvalidArgumentError):
        return None
    flt.cache_path = path
    return flt


def load(seccomp_config: dict, *, caps: int | None = None, strict: bool = False) -> int | None:
    """Compile and load in one go; returns the listener fd for SCMP_ACT_NOTIFY.

    `caps`, when given, is the effective capability set the caller holds: a
    load that is bound to fail (no no_new_privs and no CAP_SYS_ADMIN) fails
    before anything is compiled, with the reason."""
    if (
        caps is not None
        and not caps >> 21 & 1
        and _libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0
    ):
        raise PermissionDeniedError(
            "load seccomp filter: no_new_privs is not set and CAP_SYS_ADMIN is missing",
            errno=13,
        )
    return compile(seccomp_config, strict=strict).load()


def _check(rc: int, what: str) -> None:
    if rc < 0:
        raise from_oserror(OSError(-rc, os.strerror(-rc)), what)


def _rule_error(rc: int, field: str, name: str) -> Exception:
    e = -rc
    if e == 17:  # EEXIST
        return _bad(field, f"rule for {name} conflicts with an earlier rule")
    if e in (22, 34, 95):  # EINVAL, ERANGE, EOPNOTSUPP
        return _bad(field, f"add seccomp rule for {name}: {os.strerror(e).lower()}")
    return from_oserror(OSError(e, os.strerror(e)), f"add seccomp rule for {name} ({field})")


# <linux/audit.h>: the arch values the kernel puts in seccomp_data
AUDIT_ARCH_X86_64 = 0xC000003E
SCMP_ARCH_X32_TOKEN = 0x4000003E  # libseccomp's own token for x32
X32_SYSCALL_BIT = 0x40000000
# <linux/filter.h>, <linux/bpf_common.h>
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGT_K = 0x25
_JGE_K = 0x35
_JA = 0x05
_RET_K = 0x06
# struct seccomp_data offsets
_DATA_NR = 0
_DATA_ARCH = 4


def _enosys_stub(lib: ctypes.CDLL, tokens: list[int], names: set[str]) -> bytes:
    """BPF to put in front of libseccomp's program: for each architecture,
    a syscall number above the highest one `names` have there returns
    ENOSYS; anything else falls through to the program unchanged. It reads
    only the arch and the number, so the kernel still caches verdicts."""

    def highest(token: int, below: int = 1 << 31) -> int:
        nrs = [lib.seccomp_syscall_resolve_name_arch(token, n.encode()) for n in names]
        return max((n for n in nrs if 0 <= n < below), default=-1)

    x32 = SCMP_ARCH_X32_TOKEN in tokens
    # (code, jump-if-true label, jump-if-false label, k); labels are indexes
    # into `prog` resolved below, "enosys" and "orig" the two exits
    prog: list[tuple[int, object, object, int]] = [(_LD_W_ABS, 0, 0, _DATA_ARCH)]
    for token in tokens:
        if token == SCMP_ARCH_X32_TOKEN:
            continue  # checked with x86_64: x32 calls carry its arch value
        top = highest(token)
        if top < 0:
            continue
        nxt = f"after{token}"
        prog.append((_JEQ_K, 0, nxt, token))
        prog.append((_LD_W_ABS, 0, 0, _DATA_NR))
        if token == AUDIT_ARCH_X86_64:
            # x32 numbers carry X32_SYSCALL_BIT; its own old ABI entries sit
            # at 512-547 above the bit, past the shared numbering that new
            # syscalls extend, so they are left to the program
            x32_top = highest(SCMP_ARCH_X32_TOKEN, X32_SYSCALL_BIT + 512) if x32 else -1
            prog.append((_JGE_K, "x32" if x32_top >= 0 else "orig", 0, X32_SYSCALL_BIT))
            prog.append((_JGT_K, "enosys", "orig", top))
            if x32_top >= 0:
                prog.append(("x32", 0, 0, 0))
                prog.append((_JGE_K, "orig", 0, X32_SYSCALL_BIT + 512))
                prog.append((_JGT_K, "enosys", "orig", x32_top))
        else:
            prog.append((_JGT_K, "enosys", "orig", top))
        prog.append((nxt, 0, 0, 0))
    prog.append((_JA, 0, 0, "orig"))  # type: ignore[arg-type]
    prog.append(("enosys", 0, 0, 0))
    prog.append((_RET_K, 0, 0, SCMP_ACT_ERRNO | 38))  # ENOSYS
    prog.append(("orig", 0, 0, 0))
    # resolve labels: label pseudo-instructions take no room
    where: dict[object, int] = {}
    real = []
    for ins in prog:
        if isinstance(ins[0], str):
            where[ins[0]] = len(real)
        else:
            real.append(ins)
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(real):
        if code == _JA:
            k = where[k] - i - 1
            jt = jf = 0
        else:
            jt = where[jt] - i - 1 if isinstance(jt, str) else jt
            jf = where[jf] - i - 1 if isinstance(jf, str) else jf
        # struct sock_filter {u16 code; u8 jt; u8 jf; u32 k}, host byte order
        order = sys.byteorder
        out += code.to_bytes(2, order) + bytes((jt, jf)) + (k & 0xFFFFFFFF).to_bytes(4, order)
    return bytes(out)


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    fd = os.memfd_create("berth-seccomp", os.MFD_CLOEXEC)
    try:
        _check(lib.seccomp_export_bpf(ctx, fd), "export seccomp filter")
        size = os.lseek(fd, 0, os.SEEK_CUR)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


# BPF opcodes kernel/seccomp.c's cache emulator understands (<linux/bpf_common.h>)
_JSET_K = 0x45
_ALU_AND_K = 0x54
_RET_ALLOW = SCMP_ACT_ALLOW


def const_allow(bpf: bytes, nr: int, arch: int) -> bool:
    """Whether the kernel's seccomp action cache will treat syscall `nr` of
    `arch` (an AUDIT_ARCH_ value) as always allowed by the program `bpf`.

    A line-for-line port of ``seccomp_is_const_allow`` (kernel/seccomp.c,
    Linux 5.11 to 6.18): it follows the program with only the number and the
    architecture known, and gives up (the syscall then runs the BPF program
    every time) at a load of anything else (an argument, the instruction
    pointer), at any instruction other than a load of nr/arch, ``ja``,
    ``jeq``/``jge``/``jgt``/``jset`` against a constant, ``and`` with a
    constant and ``ret`` of a constant, or at a return other than
    SECCOMP_RET_ALLOW. So one argument check or ``ld [ip]`` in a prologue
    that every syscall passes through costs every syscall the full program.
    (The kernel also lets its own uprobe syscalls through unfiltered; that
    is not the program's doing and is not modelled.)"""
    n = len(bpf) // 8
    reg = 0
    pc = 0
    while pc < n:
        o = pc * 8
        code = bpf[o] | bpf[o + 1] << 8
        jt, jf = bpf[o + 2], bpf[o + 3]
        k = int.from_bytes(bpf[o + 4 : o + 8], sys.byteorder)
        if code == _LD_W_ABS:
            if k == _DATA_NR:
                reg = nr & 0xFFFFFFFF
            elif k == _DATA_ARCH:
                reg = arch
            else:
                return False  # a value that is not constant per (arch, nr)
        elif code == _RET_K:
            return k == _RET_ALLOW
        elif code == _JA:
            pc += k
        elif code in (_JEQ_K, _JGE_K, _JGT_K, _JSET_K):
            if code == _JEQ_K:
                taken = reg == k
            elif code == _JGE_K:
                taken = reg >= k
            elif code == _JGT_K:
                taken = reg > k
            else:
                taken = bool(reg & k)
            pc += jt if taken else jf
        elif code == _ALU_AND_K:
            reg &= k
        else:
            return False  # an instruction the emulator does not follow
        pc += 1
    return False  # ran off the end (the kernel refuses such programs)


def _native_audit_arch() -> int:
    return libseccomp().seccomp_arch_native()
