"""Reading and writing cgroup control files, with errors that name file and value.

Every controller in this package writes through `Writer`, so a kernel refusal
becomes ``write memory.limit_in_bytes=1024 in /sys/fs/cgroup/memory/x: device
or resource busy`` (an InvalidArgumentError when the kernel refused the
value), and a live update can be rolled back: a recording `Writer` reads each
file before its first write and `rollback()` puts the old contents back.

On the runtime's start-up path: imports only os and errno.
"""


import errno
import os

from berth.errors import (
    BerthError,
    InvalidArgumentError,
    UnavailableError,
    from_oserror,
)

# errnos with which the kernel refuses a value written to a control file
_REFUSED = (errno.EINVAL, errno.EBUSY, errno.ERANGE, errno.EOVERFLOW, errno.ENOSPC)


def read(dirpath: str, name: str) -> str:
    """The contents of `dirpath/name`, stripped of the trailing newline."""
    path = f"{dirpath}/{name}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise from_oserror(exc, "read", path) from exc
    try:
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    except OSError as exc:
        raise from_oserror(exc, "read", path) from exc
    finally:
        os.close(fd)
    return b"".join(chunks).decode().rstrip("\n")


def read_optional(dirpath: str, name: str) -> str | None:
    """Like `read`, but None when the file does not exist."""
    try:
        return read(dirpath, name)
    except BerthError as exc:
        if exc.data.get("errno") in (errno.ENOENT, errno.ENODEV):
            return None
        raise


def exists(dirpath: str, name: str) -> bool:
    return os.path.exists(f"{dirpath}/{name}")


def write_error(exc: OSError, dirpath: str, name: str, value: str) -> BerthError:
    """The berth error for a failed write of `value` to `dirpath/name`."""
    code = exc.errno or 0
    reason = os.strerror(code).lower() if code else str(exc)
    shown = value.strip().replace("\n", "\\n")
    message = f"write {name}={shown} in {dirpath}: {reason}"
    path = f"{dirpath}/{name}"
    if code in _REFUSED:
        return InvalidArgumentError(message, errno=code, path=path, value=value)
    if code in (errno.ENOENT, errno.ENODEV):
        if os.path.isdir(dirpath):
            return UnavailableError(
                f"write {name}={shown} in {dirpath}: not supported by this kernel or "
                "controller not enabled",
                errno=code,
                path=path,
                value=value,
            )
        return from_oserror(exc, f"write {name}={shown} in", dirpath)
    err = from_oserror(exc, f"write {name}={shown} in", dirpath)
    err.data["value"] = value
    return err


def write(dirpath: str, name: str, value: str) -> None:
    """One write(2) of `value` to the existing file `dirpath/name`."""
    path = f"{dirpath}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as exc:
        raise write_error(exc, dirpath, name, value) from exc
    try:
        os.write(fd, value.encode())
    except OSError as exc:
        raise write_error(exc, dirpath, name, value) from exc
    finally:
        os.close(fd)


class Writer:
    """Writes control files; when `record` is set, remembers what to restore.

    `rollback()` undoes the writes made through this writer, newest first.
    Whole-value files get their old contents back; keyed files (``io.max``,
    ``blkio.throttle.*``, ``devices.*``) get a restore action computed from
    what they held before (see `write_keyed`, `on_rollback`).
    """

    __slots__ = ("_saved", "_undo", "record", "written")

    def __init__(self, record: bool = False) -> None:
        self.record = record
        self.written: list[tuple[str, str, str]] = []
        self._saved: set[str] = set()
        self._undo: list[tuple[str, str, str]] = []

    def write(self, dirpath: str, name: str, value: str, restore: bool = True) -> None:
        """Write `value`; `restore` False for files whose restore the caller
        registered itself with `on_rollback` (devices.allow/deny)."""
        path = f"{dirpath}/{name}"
        if self.record and restore and path not in self._saved:
            try:
                old = read_optional(dirpath, name)
            except BerthError:
                old = None  # write-only (cgroup.kill): nothing to restore
            self._saved.add(path)
            if old is not None:
                self._undo.append((dirpath, name, _restorable(name, old)))
        write(dirpath, name, value)
        self.written.append((dirpath, name, value))

    def write_keyed(self, dirpath: str, name: str, key: str, value: str, reset: str) -> None:
        """Write ``key value`` to a file that holds one line per key (a device,
        an interface); rollback writes the key's old line back, or ``key reset``
        when the key had no line before."""
        if self.record:
            old = read_optional(dirpath, name) or ""
            line = next((ln for ln in old.splitlines() if ln.split(" ", 1)[0] == key), None)
            self._undo.append((dirpath, name, line if line is not None else f"{key} {reset}"))
        write(dirpath, name, f"{key} {value}")
        self.written.append((dirpath, name, f"{key} {value}"))

    def on_rollback(self, dirpath: str, name: str, value: str) -> None:
        """Register one write to make on rollback."""
        if self.record:
            self._undo.append((dirpath, name, value))

    def rollback(self) -> list[BerthError]:
        """Restore, newest first; returns the errors of restores that failed."""
        errors: list[BerthError] = []
        for dirpath, name, old in reversed(self._undo):
            try:
                write(dirpath, name, old)
            except BerthError as exc:
                errors.append(exc)
        self._undo.clear()
        self._saved.clear()
        return errors


def _restorable(name: str, old: str) -> str:
    """What to write back to `name` to restore the contents `old` read from it."""
    if name == "memory.oom_control":
        # reads "oom_kill_disable 0\nunder_oom 0\noom_kill 0", accepts "0"/"1"
        for line in old.splitlines():
            if line.startswith("oom_kill_disable "):
                return line.split()[1]
    return old
