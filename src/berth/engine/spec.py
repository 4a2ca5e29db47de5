"""Image config + a container's Docker config -> OCI config.json, as Docker's
daemon builds it (moby daemon/oci_linux.go, oci/defaults.go): process (args,
env, cwd, user with names resolved from the image's /etc/passwd and
/etc/group), default capabilities, masked and read-only paths, the default
seccomp profile, default mounts, /etc/hostname, /etc/hosts and
/etc/resolv.conf per container, resources, and `--privileged`.
"""

from __future__ import annotations

import os

from berth import OCI_VERSION
from berth.engine.options import SIGNALS, ULIMITS
from berth.errors import InvalidArgumentError, NotFoundError
from berth.runtime import confinement

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from typing import Any

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
INIT_PATH = "/sbin/docker-init"  # where Docker puts its --init (tini)
INIT_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init.c")


def init_binary(bin_dir: str) -> str:
    """berth-init (init.c) built for this machine, static, under `bin_dir`
    (named by the source's digest); built with the system's C compiler on
    first use."""
    import hashlib
    import shutil
    import subprocess

    from berth.errors import UnavailableError

    with open(INIT_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    path = os.path.join(bin_dir, f"berth-init-{digest}")
    if os.path.exists(path):
        return path
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise UnavailableError("--init: building berth-init needs a C compiler "
                               "(apt install gcc libc6-dev)")
    os.makedirs(bin_dir, mode=0o755, exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    p = subprocess.run([cc, "-static", "-Os", "-s", "-o", tmp, INIT_SOURCE],
                       capture_output=True, text=True, check=False)
    if p.returncode != 0:
        raise UnavailableError(f"--init: build berth-init: {p.stderr.strip()}")
    os.chmod(tmp, 0o755)
    os.rename(tmp, path)
    return path

# Docker's default device cgroup allowlist (oci/devices_linux.go DefaultLinuxSpec)
DEFAULT_DEVICE_RULES: list[dict[str, Any]] = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
    {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "rwm"},
]

ALL_CAPABILITIES = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
]


def _known_caps() -> list[str]:
    """The capabilities this kernel knows (cap_last_cap)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            last = int(f.read())
    except (OSError, ValueError):
        return ALL_CAPABILITIES
    return ALL_CAPABILITIES[: last + 1]


def _bounding() -> int:
    """This process's capability bounding set: `--privileged` grants all of
    it (a capability the engine lacks cannot be given to a container)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapBnd:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return (1 << 64) - 1


def capabilities(cap_add: list[str], cap_drop: list[str], privileged: bool) -> list[str]:
    """Docker's TweakCapabilities: defaults, minus drops, plus adds; ALL works
    in both; names with or without CAP_, any case."""
    known = _known_caps()

    def norm(name: str) -> str:
        n = name.upper()
        if n == "ALL":
            return n
        n = n if n.startswith("CAP_") else f"CAP_{n}"
        if n not in ALL_CAPABILITIES:
            raise InvalidArgumentError(f"unknown capability: \"{n}\"")
        return n

    if privileged:
        return [c for i, c in enumerate(known) if _bounding() >> i & 1]
    adds = [norm(c) for c in cap_add]
    drops = [norm(c) for c in cap_drop]
    if "ALL" in adds:
        return [c for c in known if c not in drops]
    caps = [] if "ALL" in drops else [c for c in confinement.DEFAULT_CAPABILITIES
                                      if c not in drops]
    for c in adds:
        if c not in caps:
            caps.append(c)
    return caps


# users ---------------------------------------------------------------------------------


def _read_in_root(rootfs: str, path: str) -> str | None:
    """A file of the container's rootfs, resolved inside it (symlinks cannot
    lead out: openat2 RESOLVE_IN_ROOT)."""
    from berth.linux import libc

    try:
        dfd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = libc.openat2(dfd, path.lstrip("/"), os.O_RDONLY | os.O_CLOEXEC,
                          resolve=libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS)
    except OSError:
        return None
    finally:
        os.close(dfd)
    with os.fdopen(fd, "rb") as f:
        return f.read(4 << 20).decode(errors="replace")


def _entries(text: str | None) -> list[list[str]]:
    out = []
    for line in (text or "").splitlines():
        if line and not line.startswith("#"):
            out.append(line.split(":"))
    return out


