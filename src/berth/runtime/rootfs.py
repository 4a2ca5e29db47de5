"""The container's root filesystem, built by the init process in its own
mount namespace: propagation, the rootfs bind, every mount of the config,
devices, pivot_root, then masked and read-only paths.

Mount destinations are resolved inside the rootfs with openat2(RESOLVE_IN_ROOT)
and mounted through the resolved file descriptor (/proc/self/fd/N), so a
symlink planted in the image can never send a mount to the host
(CVE-2021-30465 class); missing components are created one at a time with
mkdirat under an already-resolved parent, never through a path string.
"""

import os
import stat

from berth.errors import InvalidArgumentError, PermissionDeniedError
from berth.linux import libc
from berth.linux.libc import (
    MNT_DETACH,
    MS_BIND,
    MS_NODEV,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_REMOUNT,
    MS_SLAVE,
)

# option -> (clear, flag) ; <sys/mount.h> names, as runc's mountFlags table
FLAGS: dict[str, tuple[bool, int]] = {
    "acl": (False, libc.MS_POSIXACL),
    "async": (True, libc.MS_SYNCHRONOUS),
    "atime": (True, libc.MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, libc.MS_NODIRATIME),
    "dirsync": (False, libc.MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, libc.MS_I_VERSION),
    "lazytime": (False, libc.MS_LAZYTIME),
    "loud": (True, libc.MS_SILENT),
    "mand": (False, libc.MS_MANDLOCK),
    "noacl": (True, libc.MS_POSIXACL),
    "noatime": (False, libc.MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, libc.MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, libc.MS_I_VERSION),
    "nolazytime": (True, libc.MS_LAZYTIME),
    "nomand": (True, libc.MS_MANDLOCK),
    "norelatime": (True, libc.MS_RELATIME),
    "nostrictatime": (True, libc.MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, libc.MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, libc.MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, libc.MS_SILENT),
    "strictatime": (False, libc.MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, libc.MS_SYNCHRONOUS),
    "symfollow": (True, libc.MS_NOSYMFOLLOW),
}
PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": libc.MS_SHARED,
    "rshared": libc.MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": libc.MS_UNBINDABLE,
    "runbindable": libc.MS_UNBINDABLE | MS_REC,
}
# recursive attributes, set with mount_setattr(AT_RECURSIVE) on the mount and
# every mount under it: option -> (clear, MOUNT_ATTR_*), as runc's table
RECURSIVE: dict[str, tuple[bool, int]] = {
    "rro": (False, libc.MOUNT_ATTR_RDONLY), "rrw": (True, libc.MOUNT_ATTR_RDONLY),
    "rnosuid": (False, libc.MOUNT_ATTR_NOSUID), "rsuid": (True, libc.MOUNT_ATTR_NOSUID),
    "rnodev": (False, libc.MOUNT_ATTR_NODEV), "rdev": (True, libc.MOUNT_ATTR_NODEV),
    "rnoexec": (False, libc.MOUNT_ATTR_NOEXEC), "rexec": (True, libc.MOUNT_ATTR_NOEXEC),
    "rnodiratime": (False, libc.MOUNT_ATTR_NODIRATIME), "rdiratime": (True, libc.MOUNT_ATTR_NODIRATIME),
    "rrelatime": (False, libc.MOUNT_ATTR_RELATIME), "rnorelatime": (True, libc.MOUNT_ATTR_RELATIME),
    "rnoatime": (False, libc.MOUNT_ATTR_NOATIME), "ratime": (True, libc.MOUNT_ATTR_NOATIME),
    "rstrictatime": (False, libc.MOUNT_ATTR_STRICTATIME), "rnostrictatime": (True, libc.MOUNT_ATTR_STRICTATIME),
    "rnosymfollow": (False, libc.MOUNT_ATTR_NOSYMFOLLOW), "rsymfollow": (True, libc.MOUNT_ATTR_NOSYMFOLLOW),
}
# id-mapped bind mounts (runtime-spec 1.1): the mount's own uidMappings and
# gidMappings, applied to the mount only (idmap) or to every mount under it too
IDMAP_OPTIONS = ("idmap", "ridmap")

