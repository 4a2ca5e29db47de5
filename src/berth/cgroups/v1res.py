"""OCI `linux.resources` -> cgroup v1 control files.

Each controller is a function over its cgroup directory (the model is
youki's libcgroups), so tests point it at a temporary directory. They write
through a `fs.Writer`, which records old values when a live update must be
undone on failure.

On the runtime's start-up path: no imports beyond berth's light modules.
"""


from berth.cgroups import fs
from berth.cgroups.convert import (
    check_cpuset,
    check_int,
    device_rule,
    hugepage_size,
)
from berth.errors import InvalidArgumentError, UnavailableError

_I64 = (1 << 63) - 1


def _get(d: dict, key: str, what: str) -> dict:
    v = d.get(key)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise InvalidArgumentError(f"resource {what}: not an object", value=v)
    return v


def _list(d: dict, key: str, what: str) -> list:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise InvalidArgumentError(f"resource {what}: not a list", value=v)
    return v


def memory_limits(d: str, mem: dict, update: bool, usage_file: str,
                  limit_file: str) -> tuple[int | None, int | None]:
    """(limit, swap) of an OCI memory object, checked; with
    checkBeforeUpdate on an update, a limit below the current usage (read
    from `usage_file`) is refused naming `limit_file`. Shared by v1 and v2."""
    limit = mem.get("limit")
    swap = mem.get("swap")
    if limit is not None:
        check_int(limit, "memory.limit", -1)
    if swap is not None:
        check_int(swap, "memory.swap", -1)
    if update and mem.get("checkBeforeUpdate") and limit is not None and limit >= 0:
        usage = int(fs.read(d, usage_file))
        if limit < usage:
            raise InvalidArgumentError(
                f"write {limit_file}={limit} in {d}: below current usage {usage}",
                path=f"{d}/{limit_file}",
                value=str(limit),
            )
    return limit, swap


def set_memory(d: str, mem: dict, w: fs.Writer, update: bool = False) -> None:
    limit, swap = memory_limits(d, mem, update, "memory.usage_in_bytes", "memory.limit_in_bytes")
    if limit == -1 and swap in (None, 0) and fs.exists(d, "memory.memsw.limit_in_bytes"):
        # unlimited memory with swap not given: unlimited swap too (runc)
        swap = -1
    if swap not in (None, 0) and not fs.exists(d, "memory.memsw.limit_in_bytes"):
        if swap != -1:
            raise UnavailableError(
                f"write memory.memsw.limit_in_bytes={swap} in {d}: swap accounting is off "
                "in this kernel"
            )
        swap = None
    if limit not in (None, 0) and swap not in (None, 0):
        # memsw must stay >= limit at every step: raise memsw first when the
        # limit grows (or becomes unlimited), lower the limit first otherwise
        current = int(fs.read(d, "memory.limit_in_bytes"))
        if limit == -1 or limit > current:
            w.write(d, "memory.memsw.limit_in_bytes", str(swap))
            w.write(d, "memory.limit_in_bytes", str(limit))
        else:
            w.write(d, "memory.limit_in_bytes", str(limit))
            w.write(d, "memory.memsw.limit_in_bytes", str(swap))
    elif limit not in (None, 0):
        try:
            w.write(d, "memory.limit_in_bytes", str(limit))
        except InvalidArgumentError as exc:
            memsw = fs.read_optional(d, "memory.memsw.limit_in_bytes")
            if memsw is not None and limit > int(memsw):
                exc.message += f" (memory+swap limit {memsw} is lower: set swap too)"
                exc.args = (exc.message,)
            raise
    elif swap not in (None, 0):
        w.write(d, "memory.memsw.limit_in_bytes", str(swap))
    reservation = mem.get("reservation")
    if reservation not in (None, 0):
        check_int(reservation, "memory.reservation", -1)
        w.write(d, "memory.soft_limit_in_bytes", str(reservation))
    # kernel memory limits are deprecated (runtime-spec 1.2) and gone from
    # recent kernels: set them only where the files exist
    for key, name in (
        ("kernel", "memory.kmem.limit_in_bytes"),
        ("kernelTCP", "memory.kmem.tcp.limit_in_bytes"),
    ):
        v = mem.get(key)
        if v not in (None, 0):
            check_int(v, f"memory.{key}", -1)
            if fs.exists(d, name):
                w.write(d, name, str(v))
    swappiness = mem.get("swappiness")
    if swappiness is not None and swappiness != (1 << 64) - 1:
        check_int(swappiness, "memory.swappiness", 0, 100)
        w.write(d, "memory.swappiness", str(swappiness))
    oom = mem.get("disableOOMKiller")
    if oom is not None and (oom or update):
        w.write(d, "memory.oom_control", "1" if oom else "0")
    hierarchy = mem.get("useHierarchy")
    if hierarchy is not None:
        w.write(d, "memory.use_hierarchy", "1" if hierarchy else "0")


