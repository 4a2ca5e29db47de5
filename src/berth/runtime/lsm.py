"""Linux security modules: ``process.apparmorProfile``,
``process.selinuxLabel`` and ``linux.mountLabel``.

`check` runs in the runtime process before anything exists: a profile or
label the host cannot apply (its LSM is not enabled) fails `create` or
`exec` with a clear error, instead of a half-built container (runc 1.1 fails
too, but for AppArmor only once its init writes the profile).

`apply_exec_labels` runs in the container's process as one of the last steps
before execve: the profile and label are written to /proc/thread-self/attr
through a procfs handle verified with fstatfs (CVE-2025-52881: a write under
/proc must never follow a path the image can redirect). They take effect at
execve ("exec <profile>", the exec attribute), as runc does.
"""

import os

from berth.errors import PermissionDeniedError, UnavailableError
from berth.linux import libc


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled", "rb") as f:
            return f.read(1) == b"Y"
    except OSError:
        return False


def selinux_enabled() -> bool:
    try:
        fd = os.open("/sys/fs/selinux", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return libc.fstatfs_type(fd) == libc.SELINUX_MAGIC
    finally:
        os.close(fd)


def check(proc: dict, linux: dict) -> None:
    """UnavailableError if the config asks for an LSM this host lacks."""
    if proc.get("apparmorProfile") and not apparmor_enabled():
        raise UnavailableError(
            f"apply apparmor profile {proc['apparmorProfile']!r}: apparmor is not enabled on this host"
        )
    if proc.get("selinuxLabel") and not selinux_enabled():
        raise UnavailableError(
            f"apply selinux label {proc['selinuxLabel']!r}: selinux is not enabled on this host"
        )
    if linux.get("mountLabel") and not selinux_enabled():
        raise UnavailableError(
            f"apply mount label {linux['mountLabel']!r}: selinux is not enabled on this host"
        )


def mount_data(data: str, fstype: str, label: str | None) -> str:
    """Mount options with the SELinux ``context=`` for `label` (runc's
    FormatMountLabel: not for proc, sysfs, cgroup, or bind mounts)."""
    if not label or fstype in ("proc", "sysfs", "cgroup", "cgroup2", "bind", ""):
        return data
    ctx = f'context="{label}"'
    return f"{data},{ctx}" if data else ctx


def _write_attr(names: tuple[str, ...], value: str, what: str) -> None:
    proc = os.open("/proc", os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
    try:
        if libc.fstatfs_type(proc) != libc.PROC_SUPER_MAGIC:
            raise PermissionDeniedError(f"{what}: /proc is not a procfs: refused")
        last: OSError | None = None
        for name in names:
            try:
                # thread-self is a magic link the kernel itself resolves; the rest
                # of the path may not be a symlink
                fd = libc.openat2(proc, f"thread-self/{name}", os.O_WRONLY | os.O_CLOEXEC, 0,
                                  libc.RESOLVE_BENEATH | libc.RESOLVE_NO_XDEV)
            except FileNotFoundError as exc:
                last = exc
                continue
            try:
                if libc.fstatfs_type(fd) != libc.PROC_SUPER_MAGIC:
                    raise PermissionDeniedError(f"{what}: /proc/thread-self/{name} is not on a procfs: refused")
                os.write(fd, value.encode())
                return
            except OSError as exc:
                raise OSError(exc.errno, f"{what}: write /proc/thread-self/{name}: {os.strerror(exc.errno or 0).lower()}") from None
            finally:
                os.close(fd)
        raise OSError(getattr(last, "errno", 2), f"{what}: no attr file under /proc/thread-self")
    finally:
        os.close(proc)


def apply_exec_labels(proc: dict) -> None:
    profile = proc.get("apparmorProfile")
    if profile:
        _write_attr(("attr/apparmor/exec", "attr/exec"), f"exec {profile}", f"apply apparmor profile {profile}")
    label = proc.get("selinuxLabel")
    if label:
        _write_attr(("attr/exec",), label, f"apply selinux label {label}")
