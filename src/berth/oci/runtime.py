"""The OCI runtime-spec config.json: defaults, validation, field access.

The runtime keeps the config as the parsed JSON dict (that is what hooks,
`state` and the engine exchange) and validates it once, here, before anything
is created. Validation raises InvalidArgumentError naming the field, e.g.
``config.json: linux.namespaces[2].type: unknown namespace type "pdi"``.

This module is on the runtime's start-up path: no dataclasses, no re.
"""

from berth import OCI_VERSION
from berth.errors import InvalidArgumentError
from berth.oci.rlimits import RLIMIT_TYPES

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")

HOOK_KINDS = (
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
)

DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

DEFAULT_MASKED_PATHS = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
DEFAULT_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def default_spec(rootless: bool = False) -> dict:
    """The config.json `berth-runtime spec` writes: runc's defaults."""
    caps = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    spec: dict = {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [DEFAULT_PATH_ENV, "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": list(caps),
                "effective": list(caps),
                "permitted": list(caps),
                "ambient": list(caps),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": [
                    "nosuid",
                    "noexec",
                    "newinstance",
                    "ptmxmode=0666",
                    "mode=0620",
                    "gid=5",
                ],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
                {"type": "cgroup"},
            ],
            "maskedPaths": list(DEFAULT_MASKED_PATHS),
            "readonlyPaths": list(DEFAULT_READONLY_PATHS),
        },
    }
    if rootless:
        import os

        linux = spec["linux"]
        del linux["resources"]
        linux["uidMappings"] = [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
        linux["gidMappings"] = [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
        linux["namespaces"] = [
            {"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup", "user")
        ]
        # a user namespace cannot make a new sysfs for a netns it does not own,
        # and cannot set gid=5 on devpts without a mapping for it
        for m in spec["mounts"]:
            if m["destination"] == "/sys":
                m.update(
                    type="none", source="/sys", options=["rbind", "nosuid", "noexec", "nodev", "ro"]
                )
            elif m["destination"] == "/dev/pts":
                m["options"] = [o for o in m["options"] if o != "gid=5"]
    return spec


def _fail(field: str, problem: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"config.json: {field}: {problem}", field=field)


def _want(value: object, types: type | tuple, field: str, what: str) -> None:
    if not isinstance(value, types) or (types is int and isinstance(value, bool)):
        raise _fail(field, f"must be {what}, not {type(value).__name__}")


def _str_list(value: object, field: str) -> None:
    _want(value, list, field, "a list of strings")
    for i, item in enumerate(value):  # type: ignore[arg-type]
        _want(item, str, f"{field}[{i}]", "a string")


def _abs_path(value: object, field: str) -> None:
    _want(value, str, field, "a path")
    if not value.startswith("/"):  # type: ignore[union-attr]
        raise _fail(field, f"{value!r} is not an absolute path")


def _mapping(value: object, field: str) -> None:
    _want(value, list, field, "a list of id mappings")
    for i, m in enumerate(value):  # type: ignore[arg-type]
        f = f"{field}[{i}]"
        _want(m, dict, f, "an object")
        for key in ("containerID", "hostID", "size"):
            if key not in m:
                raise _fail(f, f"{key} is missing")
            _want(m[key], int, f"{f}.{key}", "an integer")
            if m[key] < 0 or m[key] > 0xFFFFFFFF:
                raise _fail(f"{f}.{key}", f"{m[key]} is out of range")
        if m["size"] == 0:
            raise _fail(f"{f}.size", "must be at least 1")
        for key in ("containerID", "hostID"):
            if m[key] + m["size"] > 0xFFFFFFFF:
                raise _fail(f"{f}.size", f"{key} {m[key]} + size {m['size']} exceeds 4294967295")
    # the kernel's rules for /proc/<pid>/uid_map: at most 340 lines, no two
    # ranges overlapping on either side (it would answer a bare EINVAL)
    if len(value) > 340:  # type: ignore[arg-type]
        raise _fail(field, f"{len(value)} mappings, the kernel takes at most 340")  # type: ignore[arg-type]
    for side in ("containerID", "hostID"):
        ranges = sorted((m[side], m[side] + m["size"], i) for i, m in enumerate(value))  # type: ignore[arg-type]
        for k in range(1, len(ranges)):
            if ranges[k][0] < ranges[k - 1][1]:
                raise _fail(f"{field}[{ranges[k][2]}].{side}", f"overlaps {field}[{ranges[k - 1][2]}]")


def _mount_idmap(m: dict, field: str) -> None:
    """An id-mapped mount (runtime-spec 1.1): uidMappings and gidMappings on
    a bind mount, with the idmap or ridmap option (implied when absent)."""
    opts = m.get("options") or []
    maps = [k for k in ("uidMappings", "gidMappings") if k in m]
    wants = "idmap" in opts or "ridmap" in opts
    if not maps and not wants:
        return
    if len(maps) != 2:
        raise _fail(field, "an id-mapped mount needs both uidMappings and gidMappings")
    for key in maps:
        _mapping(m[key], f"{field}.{key}")
        if not m[key]:
            raise _fail(f"{field}.{key}", "is empty")
    if m.get("type") != "bind" and "bind" not in opts and "rbind" not in opts:
        raise _fail(field, "id mappings are only supported on bind mounts")


def _has_dotdot(path: str) -> bool:
    return ".." in path.split("/")


def validate_process(proc: object, field: str = "process") -> None:
    _want(proc, dict, field, "an object")
    args = proc.get("args")  # type: ignore[union-attr]
    if not args:
        raise _fail(f"{field}.args", "must name the program to run")
    _str_list(args, f"{field}.args")
    cwd = proc.get("cwd", "/")  # type: ignore[union-attr]
    _abs_path(cwd, f"{field}.cwd")
    if "env" in proc:  # type: ignore[operator]
        _str_list(proc["env"], f"{field}.env")  # type: ignore[index]
        for i, e in enumerate(proc["env"]):  # type: ignore[index]
            if "=" not in e:
                raise _fail(f"{field}.env[{i}]", f"{e!r} is not NAME=value")
    user = proc.get("user", {})  # type: ignore[union-attr]
    _want(user, dict, f"{field}.user", "an object")
    for key in ("uid", "gid", "umask"):
        if key in user:
            _want(user[key], int, f"{field}.user.{key}", "an integer")
            if user[key] < 0:
                raise _fail(f"{field}.user.{key}", "must not be negative")
    if "additionalGids" in user:
        _want(user["additionalGids"], list, f"{field}.user.additionalGids", "a list of integers")
        for i, g in enumerate(user["additionalGids"]):
            _want(g, int, f"{field}.user.additionalGids[{i}]", "an integer")
    for i, rl in enumerate(proc.get("rlimits") or []):  # type: ignore[union-attr]
        f = f"{field}.rlimits[{i}]"
        _want(rl, dict, f, "an object")
        if rl.get("type") not in RLIMIT_TYPES:
            raise _fail(f"{f}.type", f"unknown rlimit type {rl.get('type')!r}")
        for key in ("soft", "hard"):
            _want(rl.get(key), int, f"{f}.{key}", "an integer")
        if rl["soft"] > rl["hard"]:
            raise _fail(f, f"soft limit {rl['soft']} exceeds hard limit {rl['hard']}")
    caps = proc.get("capabilities")  # type: ignore[union-attr]
    if caps is not None:
        _want(caps, dict, f"{field}.capabilities", "an object")
        for kind, names in caps.items():
            if kind not in ("bounding", "effective", "inheritable", "permitted", "ambient"):
                raise _fail(f"{field}.capabilities.{kind}", "unknown capability set")
            _str_list(names, f"{field}.capabilities.{kind}")
    if "oomScoreAdj" in proc:  # type: ignore[operator]
        _want(proc["oomScoreAdj"], int, f"{field}.oomScoreAdj", "an integer")  # type: ignore[index]
        if not -1000 <= proc["oomScoreAdj"] <= 1000:  # type: ignore[index]
            raise _fail(f"{field}.oomScoreAdj", "must be between -1000 and 1000")
    cs = proc.get("consoleSize")  # type: ignore[union-attr]
    if cs is not None:
        _want(cs, dict, f"{field}.consoleSize", "an object")


def validate(cfg: object) -> dict:
    """Check a parsed config.json and return it. Checks types and values the
    runtime relies on; leaves to the kernel what only the kernel can judge."""
    _want(cfg, dict, "config.json", "a JSON object")
    assert isinstance(cfg, dict)
    _want(cfg.get("ociVersion"), str, "ociVersion", "a version string")
    root = cfg.get("root")
    if root is None:
        raise _fail("root", "is missing")
    _want(root, dict, "root", "an object")
    _want(root.get("path"), str, "root.path", "a path")
    if not root["path"]:
        raise _fail("root.path", "is empty")
    if "process" in cfg:
        validate_process(cfg["process"])
    for key in ("hostname", "domainname"):
        if key in cfg:
            _want(cfg[key], str, key, "a string")
    mounts = cfg.get("mounts", [])
    _want(mounts, list, "mounts", "a list")
    for i, m in enumerate(mounts):
        f = f"mounts[{i}]"
        _want(m, dict, f, "an object")
        dest = m.get("destination")
        _want(dest, str, f"{f}.destination", "a path")
        if not dest:
            raise _fail(f"{f}.destination", "is empty")
        if _has_dotdot(dest):
            raise _fail(f"{f}.destination", f"{dest!r} escapes the container's root filesystem")
        if "options" in m:
            _str_list(m["options"], f"{f}.options")
        for key in ("type", "source"):
            if key in m:
                _want(m[key], str, f"{f}.{key}", "a string")
        _mount_idmap(m, f)
    hooks = cfg.get("hooks", {})
    _want(hooks, dict, "hooks", "an object")
    for kind, entries in hooks.items():
        if kind not in HOOK_KINDS:
            raise _fail(f"hooks.{kind}", "unknown hook kind")
        _want(entries, list, f"hooks.{kind}", "a list")
        for i, h in enumerate(entries):
            f = f"hooks.{kind}[{i}]"
            _want(h, dict, f, "an object")
            _abs_path(h.get("path"), f"{f}.path")
            if "args" in h:
                _str_list(h["args"], f"{f}.args")
            if "env" in h:
                _str_list(h["env"], f"{f}.env")
            if "timeout" in h:
                _want(h["timeout"], int, f"{f}.timeout", "an integer")
                if h["timeout"] <= 0:
                    raise _fail(f"{f}.timeout", "must be positive")
    ann = cfg.get("annotations", {})
    _want(ann, dict, "annotations", "an object")
    for k, v in ann.items():
        _want(v, str, f"annotations.{k}", "a string")
    linux = cfg.get("linux", {})
    _want(linux, dict, "linux", "an object")
    seen = set()
    nss = linux.get("namespaces", [])
    _want(nss, list, "linux.namespaces", "a list")
    for i, ns in enumerate(nss):
        f = f"linux.namespaces[{i}]"
        _want(ns, dict, f, "an object")
        t = ns.get("type")
        if t not in NAMESPACE_TYPES:
            raise _fail(f"{f}.type", f"unknown namespace type {t!r}")
        if t in seen:
            raise _fail(f"{f}.type", f"namespace {t} given twice")
        seen.add(t)
        if ns.get("path"):
            _abs_path(ns["path"], f"{f}.path")
    for key in ("uidMappings", "gidMappings"):
        if key in linux:
            _mapping(linux[key], f"linux.{key}")
            if "user" not in seen and linux[key]:
                raise _fail(f"linux.{key}", "id mappings need a user namespace")
    new_userns = "user" in seen and not any(
        ns.get("path") for ns in nss if ns.get("type") == "user"
    )
    if new_userns and (not linux.get("uidMappings") or not linux.get("gidMappings")):
        raise _fail("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
    if "hostname" in cfg and cfg["hostname"] and "uts" not in seen:
        raise _fail("hostname", "setting a hostname needs a new uts namespace")
    sysctl = linux.get("sysctl", {})
    _want(sysctl, dict, "linux.sysctl", "an object")
    for k, v in sysctl.items():
        _want(v, str, f"linux.sysctl.{k}", "a string")
        if "/" in k.replace(".", "/") and (".." in k.split(".") or k.startswith("/")):
            raise _fail(f"linux.sysctl.{k}", "is not a sysctl name")
    for i, d in enumerate(linux.get("devices", [])):
        f = f"linux.devices[{i}]"
        _want(d, dict, f, "an object")
        _abs_path(d.get("path"), f"{f}.path")
        if _has_dotdot(d["path"]):
            raise _fail(f"{f}.path", "escapes the container's root filesystem")
        if d.get("type") not in ("c", "b", "u", "p"):
            raise _fail(f"{f}.type", f"unknown device type {d.get('type')!r}")
        if d["type"] != "p":
            for key in ("major", "minor"):
                _want(d.get(key), int, f"{f}.{key}", "an integer")
    for key in ("maskedPaths", "readonlyPaths"):
        if key in linux:
            _str_list(linux[key], f"linux.{key}")
            for i, p in enumerate(linux[key]):
                _abs_path(p, f"linux.{key}[{i}]")
    if "cgroupsPath" in linux:
        _want(linux["cgroupsPath"], str, "linux.cgroupsPath", "a string")
        if _has_dotdot(linux["cgroupsPath"]):
            raise _fail("linux.cgroupsPath", "must not contain '..'")
    if "resources" in linux:
        _want(linux["resources"], dict, "linux.resources", "an object")
    prop = linux.get("rootfsPropagation")
    if prop is not None and prop not in (
        "",
        "private",
        "rprivate",
        "slave",
        "rslave",
        "shared",
        "rshared",
        "unbindable",
        "runbindable",
    ):
        raise _fail("linux.rootfsPropagation", f"unknown propagation {prop!r}")
    return cfg


def namespaces(cfg: dict) -> dict[str, str]:
    """type -> path ('' for a new namespace) of the config's namespaces."""
    return {ns["type"]: ns.get("path") or "" for ns in cfg.get("linux", {}).get("namespaces", [])}