def _write_verified(d: str, name: str, value: int, w: fs.Writer) -> None:
    """Write, then read back: the kernel clamps some values silently."""
    w.write(d, name, str(value))
    got = fs.read(d, name)
    if got != str(value):
        raise InvalidArgumentError(
            f"write {name}={value} in {d}: the kernel set {got} instead",
            path=f"{d}/{name}",
            value=str(value),
        )


def _pair(d: str, first: tuple[str, int | None], second: tuple[str, int | None], w: fs.Writer):
    """Write a period/quota pair whose order matters: period first, and if the
    kernel refuses it with the old quota in place, the quota first."""
    (n1, v1), (n2, v2) = first, second
    if v1 is not None:
        try:
            w.write(d, n1, str(v1))
        except InvalidArgumentError:
            if v2 is None:
                raise
            w.write(d, n2, str(v2))
            w.write(d, n1, str(v1))
            return
    if v2 is not None:
        w.write(d, n2, str(v2))


def set_cpu(d: str, cpu: dict, w: fs.Writer) -> None:
    shares = cpu.get("shares")
    if shares not in (None, 0):
        check_int(shares, "cpu.shares", 0)
        _write_verified(d, "cpu.shares", shares, w)
    period = cpu.get("period")
    quota = cpu.get("quota")
    if period not in (None, 0):
        check_int(period, "cpu.period", 1)
    else:
        period = None
    if quota not in (None, 0):
        check_int(quota, "cpu.quota", -1)
    else:
        quota = None
    _pair(d, ("cpu.cfs_period_us", period), ("cpu.cfs_quota_us", quota), w)
    burst = cpu.get("burst")
    if burst is not None:
        check_int(burst, "cpu.burst", 0)
        w.write(d, "cpu.cfs_burst_us", str(burst))
    rt_period = cpu.get("realtimePeriod")
    rt_runtime = cpu.get("realtimeRuntime")
    if rt_period not in (None, 0):
        check_int(rt_period, "cpu.realtimePeriod", 1)
    else:
        rt_period = None
    if rt_runtime not in (None, 0):
        check_int(rt_runtime, "cpu.realtimeRuntime", -1)
    else:
        rt_runtime = None
    _pair(d, ("cpu.rt_period_us", rt_period), ("cpu.rt_runtime_us", rt_runtime), w)
    idle = cpu.get("idle")
    if idle is not None:
        check_int(idle, "cpu.idle", 0, 1)
        w.write(d, "cpu.idle", str(idle))


def set_cpuset(d: str, cpu: dict, w: fs.Writer) -> None:
    for key, name in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
        v = cpu.get(key)
        if v not in (None, ""):
            w.write(d, name, check_cpuset(v, f"cpu.{key}"))


def set_pids(d: str, pids: dict, w: fs.Writer) -> None:
    limit = pids.get("limit")
    if limit not in (None, 0):
        check_int(limit, "pids.limit", -1)
        w.write(d, "pids.max", "max" if limit < 0 else str(limit))


def _dev(entry: object, what: str) -> tuple[dict, str]:
    if not isinstance(entry, dict):
        raise InvalidArgumentError(f"resource {what}: not an object", value=entry)
    major = check_int(entry.get("major"), f"{what}.major", 0)
    minor = check_int(entry.get("minor"), f"{what}.minor", 0)
    return entry, f"{major}:{minor}"


THROTTLES = (
    ("throttleReadBpsDevice", "read_bps_device", "rbps"),
    ("throttleWriteBpsDevice", "write_bps_device", "wbps"),
    ("throttleReadIOPSDevice", "read_iops_device", "riops"),
    ("throttleWriteIOPSDevice", "write_iops_device", "wiops"),
)