# statvfs f_flag bits (<sys/statvfs.h>) -> mount flags, to keep the flags the
# kernel locks on a bind mount made in a user namespace
_ST_TO_MS = ((1, MS_RDONLY), (2, MS_NOSUID), (4, MS_NODEV), (8, MS_NOEXEC),
             (1024, libc.MS_NOATIME), (2048, libc.MS_NODIRATIME), (4096, libc.MS_RELATIME))

O_PATH = os.O_PATH | os.O_CLOEXEC
RESOLVE = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS


class MountSpec:
    __slots__ = ("attr_clr", "attr_set", "clear", "data", "destination", "flags", "idmap", "idmap_fd",
                 "propagation", "source", "type")

    def __init__(self, m: dict) -> None:
        self.destination: str = m["destination"]
        self.type: str = m.get("type") or ""
        self.source: str = m.get("source") or ""
        self.flags = 0
        self.clear = 0
        self.propagation: list[int] = []
        self.attr_set = self.attr_clr = 0
        self.idmap = "idmap" if "uidMappings" in m else ""
        self.idmap_fd = -1  # the user namespace whose mappings an id-mapped mount takes
        data: list[str] = []
        for opt in m.get("options") or []:
            if opt in RECURSIVE:
                clear, attr = RECURSIVE[opt]
                if clear:
                    self.attr_clr |= attr
                    self.attr_set &= ~attr
                else:
                    self.attr_set |= attr
                    self.attr_clr &= ~attr
                    if attr & libc.MOUNT_ATTR__ATIME == attr:
                        # mount_setattr(2): an access-time mode is set only
                        # with the whole atime field cleared
                        self.attr_clr |= libc.MOUNT_ATTR__ATIME
            elif opt in FLAGS:
                clear, flag = FLAGS[opt]
                if clear:
                    self.flags &= ~flag
                    self.clear |= flag
                else:
                    self.flags |= flag
            elif opt in PROPAGATION:
                self.propagation.append(PROPAGATION[opt])
            elif opt in IDMAP_OPTIONS:
                self.idmap = opt
            else:
                data.append(opt)
        if self.type == "bind":
            self.flags |= MS_BIND
        self.data = ",".join(data)

    @property
    def is_bind(self) -> bool:
        return bool(self.flags & MS_BIND)


def resolve(root_fd: int, path: str, create: str | None = None, no_symlinks: bool = False) -> int:
    """An O_PATH fd for `path` inside the root open as `root_fd`, resolving
    symlinks as if the root were "/" (never outside it). With create="dir" or
    "file", missing components are made (directories 0755, the last one as a
    directory or an empty file). With no_symlinks, any symlink on the way is
    an error (for /proc, /sys, /dev: CVE-2019-19921, CVE-2023-27561)."""
    rel = path.lstrip("/")
    if not rel:
        return os.dup(root_fd)
    resolve_flags = RESOLVE | (libc.RESOLVE_NO_SYMLINKS if no_symlinks else 0)
    try:
        return libc.openat2(root_fd, rel, O_PATH, 0, resolve_flags)
    except OSError as exc:
        if exc.errno == 40 and no_symlinks:  # ELOOP
            raise PermissionDeniedError(
                f"mount destination {path} is a symlink or goes through one: refused"
            ) from None
        if exc.errno != 2 or create is None:  # ENOENT
            raise
    parent, _, name = rel.rpartition("/")
    pfd = resolve(root_fd, parent, "dir", no_symlinks) if parent else os.dup(root_fd)
    try:
        if create == "dir":
            try:
                os.mkdir(name, 0o755, dir_fd=pfd)
            except FileExistsError:
                pass
        else:
            try:
                os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644, dir_fd=pfd))
            except FileExistsError:
                pass
        return libc.openat2(pfd, name, O_PATH, 0, resolve_flags & ~libc.RESOLVE_IN_ROOT | libc.RESOLVE_BENEATH | libc.RESOLVE_NO_SYMLINKS)
    finally:
        os.close(pfd)


def fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


def _locked_flags(target: str) -> int:
    try:
        f = os.statvfs(target).f_flag
    except OSError:
        return 0
    out = 0
    for st, ms in _ST_TO_MS:
        if f & st:
            out |= ms
    return out


