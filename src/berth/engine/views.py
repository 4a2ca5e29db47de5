"""Docker's JSON shapes of a container: `inspect` (GET /containers/{id}/json)
and a `ps` row (GET /containers/json); `why` in words."""

from __future__ import annotations

import os
import time
from typing import Any

from berth.engine.store import ZERO_TIME, ContainerRecord


def state(rec: ContainerRecord) -> dict[str, Any]:
    out = _state(rec)
    if rec.health:
        out["Health"] = rec.health
    return out


def _state(rec: ContainerRecord) -> dict[str, Any]:
    return {
        "Status": rec.status,
        "Running": rec.status in ("running", "paused", "restarting"),
        "Paused": rec.status == "paused",
        "Restarting": rec.status == "restarting",
        "OOMKilled": rec.oom_killed,
        "Dead": rec.status == "dead",
        "Pid": rec.pid if rec.status in ("running", "paused") else 0,
        "ExitCode": rec.exit_code,
        "Error": rec.error,
        "StartedAt": rec.started_at,
        "FinishedAt": rec.finished_at,
    }


def inspect(rec: ContainerRecord, bundle: str, log_path: str, graph: dict[str, str]) -> dict:
    cfg = rec.config
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    hc = {k: v for k, v in rec.host_config.items()}
    hc["Mounts"] = [{k: v for k, v in m.items() if k not in ("CreateHostPath", "Anonymous")}
                    for m in hc.get("Mounts") or []] or None
    mounts = []
    for m in rec.host_config.get("Mounts") or []:
        entry: dict[str, Any] = {"Type": m["Type"], "Source": m.get("Source", ""),
                                 "Destination": m["Target"], "Mode": "",
                                 "RW": not m.get("ReadOnly"), "Propagation": ""}
        if m["Type"] == "volume":
            entry["Name"] = m["Source"]
            entry["Driver"] = "local"
            entry["Source"] = ""  # filled by the caller with the volume's path
        elif m["Type"] == "bind":
            entry["Propagation"] = "rprivate"
        mounts.append(entry)
    network = rec.host_config.get("NetworkMode") or "none"
    return {
        "Id": rec.id,
        "Created": rec.created,
        "Path": args[0] if args else "",
        "Args": args[1:],
        "State": state(rec),
        "Image": rec.image_id,
        "ResolvConfPath": os.path.join(bundle, "resolv.conf"),
        "HostnamePath": os.path.join(bundle, "hostname"),
        "HostsPath": os.path.join(bundle, "hosts"),
        "LogPath": log_path,
        "Name": f"/{rec.name}",
        "RestartCount": rec.restart_count,
        "Driver": graph.get("Driver", ""),
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": None,
        "HostConfig": hc,
        "GraphDriver": {"Data": graph.get("Data"), "Name": graph.get("Driver", "")},
        "Mounts": mounts,
        "Config": cfg,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "HairpinMode": False,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
            "SandboxKey": "", "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None,
            "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": {network: {
                "IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "",
                "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
                "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
                "MacAddress": "", "DriverOpts": None}},
        },
    }


def _parse_time(text: str) -> float:
    if not text or text.startswith("0001"):
        return 0.0
    base = text[:19]
    frac = text[19:].rstrip("Z")
    t = time.mktime(time.strptime(base, "%Y-%m-%dT%H:%M:%S")) - time.timezone
    if frac.startswith("."):
        t += float("0" + frac)
    return t


