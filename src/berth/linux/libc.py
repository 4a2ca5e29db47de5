"""ctypes bindings for the syscalls Python's os module lacks (Python 3.11).

Kept import-light: it is on the runtime's start-up path, so it binds through
berth.linux.ffi (ctypes' C core without ctypes/__init__.py).
"""

import os

from berth.linux import ffi as ctypes

# <linux/sched.h>
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# <linux/mount.h> (sys/mount.h)
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_POSIXACL = 1 << 16
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_KERNMOUNT = 1 << 22
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

MNT_FORCE = 1
MNT_DETACH = 2
MNT_EXPIRE = 4
UMOUNT_NOFOLLOW = 8

# <linux/prctl.h>
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NAME = 15
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_SECUREBITS = 28
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_CLEAR_ALL = 4

# <linux/openat2.h>
RESOLVE_NO_XDEV = 0x01
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
RESOLVE_IN_ROOT = 0x10

# <asm/ioctls.h>, <asm-generic/ioctls.h>
TIOCSCTTY = 0x540E
TIOCGPTN = 0x80045430
TIOCSPTLCK = 0x40045431
TIOCGPTPEER = 0x5441
TIOCSWINSZ = 0x5414

# syscall numbers glibc 2.36 has no wrapper for, per architecture
# (<asm/unistd_64.h> on x86_64, <asm-generic/unistd.h> on arm64)
_SYSCALLS = {
    "x86_64": {"pivot_root": 155, "openat2": 437, "pidfd_send_signal": 424, "close_range": 436,
               "ioprio_set": 251, "ioprio_get": 252, "sched_setattr": 314,
               "keyctl": 250, "open_tree": 428, "move_mount": 429, "mount_setattr": 442},
    "aarch64": {"pivot_root": 41, "openat2": 437, "pidfd_send_signal": 424, "close_range": 436,
                "ioprio_set": 30, "ioprio_get": 31, "sched_setattr": 274,
                "keyctl": 219, "open_tree": 428, "move_mount": 429, "mount_setattr": 442},
}
_NR = _SYSCALLS.get(os.uname().machine, _SYSCALLS["x86_64"])

_f = ctypes.libc.function
_c_int, _c_ulong, _c_char_p, _c_size_t, _c_long = (
    ctypes.c_int, ctypes.c_ulong, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_long)
_mount = _f("mount", _c_int, (_c_char_p, _c_char_p, _c_char_p, _c_ulong, _c_char_p))
_umount2 = _f("umount2", _c_int, (_c_char_p, _c_int))
_unshare = _f("unshare", _c_int, (_c_int,))
_setns = _f("setns", _c_int, (_c_int, _c_int))
_sethostname = _f("sethostname", _c_int, (_c_char_p, _c_size_t))
_setdomainname = _f("setdomainname", _c_int, (_c_char_p, _c_size_t))
_prctl = _f("prctl", _c_int, (_c_int, _c_ulong, _c_ulong, _c_ulong, _c_ulong))
_prctl_str = _f("prctl", _c_int, (_c_int, _c_char_p, _c_ulong, _c_ulong, _c_ulong))
_syscall = _f("syscall", _c_long, None)
_fstatfs = _f("fstatfs", _c_int, (_c_int, ctypes.c_void_p))
_setrlimit = _f("setrlimit", _c_int, (_c_int, ctypes.c_void_p))
_fork = _f("fork", _c_int, ())


def _b(s: str | bytes | None) -> bytes | None:
    if s is None or isinstance(s, bytes):
        return s
    return os.fsencode(s)


def _err(op: str, path: str | bytes | None = None) -> OSError:
    e = ctypes.get_errno()
    if path is None:
        return OSError(e, f"{op}: {os.strerror(e).lower()}")
    return OSError(e, f"{op}: {os.strerror(e).lower()}", path)


def mount(
    source: str | None, target: str, fstype: str | None, flags: int = 0, data: str | None = None
) -> None:
    if _mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        raise _err(f"mount {source or fstype or ''} on {target}", target)


def umount2(target: str, flags: int = 0) -> None:
    if _umount2(_b(target), flags) != 0:
        raise _err(f"umount {target}", target)