# files lxcfs binds over /proc (runc's checkProcMount allows exactly these)
PROC_BIND_ALLOWED = ("/proc/cpuinfo", "/proc/diskstats", "/proc/meminfo", "/proc/stat", "/proc/swaps",
                     "/proc/uptime", "/proc/loadavg", "/proc/slabinfo", "/proc/net/dev",
                     "/proc/sys/kernel/ns_last_pid")


def check_proc_mount(spec: MountSpec, bundle: str) -> None:
    """CVE-2019-16884: /proc, or anything under it, only from a procfs: a
    tmpfs or a bind of the bundle's files there would hide /proc/self/attr
    (LSM labels) or fake /proc files the runtime writes to."""
    dest = os.path.normpath("/" + spec.destination.lstrip("/"))
    if dest != "/proc" and not dest.startswith("/proc/"):
        return
    if dest == "/proc" and spec.type == "proc" and not spec.is_bind:
        return
    if spec.is_bind:
        if dest in PROC_BIND_ALLOWED:
            return
        source = spec.source if spec.source.startswith("/") else os.path.join(bundle, spec.source)
        try:
            fd = os.open(source, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                if libc.fstatfs_type(fd) == libc.PROC_SUPER_MAGIC:
                    return
            finally:
                os.close(fd)
    raise PermissionDeniedError(
        f"mount {spec.source or spec.type} on {dest}: only a procfs may be mounted on /proc (CVE-2019-16884): refused"
    )


def mount_one(root_fd: int, spec: MountSpec, bundle: str, cgroup_paths: dict[str, str] | None, in_userns: bool) -> None:
    dest = spec.destination
    if spec.type == "cgroup" or spec.type == "cgroup2":
        mount_cgroup(root_fd, spec, cgroup_paths or {}, in_userns)
        return
    no_symlinks = dest.rstrip("/") in ("/proc", "/sys", "/dev") or spec.type in ("proc", "sysfs")
    check_proc_mount(spec, bundle)
    if spec.is_bind:
        source = spec.source if spec.source.startswith("/") else os.path.join(bundle, spec.source)
        try:
            st = os.stat(source)
        except OSError as exc:
            raise OSError(exc.errno, f"mount {source} on {dest}: {os.strerror(exc.errno or 0).lower()}", source) from None
        kind = "dir" if stat.S_ISDIR(st.st_mode) else "file"
        fd = resolve(root_fd, dest, kind, no_symlinks)
        try:
            if spec.idmap:
                mount_idmapped(source, fd, spec)
            else:
                libc.mount(source, fd_path(fd), None, spec.flags & (MS_BIND | MS_REC), None)
        finally:
            os.close(fd)
        rest = spec.flags & ~(MS_BIND | MS_REC | MS_REMOUNT)
        if rest:
            # a bind takes its flags only on remount; keep what the kernel locked
            remount(root_fd, dest, MS_BIND | MS_REMOUNT | rest, keep_locked=in_userns)
        for prop in spec.propagation:
            remount(root_fd, dest, prop)
        set_recursive_attrs(root_fd, spec)
        return
    fd = resolve(root_fd, dest, "dir", no_symlinks)
    try:
        target = fd_path(fd)
        if not stat.S_ISDIR(os.stat(target).st_mode):
            raise InvalidArgumentError(f"mount {spec.type} on {dest}: not a directory")
        source = spec.source or spec.type
        flags = spec.flags & ~MS_REMOUNT
        data = spec.data or None
        try:
            libc.mount(source, target, spec.type, flags, data)
        except OSError as exc:
            # mqueue/sysfs in a user namespace that does not own the ipc/net ns:
            # bind the host's instead, as runc does
            if in_userns and exc.errno == 1 and spec.type in ("sysfs", "mqueue"):
                host = "/sys" if spec.type == "sysfs" else "/dev/mqueue"
                libc.mount(host, target, None, MS_BIND | MS_REC, None)
                os.close(fd)
                fd = resolve(root_fd, dest)
                libc.mount(None, fd_path(fd), None, MS_BIND | MS_REMOUNT | (flags & ~MS_REC) | _locked_flags(fd_path(fd)), None)
            else:
                raise OSError(exc.errno, f"mount {source} on {dest} ({spec.type}): {os.strerror(exc.errno or 0).lower()}", dest) from None
    finally:
        os.close(fd)
    for prop in spec.propagation:
        remount(root_fd, dest, prop)
    set_recursive_attrs(root_fd, spec)


def mount_idmapped(source: str, target_fd: int, spec: MountSpec) -> None:
    """An id-mapped bind mount: a detached copy of `source` (open_tree),
    given the user namespace's mappings (mount_setattr MOUNT_ATTR_IDMAP),
    then attached on the resolved destination (move_mount)."""
    rec = libc.AT_RECURSIVE if spec.flags & MS_REC else 0
    try:
        tree = libc.open_tree(libc.AT_FDCWD, source, libc.OPEN_TREE_CLONE | libc.OPEN_TREE_CLOEXEC | rec)
    except OSError as exc:
        raise OSError(exc.errno, f"id-mapped mount {source} on {spec.destination}: open_tree: "
                      f"{os.strerror(exc.errno or 0).lower()}", source) from None
    try:
        step = "mount_setattr"
        try:
            libc.mount_setattr(tree, "", libc.AT_EMPTY_PATH | (libc.AT_RECURSIVE if spec.idmap == "ridmap" else 0),
                               libc.MOUNT_ATTR_IDMAP, 0, spec.idmap_fd)
            step = "move_mount"
            libc.move_mount(tree, "", target_fd, "", libc.MOVE_MOUNT_F_EMPTY_PATH | libc.MOVE_MOUNT_T_EMPTY_PATH)
        except OSError as exc:
            hint = " (the filesystem does not support id-mapped mounts)" if exc.errno == 22 and step == "mount_setattr" else ""
            raise OSError(exc.errno, f"id-mapped mount {source} on {spec.destination}: {step}: "
                          f"{os.strerror(exc.errno or 0).lower()}{hint}", source) from None
    finally:
        os.close(tree)


def set_recursive_attrs(root_fd: int, spec: MountSpec) -> None:
    """The r* options (rro, rnosuid, ...): mount_setattr(AT_RECURSIVE) on the
    mount just made, through a fresh fd for it (kernel 5.12+)."""
    if not (spec.attr_set or spec.attr_clr):
        return
    fd = resolve(root_fd, spec.destination)
    try:
        libc.mount_setattr(fd, "", libc.AT_EMPTY_PATH | libc.AT_RECURSIVE, spec.attr_set, spec.attr_clr)
    except OSError as exc:
        raise OSError(exc.errno, f"set recursive mount attributes on {spec.destination}: "
                      f"{os.strerror(exc.errno or 0).lower()}", spec.destination) from None
    finally:
        os.close(fd)


def remount(root_fd: int, dest: str, flags: int, keep_locked: bool = False) -> None:
    """Change a mount made on `dest`: resolved again, since an fd opened
    before the mount names the directory underneath, not the new mount."""
    fd = resolve(root_fd, dest)
    try:
        target = fd_path(fd)
        if keep_locked:
            flags |= _locked_flags(target)
        libc.mount(None, target, None, flags, None)
    finally:
        os.close(fd)


def mount_cgroup(root_fd: int, spec: MountSpec, cgroup_paths: dict[str, str], in_userns: bool) -> None:
    """/sys/fs/cgroup inside the container shows the container's own cgroups:
    on v2 a cgroup2 mount (the cgroup namespace makes its root the
    container's cgroup) or a bind of it; on v1 and hybrid hosts a tmpfs with
    a bind of each hierarchy's container directory, as runc does."""
    dest = spec.destination
    ro = spec.flags & MS_RDONLY
    base_flags = (spec.flags & (MS_NOSUID | MS_NODEV | MS_NOEXEC | libc.MS_RELATIME)) | MS_NOSUID | MS_NODEV | MS_NOEXEC
    fd = resolve(root_fd, dest, "dir", True)
    try:
        target = fd_path(fd)
        if list(cgroup_paths) == [""]:
            libc.mount(cgroup_paths[""], target, None, MS_BIND | MS_REC, None)
            remount(root_fd, dest, MS_BIND | MS_REMOUNT | base_flags | ro)
            return
        libc.mount("tmpfs", target, "tmpfs", base_flags, "mode=755")
        # the fd still names the directory under the new tmpfs: resolve again
        sub_root = resolve(root_fd, dest, None, True)
        try:
            for name, host in sorted(cgroup_paths.items()):
                dirname = name.split("=", 1)[1] if name.startswith("name=") else name
                sfd = resolve(sub_root, dirname, "dir", True)
                try:
                    libc.mount(host, fd_path(sfd), None, MS_BIND, None)
                finally:
                    os.close(sfd)
                remount(sub_root, dirname, MS_BIND | MS_REMOUNT | base_flags | ro)
                if "," in dirname:  # cpu,cpuacct -> cpu and cpuacct links, as on the host
                    for part in dirname.split(","):
                        try:
                            os.symlink(dirname, part, dir_fd=sub_root)
                        except FileExistsError:
                            pass
            if ro:
                libc.mount(None, fd_path(sub_root), None, MS_REMOUNT | base_flags | MS_RDONLY, "mode=755")
        finally:
            os.close(sub_root)
    finally:
        os.close(fd)


# default devices (runtime-spec config-linux.md "Default Devices")
DEFAULT_DEVICES = (
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)
DEV_LINKS = (
    ("/proc/self/fd", "fd"), ("/proc/self/fd/0", "stdin"), ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"), ("pts/ptmx", "ptmx"),
)


def create_device(root_fd: int, path: str, kind: str, major: int, minor: int, mode: int,
                  uid: int, gid: int, bind: bool) -> None:
    parent, _, name = path.lstrip("/").rpartition("/")
    pfd = resolve(root_fd, parent, "dir", True) if parent else os.dup(root_fd)
    try:
        if bind:
            # no mknod in a user namespace: bind the host's node
            try:
                os.close(os.open(name, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644, dir_fd=pfd))
            except FileExistsError:
                pass
            nfd = libc.openat2(pfd, name, O_PATH, 0, libc.RESOLVE_BENEATH | libc.RESOLVE_NO_SYMLINKS)
            try:
                libc.mount(path, fd_path(nfd), None, MS_BIND, None)
            finally:
                os.close(nfd)
            return
        fmt = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}[kind]
        try:
            os.unlink(name, dir_fd=pfd)
        except FileNotFoundError:
            pass
        os.mknod(name, fmt | (mode & 0o7777), os.makedev(major, minor), dir_fd=pfd)
        os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
    finally:
        os.close(pfd)