def resolve_user(rootfs: str, user: str) -> dict[str, Any]:
    """OCI process.user for Docker's `user[:group]` (names or ids), with the
    supplementary groups /etc/group gives the user when no group is named.
    Errors as Docker's."""
    name, _, group = (user or "0").partition(":")
    passwd = _entries(_read_in_root(rootfs, "/etc/passwd"))
    uid = gid = -1
    uname = ""
    if name.isdigit():
        uid = int(name)
        for e in passwd:
            if len(e) >= 4 and e[2] == name:
                uname, gid = e[0], int(e[3]) if e[3].isdigit() else 0
                break
        if gid < 0:
            gid = 0
    else:
        for e in passwd:
            if len(e) >= 4 and e[0] == name:
                uname, uid, gid = name, int(e[2]), int(e[3])
                break
        if uid < 0:
            if not passwd:
                raise NotFoundError(f"unable to find user {name}: no matching entries in "
                                    "passwd file")
            raise NotFoundError(f"unable to find user {name}: no matching entries in passwd "
                                "file")
    groups = _entries(_read_in_root(rootfs, "/etc/group"))
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            for e in groups:
                if len(e) >= 3 and e[0] == group:
                    gid = int(e[2])
                    break
            else:
                raise NotFoundError(f"unable to find group {group}: no matching entries in "
                                    "group file")
    extra = []
    # runc (libcontainer/user GetExecUser): supplementary groups from
    # /etc/group only in the implicit form; `-u name:group` sets them to none
    if uname and not group:
        for e in groups:
            if len(e) >= 4 and uname in e[3].split(",") and e[2].isdigit():
                g = int(e[2])
                if g != gid and g not in extra:
                    extra.append(g)
    out: dict[str, Any] = {"uid": uid, "gid": gid}
    if extra:
        out["additionalGids"] = extra
    return out


# files the engine makes per container ----------------------------------------------------


def write_etc_files(bundle: str, hostname: str, network: str) -> dict[str, str]:
    """hostname, hosts and resolv.conf in the bundle, bind-mounted into the
    container; returns their paths."""
    paths = {k: os.path.join(bundle, k) for k in ("hostname", "hosts", "resolv.conf")}
    _write(paths["hostname"], hostname + "\n")
    if network == "host":
        hosts = _host_file("/etc/hosts", "127.0.0.1\tlocalhost\n")
    else:
        hosts = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
                 "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
    _write(paths["hosts"], hosts)
    resolv = _host_file("/etc/resolv.conf", "")
    if network != "host":
        # a loopback resolver of the host is unreachable from the container's
        # own network namespace (Docker drops it and falls back to public ones)
        lines = [ln for ln in resolv.splitlines()
                 if not (ln.startswith("nameserver") and
                         (ln.split()[1:2] or [""])[0].startswith(("127.", "::1")))]
        resolv = "\n".join(lines) + "\n" if lines else ""
        if "nameserver" not in resolv:
            resolv += "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    _write(paths["resolv.conf"], resolv)
    return paths


def write_dns_options(etc: dict[str, str], host_config: dict[str, Any]) -> None:
    """--add-host, --dns, --dns-search and --dns-option of a container with
    no network of its own (--network none), which Docker writes too; a
    networked container gets them from its network attach."""
    hosts = host_config.get("ExtraHosts") or []
    dns = {k: list(host_config.get(k) or []) for k in ("Dns", "DnsSearch", "DnsOptions")}
    if not hosts and not any(dns.values()):
        return  # the common case: berth.network not imported
    from berth.network.files import hosts_content, resolv_conf_content

    if hosts:
        _write(etc["hosts"], hosts_content("", (), hosts))
    if any(dns.values()):
        _write(etc["resolv.conf"], resolv_conf_content(
            embedded_dns=False, dns=dns["Dns"], dns_search=dns["DnsSearch"],
            dns_options=dns["DnsOptions"]))


def _host_file(path: str, default: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


# the spec ------------------------------------------------------------------------------


def _default_mounts(privileged: bool, network: str) -> list[dict[str, Any]]:
    sys_opts = ["nosuid", "noexec", "nodev", "ro" if not privileged else "rw"]
    return [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": sys_opts},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["ro", "nosuid", "noexec", "nodev"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=67108864"]},
    ]


def process_args(config: dict[str, Any]) -> list[str]:
    args = list(config.get("Entrypoint") or []) + list(config.get("Cmd") or [])
    if not args:
        raise InvalidArgumentError("no command specified")
    return args


