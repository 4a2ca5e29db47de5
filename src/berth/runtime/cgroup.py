"""The runtime's use of berth.cgroups: one manager per container, recorded in
state.json so later commands (kill --all, pause, delete) reopen exactly the
directories `create` made, whatever cgroup the later command runs in."""

from berth.runtime.state import ContainerState

# What runc always allows on top of the config's device rules
# (libcontainer/specconv AllowedDevices): mknod of anything, the default
# devices, ptys and /dev/net/tun. Without them a deny-all rule (runc spec's
# default) would forbid the container's own /dev.
ALLOWED_DEVICES = (
    {"allow": True, "type": "c", "access": "m"},
    {"allow": True, "type": "b", "access": "m"},
    {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
    {"allow": True, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
    {"allow": True, "type": "c", "major": 136, "access": "rwm"},
    {"allow": True, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"},
)


def effective_resources(config: dict) -> dict:
    """linux.resources with the device rules the container needs appended:
    runc's always-allowed list and each of linux.devices."""
    linux = config.get("linux") or {}
    res = dict(linux.get("resources") or {})
    rules = list(res.get("devices") or [])
    if rules or linux.get("devices"):
        rules.extend(ALLOWED_DEVICES)
        for d in linux.get("devices") or []:
            if d.get("type") in ("c", "b"):
                rules.append({"allow": True, "type": d["type"], "major": d.get("major"),
                              "minor": d.get("minor"), "access": "rwm"})
        res["devices"] = rules
    return res


def manager_for(state: ContainerState):
    """The container's cgroup manager, or None if it has none recorded."""
    rec = state.data.get("cgroup")
    if not rec:
        return None
    from berth.cgroups import from_host_paths

    return from_host_paths(rec["paths"])