def set_blkio(d: str, bio: dict, w: fs.Writer) -> None:
    bfq = not fs.exists(d, "blkio.weight") and fs.exists(d, "blkio.bfq.weight")
    prefix = "blkio.bfq." if bfq else "blkio."
    weight = bio.get("weight")
    if weight not in (None, 0):
        check_int(weight, "blockIO.weight", 10, 1000)
        w.write(d, prefix + "weight", str(weight))
    leaf = bio.get("leafWeight")
    if leaf not in (None, 0):
        check_int(leaf, "blockIO.leafWeight", 10, 1000)
        # gone with CFQ (Linux 5.0); ignored where absent, as runc does
        if fs.exists(d, "blkio.leaf_weight"):
            w.write(d, "blkio.leaf_weight", str(leaf))
    for entry in _list(bio, "weightDevice", "blockIO.weightDevice"):
        e, key = _dev(entry, "blockIO.weightDevice")
        wt = e.get("weight")
        if wt not in (None, 0):
            check_int(wt, "blockIO.weightDevice.weight", 10, 1000)
            w.write_keyed(d, prefix + "weight_device", key, str(wt), "0")
        lw = e.get("leafWeight")
        if lw not in (None, 0) and fs.exists(d, "blkio.leaf_weight_device"):
            check_int(lw, "blockIO.weightDevice.leafWeight", 10, 1000)
            w.write_keyed(d, "blkio.leaf_weight_device", key, str(lw), "0")
    for field, suffix, _ in THROTTLES:
        for entry in _list(bio, field, f"blockIO.{field}"):
            e, key = _dev(entry, f"blockIO.{field}")
            rate = check_int(e.get("rate"), f"blockIO.{field}.rate", 0)
            w.write_keyed(d, f"blkio.throttle.{suffix}", key, str(rate), "0")


def hugetlb_files(page_size: str, v2: bool) -> tuple[str, str]:
    if v2:
        return f"hugetlb.{page_size}.max", f"hugetlb.{page_size}.rsvd.max"
    return f"hugetlb.{page_size}.limit_in_bytes", f"hugetlb.{page_size}.rsvd.limit_in_bytes"


def set_hugetlb(d: str, limits: list, w: fs.Writer, v2: bool = False) -> None:
    for entry in limits:
        if not isinstance(entry, dict):
            raise InvalidArgumentError(f"resource hugepageLimits {entry!r}: not an object")
        size = hugepage_size(entry.get("pageSize"))
        limit = check_int(entry.get("limit"), f"hugepageLimits.{size}.limit", -1)
        value = ("max" if v2 else "-1") if limit < 0 else str(limit)
        name, rsvd = hugetlb_files(size, v2)
        if not fs.exists(d, name):
            raise InvalidArgumentError(
                f"write {name}={value} in {d}: hugepage size {size} not supported by this host",
                path=f"{d}/{name}",
                value=value,
            )
        w.write(d, name, value)
        # the reservation limit (Linux 5.7) keeps reserved-but-unfaulted pages in check
        if fs.exists(d, rsvd):
            w.write(d, rsvd, value)


def set_net_cls(d: str, net: dict, w: fs.Writer) -> None:
    classid = net.get("classID")
    if classid is not None:
        check_int(classid, "network.classID", 0, (1 << 32) - 1)
        w.write(d, "net_cls.classid", str(classid))


def set_net_prio(d: str, net: dict, w: fs.Writer) -> None:
    for entry in _list(net, "priorities", "network.priorities"):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidArgumentError(f"resource network.priorities {entry!r}: needs a name")
        prio = check_int(entry.get("priority"), "network.priorities.priority", 0)
        w.write_keyed(d, "net_prio.ifpriomap", entry["name"], str(prio), "0")


def set_rdma(d: str, rdma: dict, w: fs.Writer) -> None:
    for dev, lim in rdma.items():
        if not isinstance(lim, dict):
            raise InvalidArgumentError(f"resource rdma.{dev}: not an object")
        parts = []
        for key, knob in (("hcaHandles", "hca_handle"), ("hcaObjects", "hca_object")):
            v = lim.get(key)
            if v is not None:
                parts.append(f"{knob}={check_int(v, f'rdma.{dev}.{key}', 0)}")
        if parts:
            w.write_keyed(d, "rdma.max", dev, " ".join(parts), "hca_handle=max hca_object=max")


def set_devices(d: str, rules: list, w: fs.Writer) -> None:
    """Device rules in order, later ones overriding earlier ones, which is how
    the v1 devices controller treats successive writes."""
    lines = [device_rule(r) for r in rules]
    if not lines:
        return
    if w.record:
        old = fs.read(d, "devices.list").splitlines()
        # restore: back to the old whitelist (or allow-all)
        if old == ["a *:* rwm"]:
            restore = [("devices.allow", "a")]
        else:
            restore = [("devices.deny", "a")] + [("devices.allow", ln) for ln in old]
        for name, value in reversed(restore):
            w.on_rollback(d, name, value)
    for allow, line in lines:
        w.write(d, "devices.allow" if allow else "devices.deny", line, restore=False)


