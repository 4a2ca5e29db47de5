"""Where the cgroup hierarchies are, which mode the host runs, and where a
container's cgroup goes in each hierarchy.

Vocabulary:

- *mode*: ``"v2"`` (one cgroup2 hierarchy at the root), ``"v1"`` (one cgroup
  v1 hierarchy per controller set), ``"hybrid"`` (v1 hierarchies plus a
  cgroup2 mount at ``<root>/unified`` holding no or few controllers).
- *hierarchy key*: how /proc/self/cgroup names a hierarchy: ``"cpu,cpuacct"``,
  ``"memory"``, ``"name=systemd"``; ``"unified"`` for the cgroup2 mount of a
  hybrid host; ``""`` for the only hierarchy of a v2 host.
- *cgroups path*: the config's ``linux.cgroupsPath``. Absolute paths start at
  each hierarchy's root; relative ones at the calling process's own cgroup in
  that hierarchy (what runc does with its cgroupfs driver).

Detection costs two stat calls and, on v1/hybrid, one read of the small
/proc/self/cgroup; /proc/self/mountinfo is read only when a hierarchy is not
mounted where its name says.
"""


import os

from berth.errors import InvalidArgumentError, NotImplementedYetError, UnavailableError

DEFAULT_ROOT = "/sys/fs/cgroup"
DEFAULT_PARENT = "/berth"


def detect_mode(root: str = DEFAULT_ROOT) -> str:
    """``"v2"``, ``"hybrid"`` or ``"v1"``: only cgroup2 has ``cgroup.controllers``
    in its root directory."""
    if os.path.exists(f"{root}/cgroup.controllers"):
        return "v2"
    if os.path.exists(f"{root}/unified/cgroup.controllers"):
        return "hybrid"
    if os.path.isdir(root) and os.listdir(root):
        return "v1"
    raise UnavailableError(f"detect cgroup mode at {root}: no cgroup hierarchy mounted")


def own_cgroups(pid: int | str = "self") -> dict[str, str]:
    """The hierarchy key -> cgroup path of a process, from /proc/PID/cgroup."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            parts = line.split(":", 2)
            if len(parts) == 3:
                out[parts[1]] = parts[2]
    return out


def _mountinfo_v1(root: str) -> dict[str, str]:
    """hierarchy key -> mount point, for cgroup v1 mounts under `root`."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            sep = fields.index("-")
            fstype, opts = fields[sep + 1], fields[sep + 3]
            mnt = fields[4]
            if fstype != "cgroup" or not mnt.startswith(root):
                continue
            names = [o for o in opts.split(",") if o not in ("rw", "ro") and "=" not in o]
            names += [o for o in opts.split(",") if o.startswith("name=")]
            key = ",".join(names)
            out.setdefault(key, mnt)
    return out


def v1_hierarchies(root: str = DEFAULT_ROOT, own: dict[str, str] | None = None) -> dict[str, str]:
    """hierarchy key -> mount point of every cgroup v1 hierarchy this process is in
    (named hierarchies other than name=systemd are left alone, as runc does)."""
    own = own_cgroups() if own is None else own
    out: dict[str, str] = {}
    missing = []
    for key in own:
        if key == "" or (key.startswith("name=") and key != "name=systemd"):
            continue
        d = f"{root}/{key[5:]}" if key.startswith("name=") else f"{root}/{key}"
        if os.path.isdir(d):
            out[key] = d
        else:
            missing.append(key)
    if missing:
        found = _mountinfo_v1(root)
        for key in missing:
            want = set(key.split(","))
            for k, mnt in found.items():
                if set(k.split(",")) == want:
                    out[key] = mnt
                    break
    return out


def check_cgroups_path(cgroups_path: str, container_id: str) -> str:
    """The cgroups path to use for `cgroups_path` ('' -> /berth/<id>), checked."""
    if not cgroups_path:
        if not container_id or "/" in container_id or container_id in (".", ".."):
            raise InvalidArgumentError(f"cgroup path for container {container_id!r}: bad id")
        return f"{DEFAULT_PARENT}/{container_id}"
    if ":" in cgroups_path and not cgroups_path.startswith("/"):
        # "slice:prefix:name" is the systemd driver's syntax
        raise NotImplementedYetError(
            f"cgroup path {cgroups_path}: systemd cgroup driver paths are not supported yet"
        )
    parts = cgroups_path.split("/")
    if ".." in parts or "\0" in cgroups_path:
        raise InvalidArgumentError(f"cgroup path {cgroups_path}: must not contain '..'")
    if not [p for p in parts if p and p != "."]:
        raise InvalidArgumentError(f"cgroup path {cgroups_path}: names the root cgroup")
    return cgroups_path


def join(mount: str, own: str, cgroups_path: str) -> str:
    """The directory of `cgroups_path` in the hierarchy mounted at `mount`, for a
    process whose own cgroup there is `own`."""
    base = mount if cgroups_path.startswith("/") else mount + own.rstrip("/")
    rel = "/".join(p for p in cgroups_path.split("/") if p and p != ".")
    return f"{base}/{rel}"


def resolve_paths(
    cgroups_path: str,
    container_id: str,
    root: str = DEFAULT_ROOT,
    mode: str | None = None,
) -> tuple[str, dict[str, str]]:
    """(mode, hierarchy key -> absolute directory of the container's cgroup)."""
    path = check_cgroups_path(cgroups_path, container_id)
    mode = mode or detect_mode(root)
    relative = not path.startswith("/")
    if mode == "v2":
        own = own_cgroups() if relative else {}
        return mode, {"": join(root, own.get("", "/"), path)}
    own = own_cgroups()
    paths = {
        key: join(mnt, own.get(key, "/"), path) for key, mnt in v1_hierarchies(root, own).items()
    }
    if mode == "hybrid":
        paths["unified"] = join(f"{root}/unified", own.get("", "/"), path)
    if not paths:
        raise UnavailableError(f"open cgroup {path}: no cgroup v1 hierarchy found under {root}")
    return mode, paths