def create_devices(root_fd: int, config: dict, in_userns: bool) -> None:
    linux = config.get("linux") or {}
    old = os.umask(0)
    try:
        seen = set()
        for d in linux.get("devices") or []:
            seen.add(d["path"])
            create_device(root_fd, d["path"], d["type"], d.get("major", 0), d.get("minor", 0),
                          d.get("fileMode", 0o666), d.get("uid", 0), d.get("gid", 0), in_userns)
        for path, major, minor in DEFAULT_DEVICES:
            if path not in seen:
                create_device(root_fd, path, "c", major, minor, 0o666, 0, 0, in_userns)
    finally:
        os.umask(old)
    dfd = resolve(root_fd, "/dev", "dir", True)
    try:
        dev = os.open(fd_path(dfd), os.O_DIRECTORY | os.O_CLOEXEC)
    finally:
        os.close(dfd)
    try:
        links = list(DEV_LINKS)
        if os.path.exists("/proc/kcore"):
            links.append(("/proc/kcore", "core"))
        for target, name in links:
            try:
                os.symlink(target, name, dir_fd=dev)
            except FileExistsError:
                pass
    finally:
        os.close(dev)


def is_dev_bound(config: dict) -> bool:
    """True when /dev comes from a bind mount (then no device nodes are made)."""
    for m in config.get("mounts") or []:
        if m.get("destination", "").rstrip("/") == "/dev":
            opts = m.get("options") or []
            return m.get("type") == "bind" or "bind" in opts or "rbind" in opts
    return False


