"""Control groups for berth: one `CgroupManager` interface, implemented by
`CgroupV1` (cgroup v1 hosts, and hybrid hosts: v1 controllers plus the
cgroup2 mount at ``<root>/unified``) and `CgroupV2` (unified hosts).

Typical use by the runtime::

    mgr = open_manager(config_cgroups_path, container_id)
    mgr.create()
    mgr.apply(config["linux"]["resources"])
    mgr.add_process(init_pid)
    ...
    mgr.update({"memory": {"limit": 256 << 20}})   # rolled back on refusal
    mgr.freeze(); mgr.thaw(); mgr.pids(); mgr.kill_all(9)
    mgr.stats()                                     # runc `events --stats` data
    with mgr.watch_events() as w: w.wait(1.0)      # OOM / pids-limit events
    mgr.destroy()

A later process (``berth-runtime delete``) reopens the cgroup from the saved
`host_paths()` with `from_host_paths`, since a relative cgroups path depends
on the caller's own cgroup.

Also: `berth.cgroups.flags.resources_from_update_flags` turns ``runc update``
flags into the resources dict for `update`; `container_mounts()` and
`container_symlinks()` say what to bind at /sys/fs/cgroup inside the
container; `berth.cgroups.stats` documents the stats shape and
`berth.cgroups.events.EventWatcher` the events.

Errors (berth.errors): a value the kernel refuses is an InvalidArgumentError
``write <file>=<value> in <dir>: <reason>`` (data: path, value, errno); a
controller or file the host lacks is an UnavailableError; a cgroup that
cannot be removed or frozen in time is a ConflictError.

Imported on the runtime's start-up path: os, errno and berth's light modules
only; stats, events and the eBPF device filter load on first use.
"""


from berth.cgroups.base import CgroupManager
from berth.cgroups.hierarchy import DEFAULT_ROOT, detect_mode, resolve_paths

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing
if TYPE_CHECKING:
    from berth.cgroups.v1 import CgroupV1
    from berth.cgroups.v2 import CgroupV2


def __getattr__(name: str) -> object:
    # CgroupV1 / CgroupV2 load on first use: a host needs only one of them
    if name == "CgroupV1":
        from berth.cgroups.v1 import CgroupV1

        return CgroupV1
    if name == "CgroupV2":
        from berth.cgroups.v2 import CgroupV2

        return CgroupV2
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def open_manager(
    cgroups_path: str,
    container_id: str,
    *,
    root: str = DEFAULT_ROOT,
    mode: str | None = None,
) -> CgroupManager:
    """The manager of the cgroup named by a config's ``linux.cgroupsPath``
    ('' -> ``/berth/<container_id>``; absolute = from each hierarchy's root;
    relative = under the caller's own cgroup; ``..`` refused). Nothing is
    created until `create()`."""
    mode, paths = resolve_paths(cgroups_path, container_id, root, mode)
    if mode == "v2":
        from berth.cgroups.v2 import CgroupV2

        return CgroupV2(paths[""], root)
    from berth.cgroups.v1 import CgroupV1

    return CgroupV1(paths, unified_root=f"{root}/unified" if mode == "hybrid" else None)


def from_host_paths(paths: dict[str, str], *, root: str = DEFAULT_ROOT) -> CgroupManager:
    """The manager of a cgroup from a saved `CgroupManager.host_paths()`."""
    if set(paths) == {""}:
        from berth.cgroups.v2 import CgroupV2

        return CgroupV2(paths[""], root)
    from berth.cgroups.v1 import CgroupV1

    return CgroupV1(paths, unified_root=f"{root}/unified" if "unified" in paths else None)


__all__ = [
    "CgroupManager",
    "CgroupV1",
    "CgroupV2",
    "detect_mode",
    "from_host_paths",
    "open_manager",
]