def build(
    cid: str,
    config: dict[str, Any],
    host_config: dict[str, Any],
    rootfs: str,
    etc_files: dict[str, str],
    mounts: list[dict[str, Any]],
    seccomp_profile: Any = None,
    joins: dict[str, int] | None = None,
    init_binary: str = "",
) -> dict[str, Any]:
    """The OCI config.json of a container. `config`/`host_config` are the
    Docker-shaped records; `mounts` the user mounts already translated to OCI
    (volume paths resolved); `rootfs` is mounted (users are resolved in it)."""
    hc = host_config
    privileged = bool(hc.get("Privileged"))
    network = hc.get("NetworkMode") or "none"
    caps = capabilities(hc.get("CapAdd") or [], hc.get("CapDrop") or [], privileged)
    security = _security_opts(hc.get("SecurityOpt") or [])
    env = list(config.get("Env") or [])
    if not any(e.startswith("PATH=") for e in env):
        env.insert(0, f"PATH={DEFAULT_PATH}")
    env.insert(0, f"HOSTNAME={config.get('Hostname') or cid[:12]}")
    if config.get("Tty") and not any(e.startswith("TERM=") for e in env):
        env.append("TERM=xterm")
    args = process_args(config)
    if hc.get("Init"):
        args = [INIT_PATH, "--", *args]
    process: dict[str, Any] = {
        "terminal": bool(config.get("Tty")),
        "user": resolve_user(rootfs, config.get("User") or ""),
        "args": args,
        "env": env,
        "cwd": config.get("WorkingDir") or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": security["no-new-privileges"],
        "oomScoreAdj": 0,
    }
    if process["user"]["uid"] != 0:
        # a non-root process has no effective capabilities after exec (Docker 23+)
        process["capabilities"]["effective"] = []
    rlimits = []
    for ul in hc.get("Ulimits") or []:
        rlimits.append({"type": ULIMITS[ul["Name"]], "soft": ul["Soft"], "hard": ul["Hard"]})
    if rlimits:
        process["rlimits"] = rlimits
    oci_mounts = _default_mounts(privileged, network)
    if network == "host":
        # sysfs of another network namespace cannot be mounted: bind the host's
        oci_mounts[3] = {"destination": "/sys", "type": "bind", "source": "/sys",
                         "options": ["rbind", "nosuid", "noexec", "nodev",
                                     "rw" if privileged else "ro"]}
    if not (hc.get("Tmpfs") or {}).get("/dev/shm") and hc.get("ShmSize"):
        oci_mounts[6]["options"][-1] = f"size={hc['ShmSize']}"
    for name in ("resolv.conf", "hostname", "hosts"):
        oci_mounts.append({"destination": f"/etc/{name}", "type": "bind",
                           "source": etc_files[name], "options": ["rbind", "rprivate"]})
    for target, opts in (hc.get("Tmpfs") or {}).items():
        oci_mounts = [m for m in oci_mounts if m["destination"] != target]
        options = ["nosuid", "nodev", "noexec"] + [o for o in opts.split(",") if o]
        oci_mounts.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                           "options": options})
    oci_mounts.extend(mounts)
    if hc.get("Init"):
        if not init_binary:
            raise InvalidArgumentError("--init: no init binary given")
        oci_mounts.append({"destination": INIT_PATH, "type": "bind", "source": init_binary,
                           "options": ["bind", "ro", "nosuid", "nodev"]})
    namespaces = _namespaces(hc, joins or {})
    devices, rules = _devices(hc.get("Devices") or [])
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "devices": devices,
        "cgroupsPath": f"/berth/{cid}",
        "resources": _resources(hc, privileged, rules),
        "sysctl": dict(hc.get("Sysctls") or {}),
    }
    if not privileged:
        linux["maskedPaths"] = confinement.masked_paths()
        linux["readonlyPaths"] = list(confinement.DEFAULT_READONLY_PATHS)
        if security["seccomp"] != "unconfined":
            if security["seccomp"]:
                linux["seccomp"] = _seccomp_file(security["seccomp"])
            else:
                linux["seccomp"] = (seccomp_profile if seccomp_profile is not None
                                    else confinement.default_seccomp_profile(caps))
    if not security["systempaths"]:
        linux.pop("maskedPaths", None)
        linux.pop("readonlyPaths", None)
    if not linux["sysctl"]:
        del linux["sysctl"]
    return {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs", "readonly": bool(hc.get("ReadonlyRootfs"))},
        "hostname": ((config.get("Hostname") or cid[:12])
                     if any(n["type"] == "uts" and "path" not in n for n in namespaces) else ""),
        "mounts": oci_mounts,
        "linux": linux,
        "annotations": {"berth.container.id": cid},
    }


NS_FILES = {"pid": "pid", "ipc": "ipc", "uts": "uts", "network": "net"}
MODE_KEYS = {"pid": "PidMode", "ipc": "IpcMode", "uts": "UTSMode", "network": "NetworkMode"}


def _namespaces(hc: dict[str, Any], joins: dict[str, int]) -> list[dict[str, Any]]:
    """A new namespace of each kind, none for `host` (the engine's own), or
    another container's (`container:<ref>`, whose init pid is in `joins`)."""
    out: list[dict[str, Any]] = []
    for kind in ("pid", "ipc", "uts", "mount", "network"):
        mode = hc.get(MODE_KEYS.get(kind, ""), "") or ""
        if mode == "host":
            continue
        if mode.startswith("container:"):
            out.append({"type": kind, "path": f"/proc/{joins[kind]}/ns/{NS_FILES[kind]}"})
            continue
        out.append({"type": kind})
    return out