def has_dev_mount(config: dict) -> bool:
    return any(m.get("destination", "").rstrip("/") == "/dev" for m in config.get("mounts") or [])


def make_parent_mount_private(path: str) -> None:
    """Make the mount that `path` lies on private (only its own propagation)."""
    best = "/"
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4]
            if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) > len(best):
                best = mnt
    libc.mount(None, best, None, MS_PRIVATE, None)


def pivot(rootfs: str) -> None:
    """pivot_root(".", ".") as runc does: no put_old directory inside the
    image; the old root is stacked under the new one, made a slave (so the
    unmount does not propagate to the host) and detached."""
    oldroot = os.open("/", os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    newroot = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fchdir(newroot)
        libc.pivot_root(".", ".")
        os.fchdir(oldroot)
        libc.mount(None, ".", None, MS_SLAVE | MS_REC, None)
        libc.umount2(".", MNT_DETACH)
        os.chdir("/")
    finally:
        os.close(oldroot)
        os.close(newroot)


def move_root(rootfs: str) -> None:
    """--no-pivot: move the rootfs mount over / and chroot into it."""
    os.chdir(rootfs)
    libc.mount(rootfs, "/", None, libc.MS_MOVE, None)
    os.chroot(".")
    os.chdir("/")


def mask_paths(paths: list[str]) -> None:
    """After pivot_root: each masked file gets /dev/null bound over it, each
    masked directory an empty read-only tmpfs. /dev/null is checked to be the
    real 1:3 character device first (CVE-2025-31133)."""
    if not paths:
        return
    st = os.stat("/dev/null", follow_symlinks=False)
    if not stat.S_ISCHR(st.st_mode) or st.st_rdev != os.makedev(1, 3):
        raise PermissionDeniedError("mask paths: /dev/null is not the null device: refused")
    root = os.open("/", os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for p in paths:
            try:
                fd = libc.openat2(root, p.lstrip("/"), O_PATH, 0, libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS)
            except FileNotFoundError:
                continue
            try:
                target = fd_path(fd)
                if stat.S_ISDIR(os.stat(target).st_mode):
                    libc.mount("tmpfs", target, "tmpfs", MS_RDONLY, None)
                else:
                    libc.mount("/dev/null", target, None, MS_BIND, None)
            finally:
                os.close(fd)
    finally:
        os.close(root)


def readonly_paths(paths: list[str]) -> None:
    root = os.open("/", os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for p in paths:
            try:
                fd = libc.openat2(root, p.lstrip("/"), O_PATH, 0, libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS)
            except FileNotFoundError:
                continue
            try:
                target = fd_path(fd)
                libc.mount(target, target, None, MS_BIND | MS_REC, None)
            finally:
                os.close(fd)
            remount(root, p, MS_BIND | MS_REMOUNT | MS_RDONLY, keep_locked=True)
    finally:
        os.close(root)


def remount_root_readonly() -> None:
    libc.mount(None, "/", None, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags("/"), None)


# sysctls a container may set: those namespaced by the kernel (runc's list)
_IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced")


def check_sysctl(name: str, namespaces: dict[str, str]) -> None:
    if name in _IPC_SYSCTLS or name.startswith("fs.mqueue."):
        if "ipc" not in namespaces:
            raise InvalidArgumentError(f"sysctl {name}: needs a new ipc namespace")
        return
    if name.startswith("net."):
        if "network" not in namespaces:
            raise InvalidArgumentError(f"sysctl {name}: needs a new network namespace")
        return
    if name in ("kernel.hostname", "kernel.domainname"):
        raise InvalidArgumentError(f"sysctl {name}: use the config's hostname/domainname instead")
    raise InvalidArgumentError(f"sysctl {name}: not namespaced, not allowed in a container")


def write_sysctls(sysctl: dict[str, str]) -> None:
    """After pivot_root, through the container's own /proc (checked to be a procfs)."""
    if not sysctl:
        return
    proc_sys = os.open("/proc/sys", os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        if libc.fstatfs_type(proc_sys) != libc.PROC_SUPER_MAGIC:
            raise PermissionDeniedError("write sysctls: /proc/sys is not on a procfs: refused")
        for name, value in sysctl.items():
            rel = name.replace(".", "/")
            fd = libc.openat2(proc_sys, rel, os.O_WRONLY | os.O_CLOEXEC, 0,
                              libc.RESOLVE_BENEATH | libc.RESOLVE_NO_SYMLINKS | libc.RESOLVE_NO_MAGICLINKS)
            try:
                os.write(fd, value.encode())
            except OSError as exc:
                raise OSError(exc.errno, f"write sysctl {name}={value}: {os.strerror(exc.errno or 0).lower()}") from None
            finally:
                os.close(fd)
    finally:
        os.close(proc_sys)
