"""Docker's option values, parsed (pure functions, no I/O except env files).

Error messages follow the Docker CLI's where a user would compare them, e.g.
``invalid argument "12q" for "-m, --memory" flag: invalid size: '12q'``.
"""

from __future__ import annotations

import os

from berth.errors import InvalidArgumentError
from berth.structs import dataclass, field

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}

SIGNALS = {
    "HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "TRAP": 5, "ABRT": 6, "IOT": 6, "BUS": 7,
    "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14,
    "TERM": 15, "STKFLT": 16, "CHLD": 17, "CONT": 18, "STOP": 19, "TSTP": 20, "TTIN": 21,
    "TTOU": 22, "URG": 23, "XCPU": 24, "XFSZ": 25, "VTALRM": 26, "PROF": 27, "WINCH": 28,
    "IO": 29, "POLL": 29, "PWR": 30, "SYS": 31,
}

ULIMITS = {
    "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
    "fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK",
    "msgqueue": "RLIMIT_MSGQUEUE", "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE",
    "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS", "rtprio": "RLIMIT_RTPRIO",
    "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
    "as": "RLIMIT_AS",
}


def flag_error(value: str, flag: str, reason: str) -> InvalidArgumentError:
    return InvalidArgumentError(f'invalid argument "{value}" for "{flag}" flag: {reason}')


def parse_size(value: str, flag: str = "-m, --memory") -> int:
    """Docker's RAMInBytes: 512, 64k, 1.5g, 100MB, 1GiB (binary units)."""
    text = value.strip().lower()
    num = text.rstrip("kmgtpbi")
    unit = text[len(num):]
    if unit.endswith("ib"):
        unit = unit[:-2]
    elif unit.endswith("b") and len(unit) == 2:
        unit = unit[:-1]
    try:
        n = float(num)
    except ValueError:
        n = -1.0
    if not num or n < 0 or unit not in _UNITS:
        raise flag_error(value, flag, f"invalid size: '{value}'")
    return int(n * _UNITS[unit])


def parse_memory_swap(value: str) -> int:
    if value == "-1":
        return -1
    return parse_size(value, "--memory-swap")


def parse_cpus(value: str) -> int:
    """--cpus in nano-CPUs."""
    try:
        n = float(value)
    except ValueError:
        raise flag_error(value, "--cpus", f"failed to parse {value} as a rational number")
    if n < 0:
        raise flag_error(value, "--cpus", "range of CPUs is from 0.01 to the number of CPUs")
    return int(n * 1e9)


def parse_signal(value: str) -> int:
    v = value.upper().removeprefix("SIG")
    if v.isdigit():
        n = int(v)
        if 0 < n < 65:
            return n
    elif v in SIGNALS:
        return SIGNALS[v]
    elif v.startswith("RTMIN"):
        off = v[5:].lstrip("+")
        if not off or off.isdigit():
            return 34 + int(off or 0)
    raise InvalidArgumentError(f"Invalid signal: {value}")


def signal_name(n: int) -> str:
    for name, num in SIGNALS.items():
        if num == n and name not in ("IOT", "POLL"):
            return f"SIG{name}"
    return str(n)


def parse_duration(value: str, flag: str) -> int:
    """A Go duration (1m30s, 500ms, 2h) in nanoseconds."""
    units = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
             "m": 60_000_000_000, "h": 3_600_000_000_000}
    text, total, i = value.strip(), 0.0, 0
    if text == "0":
        return 0
    if not text:
        raise flag_error(value, flag, f'time: invalid duration "{value}"')
    while i < len(text):
        j = i
        while j < len(text) and (text[j].isdigit() or text[j] == "."):
            j += 1
        k = j
        while k < len(text) and not (text[k].isdigit() or text[k] == "."):
            k += 1
        num, unit = text[i:j], text[j:k]
        if not num or unit not in units:
            raise flag_error(value, flag, f'time: invalid duration "{value}"')
        total += float(num) * units[unit]
        i = k
    return int(total)


def parse_env(values: list[str], lookup: dict[str, str] | None = None) -> list[str]:
    """-e KEY=VALUE, or -e KEY (taken from the CLI's environment if set,
    dropped otherwise, as Docker)."""
    env = os.environ if lookup is None else lookup
    out = []
    for v in values:
        if "=" in v:
            if v.startswith("="):
                raise InvalidArgumentError(f"invalid environment variable: {v}")
            out.append(v)
        elif v in env:
            out.append(f"{v}={env[v]}")
    return out


