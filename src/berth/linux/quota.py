"""Project quotas: a directory tree limited in the blocks it may use, as
moby's `quota` package does for the local volume driver's `size` option.

A project id is set on a directory with FS_IOC_FSSETXATTR, with
FS_XFLAG_PROJINHERIT so that everything made under it inherits the id; the
limit is set on the id with quotactl(Q_XSETQLIM, PRJQUOTA). Both work on XFS
mounted with `prjquota`/`pquota` and, through the kernel's generic quota
layer (fs/quota/quota.c turns the XFS commands into dquot operations), on
ext4 made with `-O quota,project` and mounted with `prjquota`.

moby calls quotactl(2) on a block device node it mknods under its root
(`backingFsBlockDev`); quotactl_fd(2) (Linux 5.14) takes any open file of
the filesystem instead, so nothing is made on disk. glibc 2.36 has no
wrapper for it: the raw syscall, its number per architecture.
"""

import errno
import fcntl
import os
import struct

from berth.linux import ffi as ctypes

# <asm/unistd_64.h>, <asm-generic/unistd.h>: the same number on both
_NR_QUOTACTL_FD = {"x86_64": 443, "aarch64": 443}

# <linux/quota.h>
PRJQUOTA = 2
# <linux/dqblk_xfs.h>
Q_XSETQLIM = (ord("X") << 8) + 4
Q_XGETQUOTA = (ord("X") << 8) + 3
Q_XGETQSTAT = (ord("X") << 8) + 5
FS_DQUOT_VERSION = 1
FS_PROJ_QUOTA = 2  # d_flags
FS_DQ_BSOFT = 1 << 2
FS_DQ_BHARD = 1 << 3
FS_QUOTA_PDQ_ACCT = 1 << 4
FS_QUOTA_PDQ_ENFD = 1 << 5
# <linux/fs.h>: struct fsxattr is 28 bytes
FS_IOC_FSGETXATTR = 0x801C581F  # _IOR('X', 31, struct fsxattr)
FS_IOC_FSSETXATTR = 0x401C5820  # _IOW('X', 32, struct fsxattr)
FS_XFLAG_PROJINHERIT = 0x00000200

# struct fsxattr: xflags, extsize, nextents, projid, cowextsize, pad[8]
_FSXATTR = struct.Struct("=IIIII8x")
# struct fs_disk_quota (112 bytes): the fields up to the block limits; the
# rest (counts, timers, warnings, realtime limits) are zero in a set
_DISK_QUOTA = struct.Struct("=bbHIQQ")
_DISK_QUOTA_SIZE = 112

_syscall = ctypes.libc.function("syscall", ctypes.c_long, None)


class _Buffer(ctypes.Structure):
    """112 bytes the kernel reads or writes: a struct fs_disk_quota or the
    (smaller) struct fs_quota_stat, packed and unpacked with `struct`."""

    _fields_ = (("words", ctypes.c_ulong * 14),)


def _buffer(raw: bytes = b"") -> _Buffer:
    return _Buffer.from_buffer_copy(raw.ljust(ctypes.sizeof(_Buffer), b"\0"))


def _quotactl_fd(fd: int, cmd: int, qid: int, buf: object) -> None:
    nr = _NR_QUOTACTL_FD.get(os.uname().machine, 443)
    # QCMD(cmd, type) = cmd << 8 | type: the kernel takes it as an unsigned int
    if _syscall(nr, fd, ctypes.c_uint((cmd << 8) | PRJQUOTA), ctypes.c_uint(qid), buf) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e).lower())


def has_project_quota(path: str) -> bool:
    """Whether the filesystem of `path` accounts and enforces project quotas
    (moby's hasQuotaSupport: Q_XGETQSTAT's PDQ_ACCT and PDQ_ENFD). Any error
    (ENOSYS, ENOTTY, EINVAL, ESRCH: no quota there) means no."""
    buf = _buffer()
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _quotactl_fd(fd, Q_XGETQSTAT, 0, ctypes.byref(buf))
    except OSError:
        return False
    finally:
        os.close(fd)
    (flags,) = struct.unpack_from("=H", bytes(buf), 2)
    want = FS_QUOTA_PDQ_ACCT | FS_QUOTA_PDQ_ENFD
    return flags & want == want


def project_id(path: str) -> int:
    """The project id of the file or directory `path` (0: none)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _getxattr(fd, path)[3]
    finally:
        os.close(fd)


def _getxattr(fd: int, path: str) -> tuple[int, ...]:
    try:
        raw = fcntl.ioctl(fd, FS_IOC_FSGETXATTR, bytes(_FSXATTR.size))
    except OSError as exc:
        raise OSError(exc.errno, f"get project id of {path}: "
                      f"{os.strerror(exc.errno or 0).lower()}", path) from None
    return _FSXATTR.unpack(raw)


def set_project_id(path: str, projid: int) -> None:
    """Give directory `path` project id `projid`, inherited by what is made
    under it (moby's setProjectID)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        xflags, extsize, nextents, _, cowextsize = _getxattr(fd, path)
        raw = _FSXATTR.pack(xflags | FS_XFLAG_PROJINHERIT, extsize, nextents, projid,
                            cowextsize)
        try:
            fcntl.ioctl(fd, FS_IOC_FSSETXATTR, raw)
        except OSError as exc:
            raise OSError(exc.errno, f"set project id {projid} on {path}: "
                          f"{os.strerror(exc.errno or 0).lower()}", path) from None
    finally:
        os.close(fd)


def set_project_limit(path: str, projid: int, size: int) -> None:
    """Limit project `projid` of the filesystem of `path` to `size` bytes
    (hard and soft, in 512-byte blocks, rounded down as moby's
    setProjectQuota); 0 lifts the limit."""
    raw = bytearray(_DISK_QUOTA_SIZE)
    _DISK_QUOTA.pack_into(raw, 0, FS_DQUOT_VERSION, FS_PROJ_QUOTA, FS_DQ_BHARD | FS_DQ_BSOFT,
                          projid, size // 512, size // 512)
    buf = _buffer(bytes(raw))
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _quotactl_fd(fd, Q_XSETQLIM, projid, ctypes.byref(buf))
    except OSError as exc:
        raise OSError(exc.errno, f"set quota limit for project {projid} on {path}: "
                      f"{exc.strerror}", path) from None
    finally:
        os.close(fd)


def project_limit(path: str, projid: int) -> tuple[int, int]:
    """(hard limit, bytes used) of project `projid` on the filesystem of
    `path` (Q_XGETQUOTA); (0, 0) for a project the filesystem keeps no
    record of (ENOENT: XFS drops the record of a project with neither a
    limit nor a block in use)."""
    buf = _buffer()
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _quotactl_fd(fd, Q_XGETQUOTA, projid, ctypes.byref(buf))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return 0, 0
        raise OSError(exc.errno, f"get quota of project {projid} on {path}: "
                      f"{exc.strerror}", path) from None
    finally:
        os.close(fd)
    raw = bytes(buf)
    hard = struct.unpack_from("=Q", raw, 8)[0]
    used = struct.unpack_from("=Q", raw, 40)[0]  # d_bcount
    return hard * 512, used * 512