def unshare(flags: int) -> None:
    if _unshare(flags) != 0:
        raise _err(f"unshare {flags:#x}")


def setns(fd: int, nstype: int = 0) -> None:
    if _setns(fd, nstype) != 0:
        raise _err(f"setns {nstype:#x}")


def pivot_root(new_root: str, put_old: str) -> None:
    if _syscall(_NR["pivot_root"], _b(new_root), _b(put_old)) != 0:
        raise _err(f"pivot_root {new_root}", new_root)


def sethostname(name: str) -> None:
    b = name.encode()
    if _sethostname(b, len(b)) != 0:
        raise _err(f"sethostname {name}")


def setdomainname(name: str) -> None:
    b = name.encode()
    if _setdomainname(b, len(b)) != 0:
        raise _err(f"setdomainname {name}")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    r = _prctl(option, arg2, arg3, arg4, arg5)
    if r < 0:
        raise _err(f"prctl {option}")
    return r


class _OpenHow(ctypes.Structure):
    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


# <linux/mount.h>
MOUNT_ATTR_RDONLY = 0x1
MOUNT_ATTR_NOSUID = 0x2
MOUNT_ATTR_NODEV = 0x4
MOUNT_ATTR_NOEXEC = 0x8
MOUNT_ATTR__ATIME = 0x70
MOUNT_ATTR_RELATIME = 0x0
MOUNT_ATTR_NOATIME = 0x10
MOUNT_ATTR_STRICTATIME = 0x20
MOUNT_ATTR_NODIRATIME = 0x80
MOUNT_ATTR_IDMAP = 0x100000
MOUNT_ATTR_NOSYMFOLLOW = 0x200000
AT_EMPTY_PATH = 0x1000
AT_RECURSIVE = 0x8000
OPEN_TREE_CLONE = 1
OPEN_TREE_CLOEXEC = os.O_CLOEXEC
MOVE_MOUNT_F_EMPTY_PATH = 0x4
MOVE_MOUNT_T_EMPTY_PATH = 0x40
AT_FDCWD = -100


def mount_setattr(dirfd: int, path: str, flags: int, attr_set: int, attr_clr: int = 0,
                  userns_fd: int = 0) -> None:
    """mount_setattr(2): change the attributes of a mount (AT_RECURSIVE: of
    the whole tree under it)."""
    # struct mount_attr {u64 attr_set, attr_clr, propagation, userns_fd}
    attr = (ctypes.c_uint64 * 4)(attr_set, attr_clr, 0, userns_fd)
    if _syscall(_NR["mount_setattr"], dirfd, _b(path), ctypes.c_uint(flags), ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr))) != 0:
        raise _err(f"mount_setattr {path}", path)


def open_tree(dirfd: int, path: str, flags: int) -> int:
    fd = _syscall(_NR["open_tree"], dirfd, _b(path), ctypes.c_uint(flags))
    if fd < 0:
        raise _err(f"open_tree {path}", path)
    return fd


def move_mount(from_fd: int, from_path: str, to_fd: int, to_path: str, flags: int) -> None:
    if _syscall(_NR["move_mount"], from_fd, _b(from_path), to_fd, _b(to_path), ctypes.c_uint(flags)) != 0:
        raise _err(f"move_mount to {to_path}", to_path)


def openat2(dirfd: int, path: str, flags: int, mode: int = 0, resolve: int = 0) -> int:
    how = _OpenHow(flags, mode, resolve)
    fd = _syscall(_NR["openat2"], dirfd, _b(path), ctypes.byref(how), ctypes.sizeof(how))
    if fd < 0:
        raise _err(f"openat2 {path}", path)
    return fd


def pidfd_send_signal(pidfd: int, sig: int) -> None:
    if _syscall(_NR["pidfd_send_signal"], pidfd, sig, None, 0) != 0:
        raise _err(f"pidfd_send_signal {sig}")


# <linux/keyctl.h>
KEYCTL_JOIN_SESSION_KEYRING = 1


