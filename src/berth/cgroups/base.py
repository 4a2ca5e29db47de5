"""The `CgroupManager` interface and what its implementations share.

A manager owns one container's cgroup: one directory per hierarchy on cgroup
v1 (``paths`` maps hierarchy key -> directory, see `hierarchy`), one directory
on cgroup v2. It knows nothing of containers beyond that.

On the runtime's start-up path: imports only os, errno, time.
"""


import errno
import os
import time

from berth.errors import BerthError, ConflictError, from_oserror

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from berth.cgroups.events import EventWatcher


class CgroupManager:
    """One cgroup, in every hierarchy the host uses.

    ``mode`` is ``"v1"``, ``"hybrid"`` or ``"v2"``; ``paths`` maps each
    hierarchy key to the cgroup's absolute directory.
    """

    mode = ""

    def __init__(self, paths: dict[str, str]) -> None:
        self.paths = dict(paths)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.paths!r})"

    # lifecycle -------------------------------------------------------------
    def create(self) -> None:
        """Make the cgroup's directory in every hierarchy (idempotent)."""
        raise NotImplementedError

    def add_process(self, pid: int) -> None:
        """Move process `pid` into the cgroup (in every hierarchy)."""
        raise NotImplementedError

    def apply(self, resources: dict) -> None:
        """Set the OCI ``linux.resources`` `resources` on a new cgroup."""
        raise NotImplementedError

    def update(self, resources: dict) -> None:
        """Change limits of a live cgroup; if the kernel refuses one value,
        the values written before it are restored and the error names the
        file and value."""
        raise NotImplementedError

    def destroy(self) -> None:
        """Remove the cgroup (and any child cgroups) everywhere, retrying
        briefly (2 s in all) while the last processes exit; a missing cgroup
        is fine. Every hierarchy is tried; the first failure is raised."""
        deadline = time.monotonic() + 2.0
        first: BerthError | None = None
        for path in self.paths.values():
            try:
                remove_tree(path, timeout=max(0.05, deadline - time.monotonic()))
            except BerthError as exc:
                if first is None:
                    first = exc
                else:
                    first.add_note(str(exc))
        if first is not None:
            raise first
        remove_default_parents(self.paths.values())

    def exists(self) -> bool:
        return any(os.path.isdir(p) for p in self.paths.values())

    def host_paths(self) -> dict[str, str]:
        """hierarchy key -> absolute directory of this cgroup on the host."""
        return dict(self.paths)

    def container_mounts(self) -> list[tuple[str, str]]:
        """What to bind at /sys/fs/cgroup inside a container so it sees its own
        cgroup: (path relative to /sys/fs/cgroup, host directory). On v2 one
        entry ("", dir); on v1/hybrid one per hierarchy, over a tmpfs:
        ("memory", dir), ("cpu,cpuacct", dir), ("systemd", dir), ("unified", dir)."""
        out = []
        for key, path in self.paths.items():
            out.append((key[5:] if key.startswith("name=") else key, path))
        return sorted(out)

    def container_symlinks(self) -> list[tuple[str, str]]:
        """(link, target) under /sys/fs/cgroup for co-mounted v1 controllers,
        as hosts have them: ("cpu", "cpu,cpuacct"), ("cpuacct", "cpu,cpuacct")."""
        out = []
        for key in self.paths:
            if "," in key and not key.startswith("name="):
                out.extend((c, key) for c in key.split(","))
        return sorted(out)

    # processes -------------------------------------------------------------
    def pids(self) -> list[int]:
        """Every process in the cgroup and its descendants, sorted."""
        raise NotImplementedError

    def freeze(self) -> None:
        raise NotImplementedError

    def thaw(self) -> None:
        raise NotImplementedError

    def is_frozen(self) -> bool:
        raise NotImplementedError

    def kill_all(self, sig: int) -> None:
        """Send `sig` to every process in the cgroup."""
        raise NotImplementedError

    # observation -----------------------------------------------------------
    def stats(self) -> dict:
        """Usage and counters, shaped like the "data" object of runc's
        ``events --stats`` (see `berth.cgroups.stats`)."""
        from berth.cgroups.stats import collect

        return collect(self)

    def watch_events(self) -> "EventWatcher":
        """An `berth.cgroups.events.EventWatcher` for OOM and pids-limit events."""
        from berth.cgroups.events import EventWatcher

        return EventWatcher(self)