def set_unified(d: str | None, unified: dict, w: fs.Writer, v2: bool) -> None:
    """The `unified` map: cgroup v2 file name -> value, written as given."""
    if not unified:
        return
    if d is None:
        raise InvalidArgumentError(
            "resource unified: cgroup v2 files cannot be set on a cgroup v1 host"
        )
    for key, value in unified.items():
        if not isinstance(value, str):
            raise InvalidArgumentError(f"resource unified.{key}={value!r}: not a string")
        if not key or "/" in key or key.startswith(".") or "." not in key:
            raise InvalidArgumentError(f"write {key}={value} in {d}: not a cgroup file name")
        if not fs.exists(d, key):
            raise InvalidArgumentError(
                f"write {key}={value} in {d}: no such cgroup file (unknown key, or its "
                f"controller {key.split('.', 1)[0]} is not enabled here)",
                path=f"{d}/{key}",
                value=value,
            )
        w.write(d, key, value)


def controller_dirs(paths: dict[str, str]) -> dict[str, str]:
    """controller name -> directory, from hierarchy key -> directory."""
    out: dict[str, str] = {}
    for key, path in paths.items():
        if key in ("", "unified") or key.startswith("name="):
            continue
        for ctrl in key.split(","):
            out[ctrl] = path
    return out


def _need(dirs: dict[str, str], ctrl: str, what: str) -> str:
    d = dirs.get(ctrl)
    if d is None:
        raise UnavailableError(f"resource {what}: cgroup v1 controller {ctrl} is not mounted")
    return d


def apply_resources(
    paths: dict[str, str],
    res: dict,
    w: fs.Writer,
    *,
    update: bool = False,
    hugetlb_v2: object = None,
) -> None:
    """Write every field of OCI `res` into the v1 hierarchies `paths`
    (hierarchy key -> dir, ``"unified"`` for a hybrid host's v2 directory).

    `hugetlb_v2`, on a hybrid host whose hugetlb controller lives on the v2
    side, is a function returning the v2 directory with hugetlb enabled."""
    if not isinstance(res, dict):
        raise InvalidArgumentError("resources: not an object", value=res)
    dirs = controller_dirs(paths)
    mem = _get(res, "memory", "memory")
    if any(v is not None for v in mem.values()):
        set_memory(_need(dirs, "memory", "memory"), mem, w, update)
    cpu = _get(res, "cpu", "cpu")
    if any(cpu.get(k) not in (None, 0, "") for k in cpu if k not in ("cpus", "mems")):
        set_cpu(_need(dirs, "cpu", "cpu"), cpu, w)
    if cpu.get("cpus") or cpu.get("mems"):
        set_cpuset(_need(dirs, "cpuset", "cpu.cpus/mems"), cpu, w)
    pids = _get(res, "pids", "pids")
    if pids.get("limit") not in (None, 0):
        set_pids(_need(dirs, "pids", "pids"), pids, w)
    bio = _get(res, "blockIO", "blockIO")
    if any(v not in (None, 0, []) for v in bio.values()):
        set_blkio(_need(dirs, "blkio", "blockIO"), bio, w)
    huge = _list(res, "hugepageLimits", "hugepageLimits")
    if huge:
        if "hugetlb" in dirs:
            set_hugetlb(dirs["hugetlb"], huge, w)
        elif callable(hugetlb_v2):
            set_hugetlb(hugetlb_v2(), huge, w, v2=True)
        else:
            _need(dirs, "hugetlb", "hugepageLimits")
    net = _get(res, "network", "network")
    if net.get("classID") is not None:
        set_net_cls(_need(dirs, "net_cls", "network.classID"), net, w)
    if net.get("priorities"):
        set_net_prio(_need(dirs, "net_prio", "network.priorities"), net, w)
    rdma = _get(res, "rdma", "rdma")
    if rdma:
        set_rdma(_need(dirs, "rdma", "rdma"), rdma, w)
    devices = _list(res, "devices", "devices")
    if devices:
        set_devices(_need(dirs, "devices", "devices"), devices, w)
    unified = _get(res, "unified", "unified")
    if unified:
        set_unified(paths.get("unified"), unified, w, v2=True)