def read_env_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InvalidArgumentError(
            f"open {path}: {os.strerror(exc.errno or 0).lower()}", path=path) from None
    out = []
    for line in lines:
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        key = line.split("=", 1)[0]
        if not key or any(c.isspace() for c in key):
            raise InvalidArgumentError(f"variable '{key}' contains whitespaces")
        out.extend(parse_env([line]))
    return out


def merge_env(base: list[str], override: list[str]) -> list[str]:
    """Image env then options: a later KEY replaces an earlier one in place."""
    out: dict[str, str] = {}
    for item in [*base, *override]:
        key = item.split("=", 1)[0]
        out[key] = item
    return list(out.values())


def parse_labels(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        key, _, val = v.partition("=")
        out[key] = val
    return out


@dataclass(frozen=True)
class Ulimit:
    name: str
    soft: int
    hard: int


def parse_ulimit(value: str) -> Ulimit:
    name, eq, limits = value.partition("=")
    if not eq:
        raise flag_error(value, "--ulimit", f"invalid ulimit argument: {value}")
    if name not in ULIMITS:
        raise flag_error(value, "--ulimit", f"invalid ulimit type: {name}")
    soft_s, colon, hard_s = limits.partition(":")
    try:
        soft = int(soft_s)
        hard = int(hard_s) if colon else soft
    except ValueError:
        raise flag_error(value, "--ulimit", f"invalid ulimit argument: {value}")
    if soft > hard:
        raise flag_error(value, "--ulimit",
                         f"ulimit soft limit must be less than or equal to hard limit: "
                         f"{soft} > {hard}")
    return Ulimit(name, soft, hard)


@dataclass(frozen=True)
class RestartPolicy:
    name: str = "no"
    maximum_retry_count: int = 0

    def docker(self) -> dict[str, object]:
        return {"Name": self.name, "MaximumRetryCount": self.maximum_retry_count}


def parse_restart(value: str) -> RestartPolicy:
    name, _, count = value.partition(":")
    if name in ("", "no"):
        if count:
            raise InvalidArgumentError(f"invalid restart policy format: {value}")
        return RestartPolicy("no")
    if name in ("always", "unless-stopped"):
        if count:
            raise InvalidArgumentError(
                f"maximum retry count cannot be used with restart policy '{name}'")
        return RestartPolicy(name)
    if name == "on-failure":
        if count and not count.isdigit():
            raise InvalidArgumentError(f"invalid restart policy format: {value}")
        return RestartPolicy(name, int(count or 0))
    raise InvalidArgumentError(f"invalid restart policy format: {value}")


@dataclass(frozen=True)
class MountSpec:
    """One container mount, as HostConfig.Mounts: bind, volume or tmpfs."""

    type: str
    target: str
    source: str = ""
    read_only: bool = False
    options: tuple[str, ...] = ()
    tmpfs_size: int = 0
    tmpfs_mode: int = 0
    create_host_path: bool = False  # -v /host:/x creates /host; --mount does not
    # a volume's VolumeOptions as Docker's API has them: NoCopy, Labels and
    # DriverConfig {Name, Options} (--mount volume-*; -v ...:nocopy)
    volume_options: dict[str, object] | None = None

    def docker(self) -> dict[str, object]:
        out: dict[str, object] = {"Type": self.type, "Source": self.source,
                                  "Target": self.target}
        if self.read_only:
            out["ReadOnly"] = True
        if self.volume_options is not None:
            out["VolumeOptions"] = self.volume_options
        if self.type == "tmpfs" and (self.tmpfs_size or self.tmpfs_mode):
            opts: dict[str, int] = {}
            if self.tmpfs_size:
                opts["SizeBytes"] = self.tmpfs_size
            if self.tmpfs_mode:
                opts["Mode"] = self.tmpfs_mode
            out["TmpfsOptions"] = opts
        return out


def _check_target(target: str, spec: str) -> None:
    if not target.startswith("/"):
        raise InvalidArgumentError(f"invalid mount config for type \"bind\": invalid mount path: "
                                   f"'{target}' mount path must be absolute" if target else
                                   f"invalid volume specification: '{spec}'")


def parse_volume(spec: str) -> MountSpec:
    """-v [SOURCE:]TARGET[:ro|rw,...]: SOURCE absolute = bind, else a named
    volume; no SOURCE = an anonymous volume."""
    parts = spec.split(":")
    if len(parts) == 1:
        source, target, mode = "", parts[0], ""
    elif len(parts) == 2:
        if parts[1] in ("ro", "rw") or not parts[1].startswith("/"):
            if parts[1] in ("ro", "rw", "z", "Z"):
                source, target, mode = "", parts[0], parts[1]
            else:
                raise InvalidArgumentError(f"invalid volume specification: '{spec}'")
        else:
            source, target, mode = parts[0], parts[1], ""
    elif len(parts) == 3:
        source, target, mode = parts
    else:
        raise InvalidArgumentError(f"invalid volume specification: '{spec}'")
    if not target.startswith("/"):
        raise InvalidArgumentError(f"invalid volume specification: '{spec}'")
    ro = nocopy = False
    for m in filter(None, mode.split(",")):
        if m == "ro":
            ro = True
        elif m == "nocopy":
            nocopy = True
        elif m not in ("rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave",
                       "rslave"):
            raise InvalidArgumentError(f"invalid mode: {m}")
    if source.startswith("/"):
        return MountSpec("bind", target, source, ro, create_host_path=True)
    if source and not _is_volume_name(source):
        raise InvalidArgumentError(
            f'create {source}: "{source}" includes invalid characters for a local volume '
            'name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a '
            "host directory, use absolute path")
    return MountSpec("volume", target, source, ro,
                     volume_options={"NoCopy": True} if nocopy else None)


def _is_volume_name(name: str) -> bool:
    return bool(name) and name[0].isascii() and name[0].isalnum() and all(
        c.isascii() and (c.isalnum() or c in "_.-") for c in name)


_BOOLS = {"1": True, "t": True, "T": True, "true": True, "TRUE": True, "True": True,
          "0": False, "f": False, "F": False, "false": False, "FALSE": False, "False": False}


def parse_mount(spec: str) -> MountSpec:
    """--mount type=bind|volume|tmpfs,source=..,target=..,readonly,...

    Fields are split as a CSV record, as the Docker CLI does, so a quoted
    field may hold commas: `"volume-opt=o=size=10m,uid=1000"`. A volume's
    `volume-driver`, `volume-opt=KEY=VALUE` and `volume-label=KEY=VALUE`
    (both repeatable) and `volume-nocopy` become its VolumeOptions: the
    engine creates a missing volume with them (an existing one is used as
    it is, as Docker does)."""
    import csv

    try:
        fields = next(csv.reader([spec], strict=True), [])
    except csv.Error as exc:
        raise flag_error(spec, "--mount", str(exc)) from None
    kv: dict[str, str] = {}
    vopts: dict[str, object] | None = None
    for item in fields:
        key, eq, val = item.partition("=")
        key = key.strip().lower()
        if key.startswith("volume-"):
            vopts = {} if vopts is None else vopts
            _volume_field(vopts, spec, key, val if eq else None)
            continue
        kv[key] = val if eq else "true"
    kind = kv.pop("type", "volume")
    source = kv.pop("source", kv.pop("src", ""))
    target = kv.pop("target", kv.pop("destination", kv.pop("dst", "")))
    ro = False
    for key in ("readonly", "ro"):
        if key in kv:
            ro = kv.pop(key) in ("true", "1", "")
    if not target:
        raise InvalidArgumentError("invalid argument \"" + spec + "\" for \"--mount\" flag: "
                                   "target is required")
    if not target.startswith("/"):
        raise InvalidArgumentError(f"invalid mount config for type \"{kind}\": invalid mount "
                                   f"path: '{target}' mount path must be absolute")
    if vopts is not None and kind != "volume":
        raise flag_error(spec, "--mount",
                         f"cannot mix 'volume-*' options with mount type '{kind}'")
    if kind == "bind":
        if not source:
            raise InvalidArgumentError('invalid mount config for type "bind": field Source '
                                       "must not be empty")
        kv.pop("bind-propagation", None)
        return MountSpec("bind", target, os.path.abspath(source), ro)
    if kind == "volume":
        return MountSpec("volume", target, source, ro, volume_options=vopts)
    if kind == "tmpfs":
        if source:
            raise InvalidArgumentError('invalid mount config for type "tmpfs": field Source '
                                       "must be empty")
        size = parse_size(kv.pop("tmpfs-size"), "--mount") if "tmpfs-size" in kv else 0
        mode = int(kv.pop("tmpfs-mode"), 8) if "tmpfs-mode" in kv else 0
        return MountSpec("tmpfs", target, "", ro, tmpfs_size=size, tmpfs_mode=mode)
    raise InvalidArgumentError(f"invalid argument \"{spec}\" for \"--mount\" flag: "
                               f"unsupported mount type \"{kind}\"")


def _volume_field(vopts: dict[str, object], spec: str, key: str, val: str | None) -> None:
    """One `volume-*` field of --mount into `vopts` (Docker's VolumeOptions,
    its empty parts left out as Go's omitempty does; the Docker CLI makes
    DriverConfig for any of them)."""
    driver = vopts.setdefault("DriverConfig", {})
    assert isinstance(driver, dict)
    if key == "volume-nocopy":
        if val is not None and val not in _BOOLS:
            raise flag_error(spec, "--mount", f"invalid value for volume-nocopy: {val}")
        if val is None or _BOOLS[val]:
            vopts["NoCopy"] = True
        else:
            vopts.pop("NoCopy", None)
        return
    if val is None:
        raise flag_error(spec, "--mount", f"invalid field '{key}' must be a key=value pair")
    if key == "volume-driver":
        if val:
            driver["Name"] = val
        return
    if key in ("volume-opt", "volume-label"):
        name, _, value = val.partition("=")
        if name:  # Docker's setValueOnMap drops an empty key
            where = driver.setdefault("Options", {}) if key == "volume-opt" else \
                vopts.setdefault("Labels", {})
            assert isinstance(where, dict)
            where[name] = value
        return
    raise flag_error(spec, "--mount", f"unexpected key '{key}' in '{key}={val}'")


def parse_tmpfs(spec: str) -> tuple[str, str]:
    """--tmpfs /path[:options] -> (path, mount options)."""
    target, _, opts = spec.partition(":")
    if not target.startswith("/"):
        raise InvalidArgumentError(f"invalid mount path: '{target}' mount path must be absolute")
    return target, opts


def parse_device(spec: str) -> dict[str, str]:
    """--device HOST[:CONTAINER[:PERMISSIONS]] (permissions from rwm)."""
    parts = spec.split(":")
    if len(parts) > 3 or not parts[0]:
        raise InvalidArgumentError(f"invalid device specification: {spec}")
    host = parts[0]
    container = host
    perms = "rwm"
    if len(parts) == 2:
        if parts[1] and set(parts[1]) <= set("rwm") and not parts[1].startswith("/"):
            perms = parts[1]
        else:
            container = parts[1]
    elif len(parts) == 3:
        container, perms = parts[1], parts[2]
    if not set(perms) <= set("rwm") or not perms:
        raise InvalidArgumentError(f"invalid device mode: {perms}")
    if not container.startswith("/"):
        raise InvalidArgumentError(f"{container} is not an absolute path")
    return {"PathOnHost": host, "PathInContainer": container, "CgroupPermissions": perms}


@dataclass
class RunOptions:
    """Everything `berth create`/`run` takes besides the image."""

    image: str = ""
    command: list[str] = field(default_factory=list)
    name: str = ""
    entrypoint: str | None = None
    env: list[str] = field(default_factory=list)
    workdir: str = ""
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    hostname: str = ""
    tty: bool = False
    interactive: bool = False
    auto_remove: bool = False
    mounts: list[MountSpec] = field(default_factory=list)
    tmpfs: dict[str, str] = field(default_factory=dict)
    read_only: bool = False
    memory: int = 0
    memory_swap: int = 0
    memory_reservation: int = 0
    nano_cpus: int = 0
    cpu_shares: int = 0
    cpuset_cpus: str = ""
    pids_limit: int = 0
    ulimits: list[Ulimit] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    privileged: bool = False
    init: bool = False
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    stop_signal: str = ""
    stop_timeout: int | None = None
    network: str = "default"  # Docker's: the default bridge network
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    extra_hosts: list[str] = field(default_factory=list)
    ip: str = ""
    ip6: str = ""
    network_aliases: list[str] = field(default_factory=list)
    mac_address: str = ""
    pid: str = ""
    ipc: str = ""
    uts: str = ""
    runtime: str = "berth"
    log_opts: dict[str, str] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    devices: list[dict[str, str]] = field(default_factory=list)
    health_cmd: str | None = None
    health_interval: int = 0
    health_timeout: int = 0
    health_retries: int = 0
    health_start_period: int = 0
    no_healthcheck: bool = False
    health_on_failure: str = "none"
