"""Pure conversions between OCI `linux.resources` values and cgroup file values,
including the v1 <-> v2 mappings runc uses (libcontainer/cgroups/utils.go),
so a config written for one cgroup version means the same on the other.

On the runtime's start-up path: no imports.
"""


from berth.errors import InvalidArgumentError

MAX_SHARES = 262144
MIN_SHARES = 2


def check_int(value: object, what: str, lo: int | None = None, hi: int | None = None) -> int:
    """`value` as an int (not a bool), in [lo, hi] when given."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"resource {what}={value!r}: not an integer", value=value)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
        raise InvalidArgumentError(f"resource {what}={value}: out of range {rng}", value=value)
    return value


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144) -> cpu.weight (1..10000); 0 means unset and stays 0.

    runc's ConvertCPUSharesToCgroupV2Value: a linear map of [2, 262144] onto
    [1, 10000] (so the default 1024 becomes 39)."""
    if shares == 0:
        return 0
    return 1 + ((shares - 2) * 9999) // 262142


def weight_to_shares(weight: int) -> int:
    """cpu.weight -> cpu.shares, the inverse of `shares_to_weight` (rounded)."""
    if weight == 0:
        return 0
    return 2 + ((weight - 1) * 262142 + 9998) // 9999


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) -> io.weight (1..10000); 0 means unset.

    runc's ConvertBlkIOToIOWeightValue."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def io_weight_to_blkio_weight(weight: int) -> int:
    if weight == 0:
        return 0
    return 10 + (weight - 1) * 990 // 9999


def memory_swap_to_v2(swap: int, memory: int) -> int:
    """OCI memory.swap (memory+swap, the v1 memsw meaning) -> memory.swap.max
    (swap alone). -1 means unlimited, 0 means unset.

    runc's ConvertMemorySwapToCgroupV2Value."""
    if memory == -1 and swap == 0:
        # memory unlimited and swap not given: both unlimited, as on v1
        return -1
    if swap in (-1, 0):
        return swap
    if memory in (0, -1):
        raise InvalidArgumentError(
            f"resource memory.swap={swap}: a swap limit needs a memory limit", value=swap
        )
    if memory < 0:
        raise InvalidArgumentError(f"resource memory.limit={memory}: invalid", value=memory)
    if swap < memory:
        raise InvalidArgumentError(
            f"resource memory.swap={swap}: memory+swap must be >= memory limit {memory}",
            value=swap,
        )
    return swap - memory


def v2_limit(value: int) -> str:
    """An OCI byte/count limit as a v2 file value: -1 -> "max"."""
    return "max" if value < 0 else str(value)


def cpu_max(quota: int | None, period: int | None, current: str = "max 100000") -> str:
    """The cpu.max line for OCI cpu.quota / cpu.period, keeping what is not
    given from `current` (what cpu.max holds now)."""
    cur = current.split()
    cur_quota = cur[0] if cur else "max"
    cur_period = cur[1] if len(cur) > 1 else "100000"
    q = cur_quota if quota is None else ("max" if quota <= 0 else str(quota))
    p = cur_period if period in (None, 0) else str(period)
    return f"{q} {p}"


def device_id(number: object, what: str) -> str:
    """A major or minor number of a device rule; None or -1 mean any (``*``)."""
    if number is None or number == -1:
        return "*"
    return str(check_int(number, what, 0))


def device_rule(rule: dict) -> tuple[bool, str]:
    """An OCI device cgroup rule -> (allow, the v1 devices.allow/deny line)."""
    if not isinstance(rule, dict):
        raise InvalidArgumentError(f"resource devices rule {rule!r}: not an object")
    allow = rule.get("allow")
    if not isinstance(allow, bool):
        raise InvalidArgumentError(f"resource devices rule {rule!r}: allow must be true or false")
    kind = rule.get("type") or "a"
    if kind not in ("a", "b", "c"):
        raise InvalidArgumentError(f"resource devices rule {rule!r}: type must be a, b or c")
    access = rule.get("access") or "rwm"
    if not isinstance(access, str) or not access or set(access) - set("rwm"):
        raise InvalidArgumentError(f"resource devices rule {rule!r}: access must be of r, w, m")
    major = device_id(rule.get("major"), "devices major")
    minor = device_id(rule.get("minor"), "devices minor")
    if kind == "a":
        # "a" matches every device whatever numbers are given
        return allow, f"a *:* {access}"
    return allow, f"{kind} {major}:{minor} {access}"


def hugepage_size(page_size: object) -> str:
    """Checks an OCI hugepage size ("2MB", "1GB", "64KB") and returns it."""
    if not isinstance(page_size, str) or len(page_size) < 3:
        raise InvalidArgumentError(f"resource hugepageLimits pageSize={page_size!r}: invalid")
    num, unit = page_size[:-2], page_size[-2:]
    if not num.isdigit() or unit not in ("KB", "MB", "GB"):
        raise InvalidArgumentError(f"resource hugepageLimits pageSize={page_size!r}: invalid")
    return page_size


def check_cpuset(value: object, what: str) -> str:
    """A cpuset list ("0-3,5"): syntax checked here, range by the kernel."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"resource {what}={value!r}: not a string", value=value)
    v = value.strip()
    for part in v.split(",") if v else []:
        ends = part.split("-")
        if len(ends) > 2 or not all(e.isdigit() for e in ends):
            raise InvalidArgumentError(f"resource {what}={value}: not a cpu list", value=value)
        if len(ends) == 2 and int(ends[0]) > int(ends[1]):
            raise InvalidArgumentError(f"resource {what}={value}: bad range {part}", value=value)
    return v


def parse_cpuset(value: str) -> list[int]:
    """ "0-2,5" -> [0, 1, 2, 5]."""
    out: list[int] = []
    for part in value.strip().split(","):
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out
