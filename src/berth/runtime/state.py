"""Container state: the status machine (as data), state files, locks.

The status is never stored: it is read from the kernel each time.

    created  the init process lives and the exec FIFO still exists
    running  the init process lives (it has exec'd the user process)
    paused   running, and its cgroup is frozen
    stopped  the init process is gone (or a zombie, or its pid was reused)

`TRANSITIONS` says which operations each status allows; the CLI checks it
before acting, and tests check it exhaustively.
"""

import errno
import fcntl
import os
import time

from berth import OCI_VERSION, jsonio
from berth.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError
from berth.paths import RuntimePaths

STATUSES = ("creating", "created", "running", "paused", "stopped")

TRANSITIONS: dict[str, frozenset[str]] = {
    "start": frozenset({"created"}),
    "kill": frozenset({"created", "running", "paused"}),
    "delete": frozenset({"created", "stopped"}),
    "force-delete": frozenset({"creating", "created", "running", "paused", "stopped"}),
    "pause": frozenset({"created", "running"}),
    "resume": frozenset({"paused"}),
    "exec": frozenset({"created", "running"}),
    "update": frozenset({"created", "running", "paused"}),
    "ps": frozenset({"created", "running", "paused"}),
    "events": frozenset({"created", "running", "paused"}),
}


def can(operation: str, status: str) -> bool:
    return status in TRANSITIONS[operation]


def check_id(container_id: str) -> None:
    """runc's rule: [A-Za-z0-9_+.-]+, and not "." or ".."."""
    if not container_id or container_id in (".", ".."):
        raise InvalidArgumentError(f"invalid container id format: {container_id!r}")
    for ch in container_id:
        if not (ch.isascii() and (ch.isalnum() or ch in "_+-.")):
            raise InvalidArgumentError(f"invalid container id format: {container_id}")
    if len(container_id) > 1024:
        raise InvalidArgumentError("invalid container id format: too long")


def proc_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks), or None when
    the process is gone or a zombie: with the pid it identifies one process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def now_rfc3339() -> str:
    t = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000)) + f".{t % 1_000_000_000:09d}Z"


class Lock:
    """An exclusive flock on the container's lock file: concurrent commands
    on one container are serialised."""

    __slots__ = ("fd",)

    def __init__(self, path: str, create: bool = False) -> None:
        # only `create` makes the file: a command racing a `delete` must not
        # make a new lock in a directory being removed
        flags = os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0)
        try:
            self.fd = os.open(path, flags, 0o600)
        except FileNotFoundError:
            raise NotFoundError("container does not exist") from None
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        if not create and not os.path.exists(path):
            # deleted while we waited for the lock
            os.close(self.fd)
            raise NotFoundError("container does not exist")

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# the state's keys are strings (its config comes from JSON): _json's C
# encoder, ~0.2 instead of ~0.9 ms with Docker's seccomp profile, at every create
_dumps = jsonio.dumps_string_keyed


class ContainerState:
    """The persisted part of a container, in <root>/<id>/state.json.

    Keys: id, pid, start_time, bundle, rootfs, created, annotations, owner,
    cgroups_path, config (the validated config.json; poststop hooks and the
    cgroup need it after the bundle may be gone)."""

    __slots__ = ("data", "dir", "paths")

    def __init__(self, paths: RuntimePaths, data: dict) -> None:
        self.paths = paths
        self.data = data
        self.dir = paths.container(data["id"])

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def pid(self) -> int:
        return self.data.get("pid") or 0

    @property
    def config(self) -> dict:
        return self.data["config"]

    @classmethod
    def load(cls, paths: RuntimePaths, container_id: str) -> "ContainerState":
        check_id(container_id)
        try:
            data = jsonio.load_file(paths.state_file(container_id))
        except FileNotFoundError:
            raise NotFoundError("container does not exist", container_id=container_id) from None
        except (ValueError, OSError) as exc:
            raise ConflictError(f"container {container_id}: unreadable state: {exc}") from exc
        assert isinstance(data, dict)
        return cls(paths, data)

    def save(self) -> None:
        # live-container state: meaningless after a reboot, so no fsync (as runc)
        jsonio.write_atomic(self.paths.state_file(self.id), _dumps(self.data), 0o600, durable=False)

    def is_alive(self) -> bool:
        pid = self.pid
        return pid > 0 and proc_start_time(pid) == self.data.get("start_time")

    def status(self) -> str:
        if not self.pid:
            return "creating" if os.path.exists(self.paths.exec_fifo(self.id)) else "stopped"
        if not self.is_alive():
            return "stopped"
        if self.is_frozen():  # as runc: a container paused before start is "paused"
            return "paused"
        if os.path.exists(self.paths.exec_fifo(self.id)):
            return "created"
        return "running"

    def is_frozen(self) -> bool:
        from berth.runtime.cgroup import manager_for

        mgr = manager_for(self)
        if mgr is None:
            return False
        try:
            return mgr.is_frozen()
        except OSError:
            return False

    def oci_state(self, status: str | None = None) -> dict:
        """The runtime-spec state object (what `state` prints and hooks read)."""
        st = status or self.status()
        out = {
            "ociVersion": self.config.get("ociVersion", OCI_VERSION),
            "id": self.id,
            "status": st,
            "pid": self.pid if st != "stopped" else 0,
            "bundle": self.data["bundle"],
            "rootfs": self.data.get("rootfs", ""),
            "created": self.data.get("created", ""),
            "owner": self.data.get("owner", ""),
        }
        ann = self.config.get("annotations")
        if ann:
            out["annotations"] = ann
        return out


def make_container_dir(paths: RuntimePaths, container_id: str) -> str:
    check_id(container_id)
    os.makedirs(paths.root, mode=0o700, exist_ok=True)
    d = paths.container(container_id)
    try:
        os.mkdir(d, 0o711)
    except FileExistsError:
        raise AlreadyExistsError(f"container with id exists: {container_id}", container_id=container_id) from None
    return d


def list_ids(paths: RuntimePaths) -> list[str]:
    try:
        names = os.listdir(paths.root)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.isfile(paths.state_file(n)))


def remove_container_dir(paths: RuntimePaths, container_id: str) -> None:
    d = paths.container(container_id)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return
    for name in names:
        try:
            os.unlink(f"{d}/{name}")
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                raise
    try:
        os.rmdir(d)
    except FileNotFoundError:
        pass