def check_mode(kind: str, mode: str) -> None:
    """Docker's values for --pid/--ipc/--uts/--network (bridge networking is
    not here yet)."""
    allowed = {"pid": ("", "host"), "ipc": ("", "host", "private", "shareable", "none"),
               "uts": ("", "host"), "network": ("", "none", "host", "default", "bridge")}
    if mode in allowed[kind] or (mode.startswith("container:") and kind != "uts"
                                 and len(mode) > len("container:")):
        return
    flag = {"network": "--network", "pid": "--pid", "ipc": "--ipc", "uts": "--uts"}[kind]
    raise InvalidArgumentError(f"invalid {flag}: {mode}")


def _devices(devs: list[dict[str, str]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """--device: OCI linux.devices (the node made in the container) and the
    device cgroup rules allowing them."""
    import stat

    out, rules = [], []
    for d in devs:
        host = d["PathOnHost"]
        try:
            st = os.stat(host)
        except OSError as exc:
            raise InvalidArgumentError(f"error gathering device information while adding "
                                       f"custom device \"{host}\": "
                                       f"{os.strerror(exc.errno or 0).lower()}") from None
        if stat.S_ISCHR(st.st_mode):
            kind = "c"
        elif stat.S_ISBLK(st.st_mode):
            kind = "b"
        else:
            raise InvalidArgumentError(f"error gathering device information while adding "
                                       f"custom device \"{host}\": not a device node")
        major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        out.append({"path": d["PathInContainer"], "type": kind, "major": major, "minor": minor,
                    "fileMode": st.st_mode & 0o777, "uid": 0, "gid": 0})
        rules.append({"allow": True, "type": kind, "major": major, "minor": minor,
                      "access": d["CgroupPermissions"]})
    return out, rules


def _resources(hc: dict[str, Any], privileged: bool,
               device_rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "devices": ([{"allow": True, "access": "rwm"}] if privileged
                    else [dict(d) for d in DEFAULT_DEVICE_RULES] + list(device_rules or [])),
    }
    mem: dict[str, int] = {}
    if hc.get("Memory"):
        mem["limit"] = hc["Memory"]
        swap = hc.get("MemorySwap") or 0
        # Docker: unset swap = twice the memory limit (swap of the same size)
        mem["swap"] = hc["Memory"] * 2 if swap == 0 else swap
    if hc.get("MemoryReservation"):
        mem["reservation"] = hc["MemoryReservation"]
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if hc.get("NanoCpus"):
        cpu["period"] = 100000
        cpu["quota"] = hc["NanoCpus"] * 100000 // 1_000_000_000
    if hc.get("CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if cpu:
        res["cpu"] = cpu
    if hc.get("PidsLimit"):
        res["pids"] = {"limit": hc["PidsLimit"]}
    return res


def _security_opts(opts: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"seccomp": "", "no-new-privileges": False, "systempaths": True}
    for opt in opts:
        key, sep, val = opt.partition("=" if "=" in opt else ":")
        if key == "seccomp":
            out["seccomp"] = val
        elif key == "no-new-privileges":
            out["no-new-privileges"] = val in ("", "true") if sep else True
        elif key == "systempaths":
            if val != "unconfined":
                raise InvalidArgumentError(f"invalid --security-opt: {opt!r}")
            out["systempaths"] = False
        elif key in ("apparmor", "label"):
            continue  # no LSM here: accepted and ignored, as Docker without one
        else:
            raise InvalidArgumentError(f"invalid --security-opt: {opt!r}")
    return out


def _seccomp_file(path: str) -> dict[str, Any]:
    from berth import jsonio

    try:
        profile = jsonio.load_file(path)
    except OSError as exc:
        raise InvalidArgumentError(f"opening seccomp profile ({path}) failed: "
                                   f"{os.strerror(exc.errno or 0).lower()}") from None
    except ValueError as exc:
        raise InvalidArgumentError(f"decoding seccomp profile failed: {exc}") from None
    if not isinstance(profile, dict):
        raise InvalidArgumentError("decoding seccomp profile failed: not an object")
    out = {k: v for k, v in profile.items() if k in ("defaultAction", "defaultErrnoRet",
                                                     "architectures", "syscalls", "flags")}
    if "archMap" in profile and "architectures" not in out:
        from berth.runtime.confinement import native_arch

        native = native_arch()
        for entry in profile["archMap"]:
            if entry.get("architecture") == native:
                out["architectures"] = [native, *entry.get("subArchitectures", [])]
    return out


def stop_signal(config: dict[str, Any]) -> int:
    name = config.get("StopSignal") or "SIGTERM"
    from berth.engine.options import parse_signal

    return parse_signal(name)


__all__ = ["SIGNALS", "build", "capabilities", "resolve_user", "write_etc_files"]
