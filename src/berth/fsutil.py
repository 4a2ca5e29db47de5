"""Filesystem helpers for berth's own trees.

`rmtree` without shutil: shutil imports fnmatch and re (~10 ms of a
`berth run --rm` on these machines) for features berth's own trees (bundles,
snapshots) do not need.

Like shutil's fd-based variant, it opens every directory relative to its
parent with O_NOFOLLOW and never follows a symbolic link; a link is removed,
not its target. It does not cross into anything but directories it opened
itself, so a tree swapped under it cannot redirect it.
"""

import errno
import os

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def rmtree(path: str, ignore_errors: bool = False) -> None:
    """Remove `path` and everything below it. Errors raise OSError (the
    first one, after trying the rest) unless `ignore_errors`; a missing
    `path` raises FileNotFoundError."""
    errors: list[OSError] = []
    try:
        fd = os.open(path, _DIR_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):  # a file or a link
            try:
                os.unlink(path)
                return
            except OSError as exc2:
                exc = exc2
        if not ignore_errors:
            raise
        return
    try:
        _clear(fd, errors)
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError as exc:
        errors.append(exc)
    if errors and not ignore_errors:
        raise errors[0]


def _clear(fd: int, errors: list[OSError]) -> None:
    try:
        with os.scandir(fd) as it:
            entries = list(it)
    except OSError as exc:
        errors.append(exc)
        return
    for e in entries:
        try:
            is_dir = e.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if not is_dir:
            try:
                os.unlink(e.name, dir_fd=fd)
            except OSError as exc:
                errors.append(exc)
            continue
        try:
            sub = os.open(e.name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            errors.append(exc)
            continue
        try:
            _clear(sub, errors)
        finally:
            os.close(sub)
        try:
            os.rmdir(e.name, dir_fd=fd)
        except OSError as exc:
            errors.append(exc)


def is_mountpoint(path: str) -> bool:
    """Whether `path` (as the kernel names it: absolute, no symlinks) is a
    mount point in this mount namespace, from /proc/self/mountinfo."""
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            return any(_unescape(line.split(b" ", 5)[4]) == path for line in f)
    except OSError:
        return False


def _unescape(field: bytes) -> str:
    r"""A mountinfo path: space, tab, newline and backslash are \ooo."""
    if b"\\" in field:
        import re

        field = re.sub(rb"\\([0-7]{3})", lambda m: bytes([int(m.group(1), 8)]), field)
    return os.fsdecode(field)