def human_duration(seconds: float) -> str:
    """Docker's units.HumanDuration."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    m = s // 60
    if m == 1:
        return "About a minute"
    if m < 60:
        return f"{m} minutes"
    h = round(s / 3600)
    if h == 1:
        return "About an hour"
    if h < 48:
        return f"{h} hours"
    if h < 24 * 7 * 2:
        return f"{h // 24} days"
    if h < 24 * 30 * 2:
        return f"{h // (24 * 7)} weeks"
    if h < 24 * 365 * 2:
        return f"{h // (24 * 30)} months"
    return f"{h // (24 * 365)} years"


def status_text(rec: ContainerRecord) -> str:
    """The STATUS column of `ps`."""
    now = time.time()
    if rec.status in ("running", "paused"):
        text = f"Up {human_duration(now - _parse_time(rec.started_at))}"
        if rec.status == "paused":
            return text + " (Paused)"
        health = rec.health.get("Status") if rec.health else None
        if health == "starting":
            return text + " (health: starting)"
        if health:
            return text + f" ({health})"
        return text
    if rec.status == "restarting":
        return (f"Restarting ({rec.exit_code}) "
                f"{human_duration(now - _parse_time(rec.finished_at))} ago")
    if rec.status == "removing":
        return "Removal In Progress"
    if rec.status == "dead":
        return "Dead"
    if rec.status == "exited" or rec.finished_at != ZERO_TIME:
        return f"Exited ({rec.exit_code}) {human_duration(now - _parse_time(rec.finished_at))} ago"
    return "Created"


def created_text(rec: ContainerRecord) -> str:
    return f"{human_duration(time.time() - _parse_time(rec.created))} ago"


def created_unix(rec: ContainerRecord) -> int:
    return int(_parse_time(rec.created))


def command_text(rec: ContainerRecord, trunc: bool) -> str:
    args = list(rec.config.get("Entrypoint") or []) + list(rec.config.get("Cmd") or [])
    text = " ".join(args)
    if trunc and len(text) > 20:
        text = text[:19] + "…"
    return f'"{text}"'


def why(rec: ContainerRecord) -> str:
    """One line: why the container is not running (or that it is)."""
    name = rec.name
    if rec.status in ("running", "paused"):
        return f"{name} is {rec.status} (pid {rec.pid}), restarted {rec.restart_count} times"
    if rec.status == "restarting":
        return (f"{name} exited with code {rec.exit_code} and is being restarted by its "
                f"restart policy ({rec.host_config.get('RestartPolicy', {}).get('Name')})")
    if rec.status == "created" and not rec.error:
        return f"{name} was created and never started"
    reason = rec.reason
    code = rec.exit_code
    if reason.startswith("failed to start") or (rec.status == "created" and rec.error):
        return f"{name} failed to start: {rec.error or reason} (exit code {code})"
    if rec.oom_killed or reason == "oom":
        limit = rec.host_config.get("Memory") or 0
        lim = f" of {limit} bytes" if limit else ""
        return f"{name} was killed by the kernel's OOM killer: its memory limit{lim} was hit " \
               f"(exit code {code})"
    policy = (rec.host_config.get("RestartPolicy") or {}).get("Name") or "no"
    tail = ""
    if policy != "no":
        tail = f"; restart policy {policy} did not restart it"
        if reason.startswith("stopped"):
            tail = f"; not restarted ({policy}) since it was stopped by request"
    if reason.startswith("unhealthy:"):
        log = (rec.health or {}).get("Log") or [{}]
        last = log[-1]
        streak = (rec.health or {}).get("FailingStreak", 0)
        output = str(last.get("Output", "")).strip().replace("\n", " ")[:200]
        return (f"{name} failed its health check {streak} times in a row (last exit code "
                f"{last.get('ExitCode')}: {output!r}) and --health-on-failure="
                f"{reason.split(':', 1)[1]} acted (exit code {code}){tail}")
    if reason.startswith("stopped"):
        return f"{name} was stopped by berth stop/kill/rm (exit code {code}){tail}"
    if reason.startswith("signal:"):
        from berth.engine.options import signal_name

        sig = int(reason.split(":", 1)[1])
        return f"{name} was killed by signal {signal_name(sig)} (exit code {code}){tail}"
    if reason == "monitor:lost":
        return (f"{name} lost its monitor (killed or host rebooted) and was found stopped; "
                f"exit code unknown (recorded {code})")
    return f"{name} exited on its own with code {code}{tail}"
