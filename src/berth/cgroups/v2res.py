"""OCI `linux.resources` -> cgroup v2 control files, with runc's conversions
from the v1-shaped OCI fields (shares -> cpu.weight, blkio weight ->
io.weight, memory+swap -> memory.swap.max). Functions over one directory.

On the runtime's start-up path: no imports beyond berth's light modules.
"""


from berth.cgroups import fs
from berth.cgroups.convert import (
    blkio_weight_to_io_weight,
    check_cpuset,
    check_int,
    cpu_max,
    memory_swap_to_v2,
    shares_to_weight,
    v2_limit,
)
from berth.cgroups.v1res import (
    THROTTLES,
    _dev,
    _get,
    _list,
    memory_limits,
    set_hugetlb,
    set_rdma,
    set_unified,
)
from berth.errors import InvalidArgumentError, UnavailableError


def set_memory(d: str, mem: dict, w: fs.Writer, update: bool = False) -> None:
    limit, swap = memory_limits(d, mem, update, "memory.current", "memory.max")
    if swap not in (None, 0) or limit == -1:
        base = limit
        if base in (None, 0):
            # an update of the swap limit alone keeps the current memory limit
            cur = fs.read_optional(d, "memory.max") or "max"
            base = -1 if cur == "max" else int(cur)
        swap_v2 = memory_swap_to_v2(swap or 0, base)
        if fs.exists(d, "memory.swap.max"):
            w.write(d, "memory.swap.max", v2_limit(swap_v2))
        elif swap_v2 != -1:
            raise UnavailableError(
                f"write memory.swap.max={swap_v2} in {d}: swap accounting is off in this kernel"
            )
    if limit not in (None, 0):
        w.write(d, "memory.max", v2_limit(limit))
    reservation = mem.get("reservation")
    if reservation not in (None, 0):
        check_int(reservation, "memory.reservation", -1)
        w.write(d, "memory.low", v2_limit(reservation))
    # swappiness, kernel, kernelTCP, disableOOMKiller and useHierarchy have no
    # cgroup v2 file; runc and crun ignore them there, and so does berth


def set_cpu(d: str, cpu: dict, w: fs.Writer) -> None:
    shares = cpu.get("shares")
    if shares not in (None, 0):
        check_int(shares, "cpu.shares", 2, 262144)
        w.write(d, "cpu.weight", str(shares_to_weight(shares)))
    quota = cpu.get("quota")
    period = cpu.get("period")
    if quota is not None:
        check_int(quota, "cpu.quota", -1)
    if period is not None:
        check_int(period, "cpu.period", 0)
    if quota not in (None, 0) or period not in (None, 0):
        current = fs.read_optional(d, "cpu.max") or "max 100000"
        w.write(d, "cpu.max", cpu_max(None if quota == 0 else quota, period, current))
    burst = cpu.get("burst")
    if burst is not None:
        check_int(burst, "cpu.burst", 0)
        w.write(d, "cpu.max.burst", str(burst))
    idle = cpu.get("idle")
    if idle is not None:
        check_int(idle, "cpu.idle", 0, 1)
        w.write(d, "cpu.idle", str(idle))
    if cpu.get("realtimeRuntime") not in (None, 0) or cpu.get("realtimePeriod") not in (None, 0):
        raise UnavailableError(
            "resource cpu.realtimeRuntime/realtimePeriod: not supported by cgroup v2"
        )
    for key, name in (("cpus", "cpuset.cpus"), ("mems", "cpuset.mems")):
        v = cpu.get(key)
        if v not in (None, ""):
            w.write(d, name, check_cpuset(v, f"cpu.{key}"))


def set_pids(d: str, pids: dict, w: fs.Writer) -> None:
    limit = pids.get("limit")
    if limit not in (None, 0):
        check_int(limit, "pids.limit", -1)
        w.write(d, "pids.max", v2_limit(limit))


def set_io(d: str, bio: dict, w: fs.Writer) -> None:
    # BFQ takes the blkio weight scale (10..1000) as is; io.weight needs the
    # conversion
    bfq = fs.exists(d, "io.bfq.weight")
    weight = bio.get("weight")
    if weight not in (None, 0):
        check_int(weight, "blockIO.weight", 10, 1000)
        if bfq:
            w.write(d, "io.bfq.weight", str(weight))
        else:
            w.write(d, "io.weight", f"default {blkio_weight_to_io_weight(weight)}")
    for entry in _list(bio, "weightDevice", "blockIO.weightDevice"):
        e, key = _dev(entry, "blockIO.weightDevice")
        wt = e.get("weight")
        if wt not in (None, 0):
            check_int(wt, "blockIO.weightDevice.weight", 10, 1000)
            if bfq:
                w.write_keyed(d, "io.bfq.weight", key, str(wt), "default")
            else:
                w.write_keyed(d, "io.weight", key, str(blkio_weight_to_io_weight(wt)), "default")
    for field, _, knob in THROTTLES:
        for entry in _list(bio, field, f"blockIO.{field}"):
            e, key = _dev(entry, f"blockIO.{field}")
            rate = check_int(e.get("rate"), f"blockIO.{field}.rate", 0)
            w.write_keyed(
                d,
                "io.max",
                key,
                f"{knob}={rate if rate else 'max'}",
                "rbps=max wbps=max riops=max wiops=max",
            )


def apply_resources(d: str, res: dict, w: fs.Writer, *, update: bool = False) -> None:
    """Write every field of OCI `res` into the cgroup v2 directory `d`; the
    `unified` map after the converted fields, so it can override them as in
    runc; the device filter last."""
    if not isinstance(res, dict):
        raise InvalidArgumentError("resources: not an object", value=res)
    mem = _get(res, "memory", "memory")
    if any(v is not None for v in mem.values()):
        set_memory(d, mem, w, update)
    cpu = _get(res, "cpu", "cpu")
    if any(v not in (None, 0, "") for v in cpu.values()):
        set_cpu(d, cpu, w)
    pids = _get(res, "pids", "pids")
    if pids.get("limit") not in (None, 0):
        set_pids(d, pids, w)
    bio = _get(res, "blockIO", "blockIO")
    if any(v not in (None, 0, []) for v in bio.values()):
        set_io(d, bio, w)
    huge = _list(res, "hugepageLimits", "hugepageLimits")
    if huge:
        set_hugetlb(d, huge, w, v2=True)
    net = _get(res, "network", "network")
    if net.get("classID") is not None or net.get("priorities"):
        raise UnavailableError(
            "resource network.classID/priorities: net_cls and net_prio do not exist on "
            "cgroup v2 (match the cgroup in nftables or tc instead)"
        )
    rdma = _get(res, "rdma", "rdma")
    if rdma:
        set_rdma(d, rdma, w)
    set_unified(d, _get(res, "unified", "unified"), w, v2=True)
    devices = _list(res, "devices", "devices")
    if devices:
        # last: replacing the eBPF filter is all-or-nothing, and nothing after
        # it can fail and ask for a rollback
        from berth.cgroups.devices import set_devices_v2

        set_devices_v2(d, devices, w)
