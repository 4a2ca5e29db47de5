"""Usage and event counters of a cgroup, shaped like the "data" object of
``runc events --stats`` (runc's libcontainer/cgroups/stats.go, JSON names
kept), plus what runc does not report:

- ``memory.events``: ``oom``, ``oom_kill`` (and on v2 ``low``, ``high``,
  ``max``, ``oom_group_kill``) counts; on v1 ``oom_kill`` and ``under_oom``
  from memory.oom_control;
- ``memory.rss``: anonymous memory (v1 total_rss, v2 anon);
- ``pids.events``: ``max`` = forks refused at the limit; ``pids.peak``;
- ``cpu.psi``, ``memory.psi``, ``blkio.psi``: pressure stall information
  (runc 1.2's names) where the kernel provides it, which on a hybrid host is
  the cgroup's directory in the unified hierarchy.

Parsers are pure functions over file contents; `collect` reads the files.
Loaded lazily (not on the runtime's start-up path).
"""

from __future__ import annotations

import os

from berth.cgroups import fs
from berth.cgroups.convert import parse_cpuset

UNLIMITED = (1 << 64) - 1  # what runc reports for "max"
_CLK_TCK = 100


def parse_flat(text: str) -> dict[str, int]:
    """ "key value" lines -> dict (memory.stat, cpu.stat, pids.events ...)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        try:
            out[k] = int(v)
        except ValueError:
            continue
    return out


def parse_psi(text: str) -> dict:
    """cpu.pressure / memory.pressure / io.pressure -> runc's PSIStats shape."""
    out: dict = {}
    for line in text.splitlines():
        kind, *fields = line.split()
        data: dict = {}
        for f in fields:
            k, _, v = f.partition("=")
            data[k] = int(v) if k == "total" else float(v)
        out[kind] = data
    return out


