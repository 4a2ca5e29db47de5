"""`runc update` flags -> an OCI `linux.resources` dict for
`CgroupManager.update`, so ``berth-runtime update`` is a few lines:

    res = resources_from_update_flags({"memory": "256m", "cpu-quota": "50000"})
    manager.update(res)

Sizes take docker/go-units' RAMInBytes syntax (``512``, ``64k``, ``1.5g``,
binary multiples, case-insensitive); ``-1`` means unlimited where runc allows
it.
"""

from __future__ import annotations

from berth.errors import InvalidArgumentError

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def ram_in_bytes(text: str) -> int:
    """ "1.5g" -> 1610612736; "-1" -> -1."""
    s = text.strip().lower()
    if s == "-1":
        return -1
    num = s.rstrip("bkmgtpi")
    unit = s[len(num) :]
    if unit.endswith("ib"):
        unit = unit[:-2]
    elif unit.endswith("b") and len(unit) == 2:
        unit = unit[:-1]
    if unit not in _UNITS or not num:
        raise InvalidArgumentError(f"parse size {text!r}: invalid unit or number", value=text)
    try:
        value = float(num)
    except ValueError:
        raise InvalidArgumentError(f"parse size {text!r}: not a number", value=text) from None
    if value < 0:
        raise InvalidArgumentError(f"parse size {text!r}: negative", value=text)
    return int(value * _UNITS[unit])


def _int(flag: str, text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise InvalidArgumentError(
            f"update flag --{flag}={text}: not an integer", value=text
        ) from None


# flag -> (section, OCI field, parser)
_FLAGS = {
    "blkio-weight": ("blockIO", "weight", _int),
    "cpu-period": ("cpu", "period", _int),
    "cpu-quota": ("cpu", "quota", _int),
    "cpu-share": ("cpu", "shares", _int),
    "cpu-burst": ("cpu", "burst", _int),
    "cpu-idle": ("cpu", "idle", _int),
    "cpu-rt-period": ("cpu", "realtimePeriod", _int),
    "cpu-rt-runtime": ("cpu", "realtimeRuntime", _int),
    "cpuset-cpus": ("cpu", "cpus", None),
    "cpuset-mems": ("cpu", "mems", None),
    "memory": ("memory", "limit", None),
    "memory-reservation": ("memory", "reservation", None),
    "memory-swap": ("memory", "swap", None),
    "kernel-memory": ("memory", "kernel", None),
    "kernel-memory-tcp": ("memory", "kernelTCP", None),
    "pids-limit": ("pids", "limit", _int),
}

UPDATE_FLAGS = tuple(_FLAGS)


def resources_from_update_flags(flags: dict[str, str | None]) -> dict:
    """`flags`: runc update flag name (without ``--``) -> its value; None or
    missing = not given. Unknown flags are an error."""
    res: dict = {}
    for flag, value in flags.items():
        if value is None:
            continue
        if flag not in _FLAGS:
            raise InvalidArgumentError(f"update flag --{flag}: unknown")
        section, field, parse = _FLAGS[flag]
        if parse is not None:
            parsed: object = parse(flag, value)
        elif section == "memory":
            parsed = ram_in_bytes(value)
        else:
            parsed = value
        res.setdefault(section, {})[field] = parsed
    return res
