"""`berth-runtime` commands over a container's cgroup, as runc has them:
update, pause, resume, ps, events.

Each is a short adapter: load the container's state, check its status
against `state.TRANSITIONS`, reopen its cgroup from the paths recorded in
state.json (`runtime.cgroup.manager_for`) and call `berth.cgroups`.
Commands that change the container (update, pause, resume) hold the
container's lock, so they serialise with create, start and delete (runc
serialises them on its container mutex); `update` also re-reads state.json
under the lock, so two concurrent updates both land in its config.

Loaded only when one of these commands runs (cli.EXTERNAL).
"""

from __future__ import annotations

import os
import sys
import time

from berth import jsonio
from berth.errors import (
    BerthError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from berth.paths import RuntimePaths
from berth.runtime import state as st
from berth.runtime.log import Log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.cgroups import CgroupManager


# runc update's flags (runc 1.1.5, plus --cpu-burst and --cpu-idle of runc
# 1.2) as berth.cgroups.flags names them; the cli table keys them by name
UPDATE_FLAGS = (
    "blkio-weight", "cpu-period", "cpu-quota", "cpu-share", "cpu-burst", "cpu-idle",
    "cpu-rt-period", "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems",
    "memory", "memory-reservation", "memory-swap", "pids-limit",
)
# accepted and ignored with a warning, as runc 1.1 does (kernel memory
# accounting limits are deprecated by the kernel)
IGNORED_FLAGS = ("kernel-memory", "kernel-memory-tcp")
# fields where 0 is a setting rather than "leave unchanged"
_ZERO_IS_A_VALUE = frozenset({"idle", "swappiness", "disableOOMKiller", "useHierarchy"})


def _one_id(args: list[str], cmd: str) -> str:
    if len(args) != 1:
        raise InvalidArgumentError(f'"{cmd}" requires exactly 1 argument(s)')
    return args[0]


def _manager(state: st.ContainerState, operation: str) -> CgroupManager:
    from berth.runtime.cgroup import manager_for

    mgr = manager_for(state)
    if mgr is None:
        raise UnavailableError(f"{operation} container {state.id}: it has no cgroup recorded", container_id=state.id)
    return mgr


def _locked_state(paths: RuntimePaths, cid: str) -> tuple[st.ContainerState, st.Lock]:
    """The container's state, read again once its lock is held."""
    st.ContainerState.load(paths, cid)  # "does not exist" before any lock file is made
    try:
        lock = st.Lock(paths.lock_file(cid))
    except FileNotFoundError:
        raise NotFoundError("container does not exist", container_id=cid) from None
    try:
        return st.ContainerState.load(paths, cid), lock
    except BaseException:
        lock.release()
        raise


def _emit(obj: object) -> None:
    sys.stdout.write(jsonio.dumps(obj) + "\n")
    sys.stdout.flush()


# update ----------------------------------------------------------------------
def read_resources(source: str) -> dict:
    """The resources JSON of ``update --resources FILE|-``."""
    try:
        if source == "-":
            text = sys.stdin.read()
        else:
            with open(source) as f:
                text = f.read()
    except FileNotFoundError:
        raise NotFoundError(f"open {source}: no such file or directory", path=source) from None
    except OSError as exc:
        from berth.errors import from_oserror

        raise from_oserror(exc, "read resources from", source) from exc
    try:
        res = jsonio.loads(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"update: resources from {source}: malformed JSON: {exc}") from None
    if not isinstance(res, dict):
        raise InvalidArgumentError(f"update: resources from {source}: not a JSON object")
    return res


def resources_from_opts(opts: dict, log: Log) -> dict:
    """runc update's flags -> OCI linux.resources; a flag left out, empty or
    (for the integer flags, as runc) 0 changes nothing."""
    from berth.cgroups.flags import resources_from_update_flags

    if opts.get("l3-cache-schema"):
        raise UnavailableError("update: intel rdt/cat: l3 cache schema is not enabled")
    if opts.get("mem-bw-schema"):
        raise UnavailableError("update: intel rdt/mba: memory bandwidth schema is not enabled")
    for name in IGNORED_FLAGS:
        if opts.get(name):
            log.warning(f"update: --{name} is ignored (kernel memory limits are deprecated)")
    given: dict[str, str | None] = {}
    for name in UPDATE_FLAGS:
        v = opts.get(name)
        if v is None or v == "" or v == 0:
            continue
        given[name] = str(v)
    return resources_from_update_flags(given)


def merge_resources(current: dict, update: dict) -> dict:
    """`current` linux.resources with the values `update` sets (a section's
    fields one by one; lists and the unified map replaced whole)."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in current.items()}
    for section, values in update.items():
        if isinstance(values, dict) and section != "unified":
            merged = dict(out.get(section) or {})
            for k, v in values.items():
                if v is None or ((v == 0 or v == "") and k not in _ZERO_IS_A_VALUE):
                    continue
                merged[k] = v
            out[section] = merged
        elif values is not None:
            out[section] = values
    return out


def cmd_update(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    cid = _one_id(args, "update")
    if opts.get("resources"):
        res = read_resources(opts["resources"])  # other flags ignored, as runc
    else:
        res = resources_from_opts(opts, log)
    # runc cannot change device rules on update (SkipDevices): neither can we
    res.pop("devices", None)
    mem = res.get("memory")
    if isinstance(mem, dict) and mem.get("limit") == -1 and mem.get("swap") in (None, 0):
        # unlimited memory with swap not given: both unlimited (runc)
        mem["swap"] = -1
    state, lock = _locked_state(paths, cid)
    try:
        if not st.can("update", state.status()):
            raise ConflictError("container not running", container_id=cid)
        mgr = _manager(state, "update")
        if res:
            mgr.update(res)  # a refused value: earlier writes rolled back, error raised
        linux = state.config.setdefault("linux", {})
        linux["resources"] = merge_resources(linux.get("resources") or {}, res)
        state.save()
    finally:
        lock.release()
    return 0


# pause / resume --------------------------------------------------------------
def cmd_pause(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    cid = _one_id(args, "pause")
    state, lock = _locked_state(paths, cid)
    try:
        if not st.can("pause", state.status()):
            raise ConflictError("container not running", container_id=cid)
        _manager(state, "pause").freeze()
    finally:
        lock.release()
    return 0


def cmd_resume(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    cid = _one_id(args, "resume")
    state, lock = _locked_state(paths, cid)
    try:
        status = state.status()
        mgr = _manager(state, "resume")
        # a container paused before start still reports "created" (the exec
        # FIFO is looked at first), yet must be resumable
        if not (st.can("resume", status) or (status == "created" and mgr.is_frozen())):
            raise ConflictError("container not paused", container_id=cid)
        mgr.thaw()
    finally:
        lock.release()
    return 0


# ps ----------------------------------------------------------------------------
def cmd_ps(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    if not args:
        raise InvalidArgumentError('"ps" requires a minimum of 1 argument(s)')
    cid, ps_args = args[0], args[1:]
    fmt = opts.get("format") or "table"
    if fmt not in ("table", "json"):
        raise InvalidArgumentError("invalid format option")
    state = st.ContainerState.load(paths, cid)
    status = state.status()
    # runc lists a stopped container's cgroup (empty once its pid namespace
    # is gone) rather than refusing
    if not (st.can("ps", status) or status == "stopped"):
        raise ConflictError(f"ps container {cid}: it is {status}", container_id=cid)
    pids = _manager(state, "ps").pids()
    if fmt == "json":
        # runc encodes an empty Go slice as null
        sys.stdout.write(jsonio.dumps(pids or None) + "\n")
        return 0
    sys.stdout.write(filter_ps_output(run_ps(ps_args or ["-ef"]), set(pids)))
    return 0


def run_ps(ps_args: list[str]) -> str:
    import subprocess

    try:
        p = subprocess.run(["ps", *ps_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    except FileNotFoundError:
        raise UnavailableError("ps: the ps program is not installed") from None
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise BerthError(f"run ps {' '.join(ps_args)}: exit status {p.returncode}: {out.strip()}")
    return out


def filter_ps_output(output: str, pids: set[int]) -> str:
    """`ps` output: the header, then only the lines of `pids` (runc's ps)."""
    lines = output.split("\n")
    header = lines[0].split()
    if "PID" not in header:
        raise InvalidArgumentError("ps: couldn't find PID field in ps output")
    idx = header.index("PID")
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if not fields:
            continue
        try:
            pid = int(fields[idx])
        except (IndexError, ValueError):
            raise InvalidArgumentError(f"ps: unable to parse pid in line {line!r}") from None
        if pid in pids:
            out.append(line)
    return "\n".join(out) + "\n"


# events ------------------------------------------------------------------------
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration ("5s", "1m30s", "250ms", "1.5h") in seconds."""
    bad = InvalidArgumentError(f'invalid value "{text}" for flag -interval: parse error', value=text)
    s = text.strip()
    sign = 1.0
    if s[:1] in ("+", "-"):
        sign, s = (-1.0 if s[0] == "-" else 1.0), s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise bad
    total = 0.0
    i = 0
    while i < len(s):
        j = i
        while j < len(s) and (s[j].isdigit() or s[j] == "."):
            j += 1
        k = j
        while k < len(s) and not (s[k].isdigit() or s[k] == "."):
            k += 1
        num, unit = s[i:j], s[j:k]
        if unit not in _DURATION_UNITS:
            raise bad
        try:
            total += float(num) * _DURATION_UNITS[unit]
        except ValueError:
            raise bad from None
        i = k
    return sign * total


def cmd_events(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    import gc

    gc.enable()  # a stream may run for days; the launcher turned the collector off
    cid = _one_id(args, "events")
    interval = parse_duration(opts.get("interval") or "5s")
    if interval <= 0:
        raise InvalidArgumentError("duration interval must be greater than 0")
    state = st.ContainerState.load(paths, cid)
    if not st.can("events", state.status()):
        raise ConflictError(f"container with id {cid} is not running", container_id=cid)
    mgr = _manager(state, "events")
    try:
        if opts.get("stats"):
            _emit({"type": "stats", "id": cid, "data": mgr.stats()})
        else:
            stream_events(state, mgr, interval, log)
    except BrokenPipeError:
        # the reader went away: nothing left to report to; point stdout at
        # /dev/null so the interpreter's final flush does not fail again
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    return 0


def stream_events(state: st.ContainerState, mgr: CgroupManager, interval: float, log: Log) -> None:
    """Stats every `interval` seconds and an event as the cgroup reports
    one, until the container stops or its cgroup is removed:

    - ``{"type": "stats", "id": ..., "data": {...}}`` (runc's);
    - ``{"type": "oom", "id": ...}`` when the cgroup hit its memory limit (runc's);
    - ``{"type": "pids.max", "id": ..., "data": {"count": n, "total": t}}``
      when forks were refused at the pids limit (berth's; runc does not say).
    """
    cid = state.id
    with mgr.watch_events() as watcher:
        next_stats = time.monotonic() + interval
        while True:
            # wake at least once a second to notice a stopped container on
            # hosts without a populated notification (pure cgroup v1)
            timeout = min(1.0, max(0.0, next_stats - time.monotonic()))
            stopped = False
            for ev in watcher.wait(timeout):
                kind = ev["type"]
                if kind == "oom":
                    _emit({"type": "oom", "id": cid})
                elif kind == "pids.max":
                    _emit({"type": "pids.max", "id": cid, "data": {"count": ev["count"], "total": ev["total"]}})
                elif kind in ("empty", "deleted"):
                    stopped = True
            if stopped or watcher.closed or not state.is_alive():
                return
            now = time.monotonic()
            if now >= next_stats:
                try:
                    data = mgr.stats()
                except BerthError as exc:
                    if not mgr.exists():
                        return
                    log.error(f"events: stats of container {cid}: {exc.message}")
                else:
                    _emit({"type": "stats", "id": cid, "data": data})
                next_stats += interval
                if next_stats < now:  # fell behind (suspended): no burst of stats
                    next_stats = now + interval