def parse_blkio(text: str) -> list[dict]:
    """v1 "8:0 Read 4096" lines -> runc BlkioStatEntry list."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and ":" in parts[0]:
            major, minor = parts[0].split(":")
            out.append(
                {"major": int(major), "minor": int(minor), "op": parts[1], "value": int(parts[2])}
            )
        elif len(parts) == 2 and ":" in parts[0]:
            # blkio.sectors, blkio.time: no op
            major, minor = parts[0].split(":")
            out.append({"major": int(major), "minor": int(minor), "op": "", "value": int(parts[1])})
    return out


def parse_io_stat(text: str) -> tuple[list[dict], list[dict]]:
    """v2 io.stat -> (ioServiceBytesRecursive, ioServicedRecursive), as runc maps it."""
    nbytes: list[dict] = []
    nops: list[dict] = []
    for line in text.splitlines():
        parts = line.split()
        if not parts or ":" not in parts[0]:
            continue
        major, minor = (int(x) for x in parts[0].split(":"))
        kv = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        for key, op, lst in (
            ("rbytes", "Read", nbytes),
            ("wbytes", "Write", nbytes),
            ("dbytes", "Discard", nbytes),
            ("rios", "Read", nops),
            ("wios", "Write", nops),
            ("dios", "Discard", nops),
        ):
            if key in kv:
                lst.append({"major": major, "minor": minor, "op": op, "value": int(kv[key])})
    return nbytes, nops


def _int(d: str | None, name: str, default: int = 0) -> int:
    if d is None:
        return default
    v = fs.read_optional(d, name)
    if v is None or v == "":
        return default
    if v == "max":
        return UNLIMITED
    try:
        return int(v)
    except ValueError:
        return default


def _ints(d: str | None, name: str) -> list[int]:
    if d is None:
        return []
    v = fs.read_optional(d, name)
    return [int(x) for x in v.split()] if v else []


def _flat(d: str | None, name: str) -> dict[str, int]:
    if d is None:
        return {}
    v = fs.read_optional(d, name)
    return parse_flat(v) if v else {}


def _psi(d: str | None, name: str) -> dict | None:
    if d is None:
        return None
    v = fs.read_optional(d, name)
    return parse_psi(v) if v else None


def _page_sizes(d: str | None, suffix: str) -> list[str]:
    if d is None:
        return []
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    return sorted(
        {n.split(".")[1] for n in names if n.startswith("hugetlb.") and n.endswith(suffix)}
    )


def _empty() -> dict:
    return {
        "cpu": {
            "usage": {
                "total": 0,
                "percpu": [],
                "percpu_kernel": [],
                "percpu_user": [],
                "kernel": 0,
                "user": 0,
            },
            "throttling": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "cpuset": {"cpus": [], "mems": []},
        "memory": {
            "cache": 0,
            "usage": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
            "swap": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
            "kernel": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
            "kernelTCP": {"limit": 0, "usage": 0, "max": 0, "failcnt": 0},
            "raw": {},
            "events": {},
        },
        "pids": {"current": 0, "limit": 0, "peak": 0, "events": {}},
        "blkio": {
            "ioServiceBytesRecursive": [],
            "ioServicedRecursive": [],
        },
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": None,
    }


def _entry(d: str | None, prefix: str) -> dict:
    return {
        "limit": _int(d, f"{prefix}.limit_in_bytes"),
        "usage": _int(d, f"{prefix}.usage_in_bytes"),
        "max": _int(d, f"{prefix}.max_usage_in_bytes"),
        "failcnt": _int(d, f"{prefix}.failcnt"),
    }


def collect_v1(paths: dict[str, str]) -> dict:
    """Stats of a v1 (or hybrid: ``paths["unified"]``) cgroup."""
    from berth.cgroups.v1res import controller_dirs

    dirs = {k: v for k, v in controller_dirs(paths).items() if os.path.isdir(v)}
    unified = paths.get("unified")
    if unified is not None and not os.path.isdir(unified):
        unified = None
    out = _empty()
    acct = dirs.get("cpuacct")
    cpu = out["cpu"]
    if acct:
        usage = cpu["usage"]
        usage["total"] = _int(acct, "cpuacct.usage")
        usage["percpu"] = _ints(acct, "cpuacct.usage_percpu")
        usage["percpu_kernel"] = _ints(acct, "cpuacct.usage_percpu_sys")
        usage["percpu_user"] = _ints(acct, "cpuacct.usage_percpu_user")
        if fs.exists(acct, "cpuacct.usage_user"):
            usage["user"] = _int(acct, "cpuacct.usage_user")
            usage["kernel"] = _int(acct, "cpuacct.usage_sys")
        else:
            st = _flat(acct, "cpuacct.stat")
            usage["user"] = st.get("user", 0) * 1_000_000_000 // _CLK_TCK
            usage["kernel"] = st.get("system", 0) * 1_000_000_000 // _CLK_TCK
    if "cpu" in dirs:
        st = _flat(dirs["cpu"], "cpu.stat")
        cpu["throttling"] = {
            "periods": st.get("nr_periods", 0),
            "throttled_periods": st.get("nr_throttled", 0),
            "throttled_time": st.get("throttled_time", 0),
        }
    psi = _psi(unified, "cpu.pressure")
    if psi:
        cpu["psi"] = psi
    if "cpuset" in dirs:
        out["cpuset"] = {
            "cpus": parse_cpuset(fs.read(dirs["cpuset"], "cpuset.cpus")),
            "mems": parse_cpuset(fs.read(dirs["cpuset"], "cpuset.mems")),
        }
    m = dirs.get("memory")
    mem = out["memory"]
    if m:
        raw = _flat(m, "memory.stat")
        mem["raw"] = raw
        mem["cache"] = raw.get("total_cache", raw.get("cache", 0))
        mem["rss"] = raw.get("total_rss", raw.get("rss", 0))
        mem["usage"] = _entry(m, "memory")
        mem["swap"] = _entry(m, "memory.memsw")
        mem["kernel"] = _entry(m, "memory.kmem")
        mem["kernelTCP"] = _entry(m, "memory.kmem.tcp")
        mem["use_hierarchy"] = _int(m, "memory.use_hierarchy") == 1
        oom = _flat(m, "memory.oom_control")
        mem["events"] = {
            "oom_kill": oom.get("oom_kill", 0),
            "under_oom": oom.get("under_oom", 0),
            "oom_kill_disable": oom.get("oom_kill_disable", 0),
        }
    psi = _psi(unified, "memory.pressure")
    if psi:
        mem["psi"] = psi
    p = dirs.get("pids")
    if p:
        limit = _int(p, "pids.max")
        out["pids"] = {
            "current": _int(p, "pids.current"),
            "limit": 0 if limit == UNLIMITED else limit,
            "peak": _int(p, "pids.peak"),
            "events": _flat(p, "pids.events"),
        }
    b = dirs.get("blkio")
    if b:
        blk = out["blkio"]
        # CFQ/BFQ stats when the scheduler provides them, else the throttle
        # layer's, which counts every I/O (runc's fallback order)
        for prefix in ("blkio.", "blkio.bfq.", "blkio.throttle."):
            if fs.exists(b, prefix + "io_service_bytes_recursive"):
                blk["ioServiceBytesRecursive"] = parse_blkio(
                    fs.read(b, prefix + "io_service_bytes_recursive")
                )
                blk["ioServicedRecursive"] = parse_blkio(
                    fs.read(b, prefix + "io_serviced_recursive")
                )
                if blk["ioServiceBytesRecursive"]:
                    break
    psi = _psi(unified, "io.pressure")
    if psi:
        out["blkio"]["psi"] = psi
    h = dirs.get("hugetlb")
    if h:
        for size in _page_sizes(h, ".limit_in_bytes"):
            out["hugetlb"][size] = {
                "usage": _int(h, f"hugetlb.{size}.usage_in_bytes"),
                "max": _int(h, f"hugetlb.{size}.max_usage_in_bytes"),
                "failcnt": _int(h, f"hugetlb.{size}.failcnt"),
            }
    elif unified:
        out["hugetlb"] = _hugetlb_v2(unified)
    return out


def _hugetlb_v2(d: str) -> dict:
    out = {}
    for size in _page_sizes(d, ".current"):
        if size == "rsvd":
            continue
        out[size] = {
            "usage": _int(d, f"hugetlb.{size}.current"),
            "max": _int(d, f"hugetlb.{size}.max"),
            "failcnt": _flat(d, f"hugetlb.{size}.events").get("max", 0),
        }
    return out


def collect_v2(d: str) -> dict:
    """Stats of a cgroup v2 directory (runc's fs2 mapping)."""
    out = _empty()
    if not os.path.isdir(d):
        return out
    st = _flat(d, "cpu.stat")
    cpu = out["cpu"]
    cpu["usage"]["total"] = st.get("usage_usec", 0) * 1000
    cpu["usage"]["user"] = st.get("user_usec", 0) * 1000
    cpu["usage"]["kernel"] = st.get("system_usec", 0) * 1000
    cpu["throttling"] = {
        "periods": st.get("nr_periods", 0),
        "throttled_periods": st.get("nr_throttled", 0),
        "throttled_time": st.get("throttled_usec", 0) * 1000,
    }
    psi = _psi(d, "cpu.pressure")
    if psi:
        cpu["psi"] = psi
    if fs.exists(d, "cpuset.cpus.effective"):
        out["cpuset"] = {
            "cpus": parse_cpuset(fs.read(d, "cpuset.cpus.effective")),
            "mems": parse_cpuset(fs.read(d, "cpuset.mems.effective")),
        }
    mem = out["memory"]
    if fs.exists(d, "memory.current"):
        raw = _flat(d, "memory.stat")
        events = _flat(d, "memory.events")
        mem["raw"] = raw
        mem["cache"] = raw.get("file", 0)
        mem["rss"] = raw.get("anon", 0)
        usage = _int(d, "memory.current")
        limit = _int(d, "memory.max", UNLIMITED)
        mem["usage"] = {
            "limit": limit,
            "usage": usage,
            "max": _int(d, "memory.peak"),
            "failcnt": events.get("max", 0),
        }
        if fs.exists(d, "memory.swap.current"):
            swap = _int(d, "memory.swap.current")
            swap_limit = _int(d, "memory.swap.max", UNLIMITED)
            # runc reports memory+swap, the v1 meaning, and swap alone beside it
            mem["swap"] = {
                "limit": UNLIMITED if UNLIMITED in (limit, swap_limit) else limit + swap_limit,
                "usage": usage + swap,
                "max": 0,
                "failcnt": _flat(d, "memory.swap.events").get("max", 0),
            }
            mem["swapOnlyUsage"] = {"limit": swap_limit, "usage": swap, "max": 0, "failcnt": 0}
        mem["events"] = events
    psi = _psi(d, "memory.pressure")
    if psi:
        mem["psi"] = psi
    if fs.exists(d, "pids.current"):
        limit = _int(d, "pids.max")
        out["pids"] = {
            "current": _int(d, "pids.current"),
            "limit": 0 if limit == UNLIMITED else limit,
            "peak": _int(d, "pids.peak"),
            "events": _flat(d, "pids.events"),
        }
    io = fs.read_optional(d, "io.stat")
    if io:
        nbytes, nops = parse_io_stat(io)
        out["blkio"] = {"ioServiceBytesRecursive": nbytes, "ioServicedRecursive": nops}
    psi = _psi(d, "io.pressure")
    if psi:
        out["blkio"]["psi"] = psi
    out["hugetlb"] = _hugetlb_v2(d)
    return out


def collect(manager: object) -> dict:
    """The stats of a `CgroupManager`."""
    paths: dict[str, str] = manager.paths  # type: ignore[attr-defined]
    if set(paths) == {""}:
        return collect_v2(paths[""])
    return collect_v1(paths)