def read_pids(path: str, recursive: bool = True) -> list[int]:
    """The pids in cgroup.procs of `path` (and of its descendants)."""
    out: list[int] = []
    dirs = [path]
    while dirs:
        d = dirs.pop()
        try:
            with open(f"{d}/cgroup.procs") as f:
                out.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise from_oserror(exc, "read cgroup.procs in", d) from exc
        if recursive:
            try:
                dirs.extend(e.path for e in os.scandir(d) if e.is_dir(follow_symlinks=False))
            except FileNotFoundError:
                continue
    return sorted(set(out))


def signal_pids(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def remove_default_parents(paths) -> None:
    """Remove berth's shared parent (``/berth`` at a hierarchy's root) under
    each of `paths` once its last container's cgroup is gone: the last one
    out takes it away, so nothing of berth stays in the hierarchies while it
    runs no container. A parent with another cgroup in it refuses (EBUSY,
    ENOTEMPTY): it is someone else's turn."""
    from berth.cgroups.hierarchy import DEFAULT_PARENT

    name = DEFAULT_PARENT.lstrip("/")
    for path in paths:
        parent = os.path.dirname(path.rstrip("/"))
        if os.path.basename(parent) != name or not os.path.ismount(os.path.dirname(parent)):
            continue
        try:
            os.rmdir(parent)
        except OSError:
            pass


def make_dirs(path: str) -> list[str]:
    """mkdir -p; returns the directories created, top first. A parent that
    vanishes meanwhile (berth's shared parent removed by the last container
    leaving, see remove_default_parents) is made again."""
    for _ in range(5):
        try:
            return _make_dirs(path)
        except FileNotFoundError:
            continue
    return _make_dirs(path)


def _make_dirs(path: str) -> list[str]:
    # the common case, a new cgroup under an existing parent: one mkdir
    # rather than a stat of it and of its parent first
    try:
        os.mkdir(path, 0o755)
        return [path]
    except OSError:
        pass  # absent parent, already there, or an error: the walk says which
    created: list[str] = []
    todo = []
    p = path
    while not os.path.isdir(p):
        todo.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    for d in reversed(todo):
        try:
            os.mkdir(d, 0o755)
            created.append(d)
        except FileExistsError:
            pass
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise from_oserror(exc, "create cgroup", d) from exc
    return created


def remove_tree(path: str, timeout: float = 2.0) -> None:
    """rmdir `path` and its child cgroups, deepest first; EBUSY (processes
    still exiting) is retried with growing pauses up to `timeout` seconds."""
    if not os.path.isdir(path):
        return
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while True:
        try:
            _rmdir_tree(path)
            return
        except OSError as exc:
            if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY, errno.EAGAIN):
                raise from_oserror(exc, "remove cgroup", exc.filename or path) from exc
            if time.monotonic() >= deadline:
                left = read_pids(path)
                raise ConflictError(
                    f"remove cgroup {exc.filename or path}: device or resource busy"
                    + (f" (processes left: {' '.join(map(str, left[:10]))})" if left else ""),
                    path=path,
                    pids=left,
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _rmdir_tree(path: str) -> None:
    try:
        entries = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return
    for child in entries:
        _rmdir_tree(child)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.filename is None:
            exc.filename = path
        raise


def wait_until(predicate: object, timeout: float, what: str, path: str) -> None:
    """Poll `predicate()` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    delay = 0.0005
    while not predicate():  # type: ignore[operator]
        if time.monotonic() >= deadline:
            raise ConflictError(f"{what} {path}: timed out", path=path)
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


__all__ = [
    "BerthError",
    "CgroupManager",
    "make_dirs",
    "read_pids",
    "remove_tree",
    "signal_pids",
    "wait_until",
]