def join_session_keyring(name: str) -> int:
    """A new session keyring named `name` for this process (its id)."""
    r = _syscall(_NR["keyctl"], KEYCTL_JOIN_SESSION_KEYRING, name.encode())
    if r < 0:
        raise _err(f"join session keyring {name}")
    return r


# <linux/close_range.h>
CLOSE_RANGE_CLOEXEC = 1 << 2


def close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    if _syscall(_NR["close_range"], first, ctypes.c_uint(last), flags) != 0:
        raise _err(f"close_range {first}")


# <linux/ioprio.h>
IOPRIO_WHO_PROCESS = 1
IOPRIO_CLASS_SHIFT = 13
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}


def ioprio_set(klass: int, level: int, pid: int = 0) -> None:
    value = klass << IOPRIO_CLASS_SHIFT | level
    if _syscall(_NR["ioprio_set"], IOPRIO_WHO_PROCESS, pid, value) != 0:
        raise _err(f"ioprio_set class {klass} priority {level}")


def ioprio_get(pid: int = 0) -> tuple[int, int]:
    """(class, priority) of process `pid`."""
    r = _syscall(_NR["ioprio_get"], IOPRIO_WHO_PROCESS, pid)
    if r < 0:
        raise _err(f"ioprio_get {pid}")
    return r >> IOPRIO_CLASS_SHIFT, r & ((1 << IOPRIO_CLASS_SHIFT) - 1)


# <linux/sched.h>, <linux/sched/types.h>
SCHED_POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
                  "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
               "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
               "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}


class _SchedAttr(ctypes.Structure):
    _fields_ = (("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
                ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
                ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
                ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64))


def sched_setattr(policy: int, flags: int = 0, nice: int = 0, priority: int = 0,
                  runtime: int = 0, deadline: int = 0, period: int = 0) -> None:
    attr = _SchedAttr(ctypes.sizeof(_SchedAttr), policy, flags, nice, priority, runtime, deadline, period)
    if _syscall(_NR["sched_setattr"], 0, ctypes.byref(attr), 0) != 0:
        raise _err(f"sched_setattr policy {policy}")


class _RLimit(ctypes.Structure):
    _fields_ = (("rlim_cur", ctypes.c_ulong), ("rlim_max", ctypes.c_ulong))


RLIM_INFINITY = (1 << 64) - 1


def setrlimit(resource: int, soft: int, hard: int) -> None:
    """setrlimit(2) without the `resource` module (a shared library to load)."""
    lim = _RLimit(min(soft, RLIM_INFINITY), min(hard, RLIM_INFINITY))
    if _setrlimit(resource, ctypes.byref(lim)) != 0:
        raise _err(f"setrlimit {resource} soft={soft} hard={hard}")


# <linux/magic.h>
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994
CGROUP2_SUPER_MAGIC = 0x63677270
DEVPTS_SUPER_MAGIC = 0x1CD1
SELINUX_MAGIC = 0xF97CFF8C


class _StatFS(ctypes.Structure):
    # struct statfs on 64-bit Linux: f_type is the first long
    _fields_ = (("f_type", ctypes.c_long), ("_rest", ctypes.c_long * 15))


def fstatfs_type(fd: int) -> int:
    """The filesystem magic number of the file open as `fd`."""
    buf = _StatFS()
    if _fstatfs(fd, ctypes.byref(buf)) != 0:
        raise _err("fstatfs")
    return buf.f_type & 0xFFFFFFFF


def fork_bare() -> int:
    """fork(2) without CPython's at-fork work (os.fork runs the interpreter's
    after-fork reinitialisation and every os.register_at_fork handler, e.g.
    threading's and logging's): in a forked child that work alone dirties
    ~0.5 MB of pages otherwise shared copy-on-write with the parent.

    Only for a single-threaded parent that holds no lock (the import lock
    included): nothing is reinitialised in the child. Returns 0 in the
    child, the child's pid in the parent."""
    pid = _fork()
    if pid < 0:
        raise _err("fork")
    return pid


def set_name(name: str) -> None:
    """The process title shown by ps (comm), at most 15 bytes."""
    _prctl_str(PR_SET_NAME, name.encode()[:15], 0, 0, 0)
