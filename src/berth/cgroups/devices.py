"""Device access rules on cgroup v2, which has no devices files: the kernel
checks device access with an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE
attached to the cgroup.
"""

from __future__ import annotations

from berth.cgroups import fs
from berth.errors import NotImplementedYetError


def set_devices_v2(d: str, rules: list, w: fs.Writer) -> None:
    raise NotImplementedYetError(
        f"set device rules on cgroup v2 {d}: the eBPF device filter is not implemented yet"
    )
