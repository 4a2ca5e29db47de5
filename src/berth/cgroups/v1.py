"""`CgroupV1`: a container's cgroup on a cgroup v1 host, and on a hybrid host
(v1 controllers plus the cgroup2 mount at ``<root>/unified``, where the
cgroup is created too, as systemd does, so cgroup.kill, cgroup.events, PSI
and controllers only v2 offers, such as hugetlb here, can be used).

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
from berth.cgroups.v1res import apply_resources, controller_dirs
from berth.errors import BerthError, ConflictError, UnavailableError
from berth.linux.signals import SIGNALS

SIGKILL = SIGNALS["KILL"]


class CgroupV1(CgroupManager):
    """`paths`: hierarchy key ("memory", "cpu,cpuacct", "name=systemd",
    "unified" on hybrid hosts) -> this cgroup's directory in it. `unified_root`
    is the cgroup2 mount point of a hybrid host."""

    def __init__(self, paths: dict[str, str], unified_root: str | None = None) -> None:
        super().__init__(paths)
        self.mode = "hybrid" if "unified" in paths else "v1"
        self.unified_root = unified_root
        self.dirs = controller_dirs(paths)

    # lifecycle -------------------------------------------------------------
    def create(self) -> None:
        done: list[str] = []
        try:
            for key, path in self.paths.items():
                created = make_dirs(path)
                done.extend(created)
                if "cpuset" in key.split(",") and created:
                    _inherit_cpuset(created)
        except BerthError as exc:
            # no half-made cgroup: remove what this call made, deepest first
            for d in reversed(done):
                try:
                    os.rmdir(d)
                except OSError as err:
                    exc.add_note(f"and could not remove {d}: {err.strerror}")
            raise

    def add_process(self, pid: int) -> None:
        for path in self.paths.values():
            fs.write(path, "cgroup.procs", str(pid))

    def apply(self, resources: dict) -> None:
        apply_resources(self.paths, resources, fs.Writer(), hugetlb_v2=self._hugetlb_v2())

    def update(self, resources: dict) -> None:
        w = fs.Writer(record=True)
        try:
            apply_resources(self.paths, resources, w, update=True, hugetlb_v2=self._hugetlb_v2())
        except BerthError as exc:
            for err in w.rollback():
                exc.add_note(f"rollback failed: {err}")
            raise

    def _hugetlb_v2(self) -> object:
        unified = self.paths.get("unified")
        if unified is None or self.unified_root is None or "hugetlb" in self.dirs:
            return None

        def enable() -> str:
            from berth.cgroups.v2 import enable_controllers

            enable_controllers(self.unified_root or "", unified, ("hugetlb",))
            return unified

        return enable

    # processes -------------------------------------------------------------
    def _procs_dir(self) -> str:
        for ctrl in ("pids", "memory", "freezer", "cpu", "devices"):
            if ctrl in self.dirs:
                return self.dirs[ctrl]
        return next(iter(self.paths.values()))

    def pids(self) -> list[int]:
        return read_pids(self._procs_dir())

    def freeze(self) -> None:
        d = self.dirs.get("freezer")
        if d is None:
            unified = self.paths.get("unified")
            if unified and fs.exists(unified, "cgroup.freeze"):
                from berth.cgroups.v2 import freeze_v2

                freeze_v2(unified, True)
                return
            raise UnavailableError("freeze cgroup: no freezer hierarchy is mounted")
        fs.write(d, "freezer.state", "FROZEN")
        try:
            wait_until(lambda: fs.read(d, "freezer.state") == "FROZEN", 5.0, "freeze cgroup", d)
        except ConflictError:
            # a task stuck in an uninterruptible sleep keeps the cgroup FREEZING:
            # thaw rather than leave it half frozen
            fs.write(d, "freezer.state", "THAWED")
            raise

    def thaw(self) -> None:
        d = self.dirs.get("freezer")
        if d is None:
            unified = self.paths.get("unified")
            if unified and fs.exists(unified, "cgroup.freeze"):
                from berth.cgroups.v2 import freeze_v2

                freeze_v2(unified, False)
                return
            raise UnavailableError("thaw cgroup: no freezer hierarchy is mounted")
        fs.write(d, "freezer.state", "THAWED")
        wait_until(lambda: fs.read(d, "freezer.state") == "THAWED", 5.0, "thaw cgroup", d)

    def is_frozen(self) -> bool:
        d = self.dirs.get("freezer")
        if d is None:
            unified = self.paths.get("unified")
            if unified and fs.exists(unified, "cgroup.freeze"):
                return fs.read(unified, "cgroup.freeze") == "1"
            return False
        if not os.path.isdir(d):
            return False
        return fs.read(d, "freezer.state") in ("FROZEN", "FREEZING")

    def kill_all(self, sig: int) -> None:
        unified = self.paths.get("unified")
        if sig == SIGKILL and unified and fs.exists(unified, "cgroup.kill"):
            # the kernel kills the whole unified subtree, forks included; a
            # plain sweep catches anything put only into the v1 hierarchies
            fs.write(unified, "cgroup.kill", "1")
            signal_pids(self.pids(), sig)
            if self.is_frozen():
                self.thaw()  # frozen v1 tasks die only once thawed
            return
        # freeze so nothing forks between listing and signalling (what runc does)
        d = self.dirs.get("freezer")
        frozen = False
        if d is not None and os.path.isdir(d) and not self.is_frozen():
            try:
                self.freeze()
                frozen = True
            except ConflictError:
                frozen = False
        # a paused container: SIGKILL must thaw it, or its frozen tasks
        # never get to die (v1 freezer); other signals wait for resume
        was_frozen = not frozen and sig == SIGKILL and self.is_frozen()
        try:
            signal_pids(self.pids(), sig)
        finally:
            if frozen or was_frozen:
                self.thaw()


def _inherit_cpuset(created: list[str]) -> None:
    """A new v1 cpuset cgroup starts with empty cpus and mems, and takes no
    process until they are set (ENOSPC): copy them down from the parent."""
    for d in created:
        for name in ("cpuset.cpus", "cpuset.mems"):
            if fs.read(d, name) == "":
                fs.write(d, name, _cpuset_of(os.path.dirname(d), name))


def _cpuset_of(d: str, name: str) -> str:
    """`d`'s cpuset value, filled in from its ancestors first when it is
    still empty: a shared parent (berth's /berth) that another container's
    create has just made, but not yet filled in, is empty for a moment, and
    a child made under it then would copy nothing."""
    value = fs.read(d, name)
    if value == "" and os.path.isfile(os.path.join(os.path.dirname(d), name)):
        value = _cpuset_of(os.path.dirname(d), name)
        fs.write(d, name, value)
    return value
