"""`CgroupV2`: a container's cgroup on a cgroup v2 (unified) hierarchy.

On the runtime's start-up path: no imports beyond berth's light modules.
"""

import os

from berth.cgroups import fs
from berth.cgroups.base import (
    CgroupManager,
    make_dirs,
    read_pids,
    signal_pids,
    wait_until,
)
from berth.errors import BerthError, ConflictError, UnavailableError
from berth.linux.signals import SIGNALS

SIGKILL = SIGNALS["KILL"]


class CgroupV2(CgroupManager):
    """`path`: this cgroup's directory; `root`: the cgroup2 mount point it is
    under (controllers are enabled from there down when creating)."""

    mode = "v2"

    def __init__(self, path: str, root: str) -> None:
        super().__init__({"": path})
        self.path = path
        self.root = root

    def create(self) -> None:
        created = make_dirs(self.path)
        try:
            enable_controllers(self.root, self.path)
        except BerthError as exc:
            for d in reversed(created):
                try:
                    os.rmdir(d)
                except OSError as err:
                    exc.add_note(f"and could not remove {d}: {err.strerror}")
            raise

    def add_process(self, pid: int) -> None:
        fs.write(self.path, "cgroup.procs", str(pid))

    def apply(self, resources: dict) -> None:
        from berth.cgroups.v2res import apply_resources

        apply_resources(self.path, resources, fs.Writer())

    def update(self, resources: dict) -> None:
        from berth.cgroups.v2res import apply_resources

        w = fs.Writer(record=True)
        try:
            apply_resources(self.path, resources, w, update=True)
        except BerthError as exc:
            for err in w.rollback():
                exc.add_note(f"rollback failed: {err}")
            raise

    def pids(self) -> list[int]:
        return read_pids(self.path)

    def freeze(self) -> None:
        freeze_v2(self.path, True)

    def thaw(self) -> None:
        freeze_v2(self.path, False)

    def is_frozen(self) -> bool:
        if not os.path.isdir(self.path):
            return False
        return fs.read(self.path, "cgroup.freeze") == "1"

    def kill_all(self, sig: int) -> None:
        if sig == SIGKILL and fs.exists(self.path, "cgroup.kill"):
            # Linux 5.14: one write kills the whole subtree, forks included,
            # frozen tasks too
            fs.write(self.path, "cgroup.kill", "1")
            return
        frozen = False
        if not self.is_frozen():
            try:
                self.freeze()
                frozen = True
            except (ConflictError, UnavailableError):
                frozen = False
        # a paused container: SIGKILL must thaw it, or its frozen tasks
        # never get to die (v1 freezer); other signals wait for resume
        was_frozen = not frozen and sig == SIGKILL and self.is_frozen()
        try:
            signal_pids(self.pids(), sig)
        finally:
            if frozen or was_frozen:
                self.thaw()


def _events(path: str) -> dict[str, str]:
    out = {}
    for line in fs.read(path, "cgroup.events").splitlines():
        k, _, v = line.partition(" ")
        out[k] = v
    return out


def freeze_v2(path: str, frozen: bool) -> None:
    """Write cgroup.freeze and wait until cgroup.events reports the state."""
    if not fs.exists(path, "cgroup.freeze"):
        if not os.path.isdir(path):
            fs.write(path, "cgroup.freeze", "1" if frozen else "0")  # raises not found
        raise UnavailableError(f"{'freeze' if frozen else 'thaw'} cgroup {path}: needs Linux 5.2")
    want = "1" if frozen else "0"
    fs.write(path, "cgroup.freeze", want)
    try:
        wait_until(
            lambda: _events(path).get("frozen", want) == want,
            5.0,
            "freeze cgroup" if frozen else "thaw cgroup",
            path,
        )
    except ConflictError:
        if frozen:
            # never leave a cgroup half frozen
            fs.write(path, "cgroup.freeze", "0")
        raise


def enable_controllers(root: str, path: str, wanted: tuple[str, ...] | None = None) -> None:
    """Enable controllers in cgroup.subtree_control of every ancestor of `path`
    from the cgroup2 mount `root` down, so `path` gets their files. `wanted`
    None means all the ancestors offer (what runc does on v2)."""
    rel = [p for p in path[len(root) :].split("/") if p]
    d = root
    for name in rel:
        available = fs.read(d, "cgroup.controllers").split()
        enabled = set(fs.read(d, "cgroup.subtree_control").split())
        if wanted is not None:
            for c in wanted:
                if c not in available:
                    raise UnavailableError(
                        f"enable cgroup controller {c} in {d}: not available there"
                    )
        todo = [c for c in available if c not in enabled and (wanted is None or c in wanted)]
        if todo:
            try:
                fs.write(d, "cgroup.subtree_control", " ".join("+" + c for c in todo))
            except BerthError:
                # one refused controller (e.g. in a threaded subtree) must not
                # keep the others off
                for c in todo:
                    try:
                        fs.write(d, "cgroup.subtree_control", "+" + c)
                    except BerthError:
                        if wanted is not None:
                            raise
        d = f"{d}/{name}"
