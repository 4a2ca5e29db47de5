"""The engine's container operations: the façade the CLI (and later the API)
calls. Each operation takes a container reference (id, name or id prefix)
and works from the database record; `refresh` reconciles a record with the
kernel when its monitor is gone (a crash, a kill -9, a reboot).

Lifecycle operations on one container take its flock (`store.Lock`), so
several berth processes may act at once.
"""

from __future__ import annotations

import os
import sys
import time

from berth import jsonio
from berth.ctx import ExitStack, suppress
from berth.engine import names, spawn, spec
from berth.engine.options import RunOptions, parse_signal
from berth.engine.procs import alive, wait_gone, wait_pid
from berth.engine.runtimes import CliRuntime, InProcessRuntime, runtime_for
from berth.engine.store import ZERO_TIME, ContainerRecord, Lock, Store
from berth.errors import (
    BerthError,
    ConflictError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
)
from berth.fsutil import is_mountpoint
from berth.paths import Paths
from berth.structs import dataclass

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from typing import Any

    from berth.engine.volumes import Volumes


def _warn(fmt: str, *args: object) -> None:
    """logging's warning (logging is imported only when there is one: it
    costs several ms of a `berth run`)."""
    import logging

    logging.getLogger(__name__).warning(fmt, *args)


DEFAULT_LOG_MAX_SIZE = 10 << 20
DEFAULT_LOG_MAX_FILE = 3


def now() -> str:
    t = time.time_ns()
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000))
            + f".{t % 1_000_000_000:09d}Z")


@dataclass
class Attach:
    """The CLI's fds a foreground container's output is copied to (and, with
    -i, its stdin)."""

    stdout: int = 1
    stderr: int = 2
    stdin: int = -1
    tty_size: tuple[int, int] | None = None  # rows, columns of the CLI's terminal


@dataclass
class Started:
    record: ContainerRecord
    pid: int
    status_fd: int  # the monitor's status pipe (foreground runs read {"exit": N})

    def wait_exit(self, engine: Engine | None = None) -> int:
        """The exit code the monitor reports once the container has exited.
        With --rm the monitor asks us to remove it (we have the engine
        loaded): done here, then the pipe is closed, which tells the monitor
        (it removes the container itself if we die first)."""
        buf = b""
        try:
            while True:
                try:
                    chunk = os.read(self.status_fd, 4096)
                except InterruptedError:
                    continue
                if not chunk:
                    break
                buf += chunk
                msg = _last_message(buf)
                if msg.get("remove") and engine is not None:
                    with suppress(NotFoundError):
                        if isinstance(msg.get("record"), dict):
                            # the monitor left the exit to us (Monitor.cli_removes)
                            rec = self.record
                            engine.store.record_exit(rec.id, int(msg["exit"]), msg["record"],
                                                     {"image": rec.image, "name": rec.name})
                        engine.remove(self.record.id, force=True, volumes=True,
                                      from_monitor=True)
                    return int(msg["exit"])
        finally:
            os.close(self.status_fd)
        msg = _last_message(buf)
        return int(msg["exit"]) if "exit" in msg else -1


class Engine:
    def __init__(self, paths: Paths, images: Any = None) -> None:
        """`images` is an ImageService or a callable making one (the CLI
        passes its configured one); by default one is made on first use."""
        self.paths = paths
        self._store: Store | None = None
        self._images: Any = None
        self._images_factory = images

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
        if self._images is not None:
            self._images.close()

    @property
    def store(self) -> Store:
        if self._store is None:
            # container roots, logs and volumes live below: not traversable by
            # other users (CVE-2021-41091: a setuid binary in a container's
            # rootfs reachable by an unprivileged host user)
            for d in (self.paths.root, self.paths.state):
                os.makedirs(d, mode=0o700, exist_ok=True)
                if os.stat(d).st_mode & 0o077:
                    os.chmod(d, 0o700)
            self._store = Store(self.paths)
        return self._store

    @property
    def images(self) -> Any:
        """An ImageView: the light part of the image service, the rest of it
        behind (made from the `images` given to the engine, on first use)."""
        if self._images is None:
            from berth.engine.imageview import ImageView

            self._images = ImageView(self.paths, self._images_factory, self.store.conn)
        return self._images

    @property
    def volumes(self) -> Volumes:
        # imported when a container has volumes or mounts, not at every start
        from berth.engine.volumes import Volumes

        return Volumes(self.store)

    # paths ------------------------------------------------------------------------------

    def bundle(self, cid: str) -> str:
        return self.paths.container(cid)

    def rootfs(self, cid: str) -> str:
        return os.path.join(self.bundle(cid), "rootfs")

    def log_path(self, cid: str) -> str:
        return os.path.join(self.bundle(cid), f"{cid}-json.log")

    def lock(self, cid: str) -> Lock:
        return Lock(os.path.join(self.paths.state, "locks", cid))

    def runtime(self, rec: ContainerRecord) -> InProcessRuntime | CliRuntime:
        return runtime_for(rec.host_config.get("Runtime") or "berth",
                           os.path.join(self.paths.state, "runtimes"),
                           os.path.join(self.bundle(rec.id), "runtime.log"))

    # lookup -----------------------------------------------------------------------------

    def get(self, ref: str) -> ContainerRecord:
        return self.refresh(self.store.resolve(ref))

    def list(self) -> list[ContainerRecord]:
        return [self.refresh(r) for r in self.store.list()]

    def refresh(self, rec: ContainerRecord) -> ContainerRecord:
        """A record whose monitor died (kill -9, reboot) while it claimed to
        run: if the container is gone too, it is recorded as exited (255, as
        Docker after losing a shim) and its runtime state and mounts cleaned."""
        if not rec.is_running or alive(rec.monitor_pid, rec.monitor_start):
            return rec
        rt = self.runtime(rec)
        state = None
        with suppress(BerthError, OSError):
            state = rt.state(rec.id)
        if state is not None and state.get("status") in ("running", "paused", "created"):
            return rec  # running on without its monitor: stop/kill/rm still work
        with self.lock(rec.id):
            rec = self.store.get(rec.id)
            if not rec.is_running or alive(rec.monitor_pid, rec.monitor_start):
                return rec
            self._teardown(rec, rt)
            self.store.update(rec.id, status="exited", pid=0, exit_code=255,
                              finished_at=now() if rec.finished_at == ZERO_TIME
                              else rec.finished_at, reason="monitor:lost")
            return self.store.get(rec.id)

    # boot -------------------------------------------------------------------------------

    def maybe_boot(self) -> list[str]:
        """Run `boot` once per host boot: on the first command after a
        reboot (the kernel's boot_id differs from the one recorded under
        --state, which is a tmpfs that a reboot empties anyway)."""
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                boot_id = f.read().strip()
        except OSError:
            return []
        mark = os.path.join(self.paths.state, "boot_id")
        try:
            with open(mark) as f:
                if f.read().strip() == boot_id:
                    return []
        except FileNotFoundError:
            pass
        import fcntl

        os.makedirs(self.paths.state, mode=0o711, exist_ok=True)
        lock = os.open(mark + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                with open(mark) as f:
                    if f.read().strip() == boot_id:
                        return []  # another berth did it meanwhile
            except FileNotFoundError:
                pass
            started = self.boot() if os.path.exists(self.paths.database) else []
            jsonio.write_atomic(mark, boot_id + "\n", 0o644)
            return started
        finally:
            os.close(lock)

    def boot(self) -> list[str]:
        """After a host reboot (or `berth system boot`): containers whose
        monitor is gone are recorded as exited, and those with restart policy
        `always`, or `unless-stopped` and not stopped by a user, are started
        again, as Docker does when its daemon starts."""
        started = []
        for rec in self.list():
            policy = (rec.host_config.get("RestartPolicy") or {}).get("Name") or "no"
            if rec.status in ("running", "paused", "restarting", "removing"):
                continue
            if policy == "always" or (policy == "unless-stopped" and not rec.stop_requested):
                try:
                    self.start(rec.id)
                    started.append(rec.id)
                except BerthError as exc:
                    _warn("start %s after boot: %s", rec.id, exc.message)
        return started

    # create -----------------------------------------------------------------------------

    def create(self, opts: RunOptions) -> ContainerRecord:
        if opts.name and not names.is_valid_name(opts.name):
            raise InvalidArgumentError(
                f'Invalid container name ({opts.name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are '
                "allowed")
        image = self.images.get(opts.image)
        icfg = self.images.config(image).config
        runtime_for(opts.runtime, "/nonexistent", "/dev/null")  # an unknown runtime fails here
        cid = names.new_id()
        config = self._docker_config(cid, opts, icfg)
        spec.process_args(config)  # "no command specified" before anything exists
        host_config = self._host_config(opts)
        rec = ContainerRecord(
            id=cid, name=(opts.name or self.store.pick_name()).removeprefix("/"),
            image=opts.image, image_id=str(image.id), created=now(), config=config,
            host_config=host_config,
            extra={"Path": config["Entrypoint"][0] if config.get("Entrypoint")
                   else (config.get("Cmd") or [""])[0]},
        )
        with ExitStack() as undo:
            # named volumes first, as Docker makes them at create: a missing one
            # with its --mount volume-opt (a bad option fails here, nothing made);
            # removed by an undo that runs after the record's
            for m in host_config["Mounts"]:
                if m["Type"] == "volume" and self.volumes.create_for_mount(m):
                    undo.callback(self.volumes.remove, m["Source"])
            self.store.insert(rec)
            undo.callback(self.store.delete, cid)
            os.makedirs(self.paths.containers, mode=0o701, exist_ok=True)
            os.makedirs(self.bundle(cid), mode=0o710)
            undo.callback(_rmtree, self.bundle(cid))
            os.mkdir(self.rootfs(cid), 0o755)
            self.images.rootfs(str(image.id), cid, readonly=False)
            undo.callback(self._remove_snapshot, cid)
            anonymous = self._anonymous_volumes(icfg, opts)
            if anonymous:
                for m in anonymous:
                    self.volumes.create_for_mount(m, anonymous=True)
                    undo.callback(self.volumes.remove, m["Source"])
                host_config["Mounts"] = [*host_config["Mounts"], *anonymous]
                self.store.update(cid, host_config=host_config)
            undo.pop_all()
        self._event("create", rec)
        return self.store.get(cid)

    def _docker_config(self, cid: str, opts: RunOptions, icfg: Any) -> dict[str, Any]:
        from berth.engine.options import merge_env

        image_env = list(getattr(icfg, "env", None) or [])
        if opts.entrypoint is not None:
            entrypoint = [opts.entrypoint] if opts.entrypoint else None
            cmd = list(opts.command) or None
        else:
            entrypoint = list(getattr(icfg, "entrypoint", None) or []) or None
            cmd = list(opts.command) or list(getattr(icfg, "cmd", None) or []) or None
        labels = dict(getattr(icfg, "labels", None) or {})
        labels.update(opts.labels)
        config: dict[str, Any] = {
            "Hostname": opts.hostname or (os.uname().nodename if "host" in (opts.network,
                                                                           opts.uts)
                                          else cid[:12]),
            "Domainname": "",
            "User": opts.user or getattr(icfg, "user", None) or "",
            "AttachStdin": opts.interactive,
            "AttachStdout": True,
            "AttachStderr": True,
            "Tty": opts.tty,
            "OpenStdin": opts.interactive,
            "StdinOnce": opts.interactive,
            "Env": merge_env(image_env, opts.env),
            "Cmd": cmd,
            "Image": opts.image,
            "Volumes": getattr(icfg, "volumes", None),
            "WorkingDir": opts.workdir or getattr(icfg, "working_dir", None) or "",
            "Entrypoint": entrypoint,
            "OnBuild": None,
            "Labels": labels,
        }
        stop_signal = opts.stop_signal or getattr(icfg, "stop_signal", None)
        if stop_signal:
            parse_signal(stop_signal)
            config["StopSignal"] = stop_signal
        if opts.stop_timeout is not None:
            config["StopTimeout"] = opts.stop_timeout
        health = _healthcheck(getattr(icfg, "healthcheck", None), opts)
        if health:
            config["Healthcheck"] = health
        if opts.publish:
            from berth.network.attach import port_bindings

            config["ExposedPorts"] = {**(config.get("ExposedPorts") or {}),
                                      **port_bindings(opts.publish)[1]}
        if opts.mac_address:
            config["MacAddress"] = opts.mac_address
        return config

    def _host_config(self, opts: RunOptions) -> dict[str, Any]:
        log_config = {"Type": "json-file", "Config": dict(opts.log_opts)}
        for key in opts.log_opts:
            if key not in ("max-size", "max-file"):
                raise InvalidArgumentError(f"unknown log opt '{key}' for json-file log driver")
        if "max-size" in opts.log_opts:
            from berth.engine.options import parse_size

            parse_size(opts.log_opts["max-size"], "--log-opt max-size")
        if "max-file" in opts.log_opts and not opts.log_opts["max-file"].isdigit():
            raise InvalidArgumentError("invalid value for max-file: "
                                       f"{opts.log_opts['max-file']}")
        spec.capabilities(opts.cap_add, opts.cap_drop, opts.privileged)  # names checked now
        spec._security_opts(opts.security_opt)
        for kind, mode in (("network", opts.network), ("pid", opts.pid), ("ipc", opts.ipc),
                           ("uts", opts.uts)):
            if mode.startswith("container:"):
                self.get(mode.split(":", 1)[1])  # No such container: ... now, not at start
            elif kind == "network" and mode not in ("none", "host"):
                from berth.network.attach import check_network

                check_network(self.paths, mode)  # network X not found; the default one made
                continue
            spec.check_mode(kind, mode)
        return {
            "Binds": [f"{m.source}:{m.target}{':ro' if m.read_only else ''}"
                      for m in opts.mounts if m.create_host_path or (m.source and
                      m.type == "volume")] or None,
            "NetworkMode": "bridge" if opts.network in ("default", "") else opts.network,
            **_network_host_config(opts),
            "PidMode": opts.pid,
            "IpcMode": opts.ipc or "private",
            "UTSMode": opts.uts,
            "RestartPolicy": opts.restart.docker(),
            "AutoRemove": opts.auto_remove,
            # anonymous volumes (no source) are named and added by create
            "Mounts": [dict(m.docker(), **({"CreateHostPath": True} if m.create_host_path
                                          else {})) for m in opts.mounts
                       if m.type != "volume" or m.source],
            "Tmpfs": dict(opts.tmpfs) or None,
            "ReadonlyRootfs": opts.read_only,
            "Memory": opts.memory,
            "MemorySwap": opts.memory_swap,
            "MemoryReservation": opts.memory_reservation,
            "NanoCpus": opts.nano_cpus,
            "CpuShares": opts.cpu_shares,
            "CpusetCpus": opts.cpuset_cpus,
            "PidsLimit": opts.pids_limit or None,
            "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in opts.ulimits]
            or None,
            "CapAdd": opts.cap_add or None,
            "CapDrop": opts.cap_drop or None,
            "SecurityOpt": opts.security_opt or None,
            "Privileged": opts.privileged,
            "Init": opts.init or None,
            "Runtime": opts.runtime or "berth",
            "LogConfig": log_config,
            "Sysctls": opts.sysctls or None,
            "Devices": opts.devices or None,
        }

    def _anonymous_volumes(self, icfg: Any, opts: RunOptions) -> list[dict[str, Any]]:
        targets = {m.target for m in opts.mounts} | set(opts.tmpfs)
        out = []
        for path in getattr(icfg, "volumes", None) or {}:
            if path not in targets:
                out.append({"Type": "volume", "Source": os.urandom(32).hex(), "Target": path,
                            "Anonymous": True})
        for m in opts.mounts:
            if m.type == "volume" and not m.source:
                out.append({"Type": "volume", "Source": os.urandom(32).hex(),
                            "Target": m.target, "Anonymous": True,
                            **({"VolumeOptions": m.volume_options} if m.volume_options
                               else {})})
        return out

    def _remove_snapshot(self, cid: str) -> None:
        with suppress(NotFoundError):
            self.images.snapshots.remove(cid)

    # start ------------------------------------------------------------------------------

    def start(self, ref: str, attach: Attach | None = None) -> Started:
        """Start a created or exited container under a new monitor; returns
        once it runs (or raises why it could not)."""
        rec = self.get(ref)
        with self.lock(rec.id):
            rec = self.store.get(rec.id)
            if rec.status in ("running", "paused", "restarting") and alive(
                    rec.monitor_pid, rec.monitor_start):
                return Started(rec, rec.pid, -1)
            if rec.status == "removing":
                raise ConflictError(f"container {rec.id} is marked for removal and cannot be "
                                    "started")
            # a monitor that recorded the exit may still be unmounting the rootfs
            wait_gone(rec.monitor_pid, rec.monitor_start, 15)
            # the zygote forks the monitor while the bundle is written; its
            # start helper sets the monitor up meanwhile (from monitor_cfg)
            monitor_cfg = self._monitor_config(rec, attach)
            pending = spawn.begin(self.paths, self.bundle(rec.id), attach,
                                  networked=not _unnetworked(rec.host_config.get("NetworkMode")
                                                             or ""), config=monitor_cfg)
            try:
                self._prepare(rec, attach, monitor_cfg)
            except BaseException:
                pending.cancel()
                raise
            r = pending.go()
            from berth.engine.execd import write_hint

            # berth exec's way to the monitor (under the lock, as renames),
            # written while the container starts rather than after: best
            # effort, and an exec that finds it before the monitor listens,
            # or after a failed start, takes the engine's path
            write_hint(self.paths.state, rec.name, rec.id)
            msg = _read_message(r)
            # the container's processes are in its cgroup: the launcher's
            # warming of the cgroup-move lock (berth.rcu) has served,
            # and its writes would now only contend with the container's
            # forks and exits and its monitor's cgroup removal
            from berth import rcu

            rcu.stop()
        if "pid" not in msg:
            os.close(r)
            text = msg.get("error") or "the monitor exited before the container started"
            raise StartError(text, exit_code=int(msg.get("exit_code") or 125),
                             container_id=rec.id)
        if attach is None:
            os.close(r)
            r = -1
        return Started(self.store.get(rec.id), int(msg["pid"]), r)

    def _event(self, action: str, rec: ContainerRecord, **extra: str) -> None:
        """Record an event (Docker's shape: type, action, actor with the
        image, name and labels as attributes)."""
        attrs = {"image": rec.image, "name": rec.name}
        attrs.update({k: str(v) for k, v in (rec.config.get("Labels") or {}).items()})
        attrs.update(extra)
        try:
            self.store.event(action, rec.id, attrs)
        except BerthError as exc:
            _warn("record event %s of %s: %s", action, rec.id, exc.message)

    def _prepare(self, rec: ContainerRecord, attach: Attach | None = None,
                 monitor_cfg: dict[str, Any] | None = None) -> None:
        """Mount the rootfs (if not yet), write /etc files, config.json and
        monitor.json. Everything it makes is undone by `_teardown`."""
        bundle = self.bundle(rec.id)
        rootfs = self.rootfs(rec.id)
        rt = self.runtime(rec)
        with suppress(BerthError):
            rt.delete(rec.id, force=True)  # a runtime record left by a killed monitor
        with ExitStack() as undo:
            if not is_mountpoint(rootfs):
                from berth.image.snapshots import mount_all, volatile

                mounts = self.images.snapshots.mounts(rec.id)
                if rec.host_config.get("AutoRemove"):
                    # removed at its exit: its layer need not survive a crash
                    try:
                        mount_all(volatile(mounts), rootfs)
                    except BerthError:  # a kernel without overlay's "volatile"
                        mount_all(mounts, rootfs)
                else:
                    mount_all(mounts, rootfs)
                undo.callback(_unmount, rootfs)
            hc = rec.host_config
            network = hc.get("NetworkMode") or "none"
            etc = spec.write_etc_files(bundle, rec.config.get("Hostname") or rec.id[:12],
                                       network)
            if network == "none":
                spec.write_dns_options(etc, hc)
            user_mounts = []
            if hc.get("Mounts"):
                from berth.engine.volumes import copy_up, oci_mounts

                user_mounts = oci_mounts(self.volumes, hc["Mounts"])
                for m in hc["Mounts"]:
                    if m.get("Type") == "volume" and not (m.get("VolumeOptions") or {}).get(
                            "NoCopy"):
                        copy_up(rootfs, m["Target"], self.volumes.path(m["Source"]))
            joins = {}
            for kind, key in spec.MODE_KEYS.items():
                mode = hc.get(key) or ""
                if mode.startswith("container:"):
                    other = self.get(mode.split(":", 1)[1])
                    if other.status != "running" or not other.pid:
                        raise ConflictError(f"cannot join {kind} namespace of a non running "
                                            f"container: {other.id}")
                    joins[kind] = other.pid
            init = spec.init_binary(os.path.join(self.paths.root, "bin")) if hc.get("Init") \
                else ""
            cfg = spec.build(rec.id, rec.config, hc, rootfs, etc, user_mounts, joins=joins,
                             init_binary=init)
            # both made again at every start: no fsync (durable=False)
            jsonio.write_atomic(os.path.join(bundle, "config.json"),
                                jsonio.dumps_string_keyed(cfg), 0o600, durable=False)
            if monitor_cfg is None:
                monitor_cfg = self._monitor_config(rec, attach)
            self.store.update(rec.id, stop_requested=0, error="", reason="", restart_count=0,
                              health="")
            jsonio.write_atomic(os.path.join(bundle, "monitor.json"), jsonio.dumps(monitor_cfg),
                                0o600, durable=False)
            undo.pop_all()

    def _monitor_config(self, rec: ContainerRecord, attach: Attach | None) -> dict[str, Any]:
        """The container's monitor.json (engine/monitor.py)."""
        bundle = self.bundle(rec.id)
        hc = rec.host_config
        opts = hc.get("LogConfig", {}).get("Config") or {}
        max_size = DEFAULT_LOG_MAX_SIZE
        if "max-size" in opts:
            from berth.engine.options import parse_size

            max_size = parse_size(opts["max-size"], "--log-opt max-size")
        return {
            "id": rec.id,
            "bundle": bundle,
            "runtime": hc.get("Runtime") or "berth",
            "runtime_state": os.path.join(self.paths.state, "runtimes"),
            "runtime_log": os.path.join(bundle, "runtime.log"),
            "log_path": self.log_path(rec.id),
            "log_max_size": max_size,
            "log_max_file": int(opts.get("max-file") or DEFAULT_LOG_MAX_FILE),
            "database": self.paths.database,
            "root": self.paths.root,
            "state": self.paths.state,
            "restart": hc.get("RestartPolicy") or {},
            "tty": bool(rec.config.get("Tty")),
            "image": rec.image,
            "name": rec.name,
            "healthcheck": _monitor_health(rec),
            "auto_remove": bool(hc.get("AutoRemove")),
            "restart_count": 0,
            "sys_path": [p for p in sys.path if p],
            "network": _network_request(rec),
            **(spawn.attach_config(attach) if attach is not None else {}),
        }

    # stop, kill, restart ----------------------------------------------------------------

    def stop(self, ref: str, timeout: int | None = None, signal: str | None = None) -> None:
        rec = self.get(ref)
        if not rec.is_running:
            return
        self.store.update(rec.id, stop_requested=1)
        rt = self.runtime(rec)
        if rec.status == "restarting":
            wait_gone(rec.monitor_pid, rec.monitor_start, 70)
            return
        sig = parse_signal(signal) if signal else spec.stop_signal(rec.config)
        self._event("kill", rec, signal=str(sig))
        if timeout is None:
            timeout = rec.config.get("StopTimeout")
            timeout = 10 if timeout is None else int(timeout)
        if rec.status == "paused":
            with suppress(BerthError):
                rt.resume(rec.id)
        with suppress(BerthError):
            rt.kill(rec.id, sig)
        if timeout < 0:
            wait_pid(rec.pid, None)
        elif not wait_pid(rec.pid, timeout):
            with suppress(BerthError):
                rt.kill(rec.id, 9, all_processes=True)
            wait_pid(rec.pid, 10)
        self._await_monitor(rec, 128 + sig)
        self._event("stop", rec)

    def _await_monitor(self, rec: ContainerRecord, code: int) -> None:
        """Wait for the monitor to record the exit; without a monitor, record
        it here (the exit status is lost: 128+signal sent)."""
        if alive(rec.monitor_pid, rec.monitor_start):
            wait_gone(rec.monitor_pid, rec.monitor_start, 15)
            return
        with self.lock(rec.id):
            cur = self.store.get(rec.id)
            if not cur.is_running:
                return
            self._teardown(cur, self.runtime(cur))
            self.store.update(rec.id, status="exited", pid=0, exit_code=code,
                              finished_at=now(), reason=f"stopped:{code}")

    def kill(self, ref: str, signal: str = "KILL") -> ContainerRecord:
        rec = self.get(ref)
        sig = parse_signal(signal)
        if rec.status not in ("running", "paused"):
            raise ConflictError(f"Cannot kill container: {ref}: Container {rec.id} is not "
                                "running")
        rt = self.runtime(rec)
        self._event("kill", rec, signal=str(sig))
        try:
            rt.kill(rec.id, sig)
        except ConflictError:
            raise ConflictError(f"Cannot kill container: {ref}: Container {rec.id} is not "
                                "running") from None
        if sig == 9:
            wait_pid(rec.pid, 10)
            if not alive(rec.monitor_pid, rec.monitor_start):
                self._await_monitor(rec, 137)
        return rec

    def restart(self, ref: str, timeout: int | None = None) -> None:
        self.stop(ref, timeout)
        rec = self.get(ref)
        if alive(rec.monitor_pid, rec.monitor_start):
            wait_gone(rec.monitor_pid, rec.monitor_start, 15)
        self.start(ref)

    def pause(self, ref: str) -> None:
        rec = self.get(ref)
        if rec.status == "paused":
            raise ConflictError(f"Container {rec.id} is already paused")
        if rec.status != "running":
            raise ConflictError(f"Container {rec.id} is not running")
        self.runtime(rec).pause(rec.id)
        self.store.update(rec.id, status="paused")
        self._event("pause", rec)

    def unpause(self, ref: str) -> None:
        rec = self.get(ref)
        if rec.status != "paused":
            raise ConflictError(f"Container {rec.id} is not paused")
        self.runtime(rec).resume(rec.id)
        self.store.update(rec.id, status="running")
        self._event("unpause", rec)

    def update(self, ref: str, changes: dict[str, Any]) -> ContainerRecord:
        """`docker update`: HostConfig resources (Memory, MemorySwap,
        NanoCpus, CpuShares, CpusetCpus, PidsLimit) applied to the live
        cgroup, and the RestartPolicy (read by the monitor at the next exit)."""
        rec = self.get(ref)
        with self.lock(rec.id):
            rec = self.store.get(rec.id)
            if (changes.get("RestartPolicy") or {}).get("Name") and \
                    rec.host_config.get("AutoRemove"):
                # as Docker (a --rm container's monitor decides without its row)
                raise InvalidArgumentError(f"Cannot update container {rec.id}: Restart policy "
                                           "cannot be updated because AutoRemove is enabled "
                                           "for the container")
            hc = dict(rec.host_config)
            hc.update(changes)
            if hc.get("MemorySwap") and hc.get("MemorySwap", 0) > 0 and \
                    hc.get("Memory") and hc["MemorySwap"] < hc["Memory"]:
                raise InvalidArgumentError("Minimum memoryswap limit should be larger than "
                                           "memory limit, see usage")
            if rec.status in ("running", "paused"):
                resources = spec._resources(hc, bool(hc.get("Privileged")))
                resources.pop("devices", None)
                try:
                    self.cgroup(rec).update(resources)
                except OSError as exc:
                    from berth.errors import from_oserror

                    raise from_oserror(exc, "update cgroup of", rec.id) from exc
            self.store.update(rec.id, host_config=hc)
        return self.store.get(rec.id)

    def rename(self, ref: str, new_name: str) -> None:
        rec = self.get(ref)
        new_name = new_name.removeprefix("/")
        if not names.is_valid_name(new_name):
            raise InvalidArgumentError(
                f"Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are "
                "allowed")
        if new_name == rec.name:
            raise InvalidArgumentError("Renaming a container with the same name as its "
                                       "current name")
        from berth.engine.execd import drop_hint, write_hint

        old = rec.name
        with self.lock(rec.id):
            # berth exec's name hints: the old one goes before the database
            # changes, the new one comes after, so a crash between leaves a
            # missing hint (the engine's path), never a wrong one
            drop_hint(self.paths.state, old, rec.id)
            self.store.rename(rec.id, new_name)
            write_hint(self.paths.state, new_name, rec.id)
        rec.name = new_name
        self._event("rename", rec, oldName=f"/{old}")

    # remove -----------------------------------------------------------------------------

    def remove(self, ref: str, force: bool = False, volumes: bool = False,
               from_monitor: bool = False) -> ContainerRecord:
        rec = self.store.resolve(ref) if from_monitor else self.get(ref)
        if rec.is_running and not from_monitor:
            if not force:
                raise ConflictError(
                    f"You cannot remove a {rec.status} container {rec.id}. Stop the container "
                    "before attempting removal or force remove")
            self.store.update(rec.id, stop_requested=1, status="removing")
            rt = self.runtime(rec)
            with suppress(BerthError):
                if rec.status == "paused":
                    rt.resume(rec.id)
            with suppress(BerthError):
                rt.kill(rec.id, 9, all_processes=True)
            wait_pid(rec.pid, 10)
            wait_gone(rec.monitor_pid, rec.monitor_start, 15)
        with self.lock(rec.id):
            try:
                rec = self.store.get(rec.id)
            except NotFoundError:
                return rec  # removed meanwhile (its monitor's --rm)
            from berth.engine.execd import drop_hint

            drop_hint(self.paths.state, rec.name, rec.id)  # before the record goes
            self._teardown(rec, self.runtime(rec))
            self._remove_snapshot(rec.id)
            _rmtree(self.bundle(rec.id))
            self.store.delete(rec.id)
            self._event("destroy", rec)
            if volumes:
                for m in rec.host_config.get("Mounts") or []:
                    if m.get("Anonymous"):
                        with suppress(BerthError):
                            self.volumes.remove(m["Source"])
            with suppress(FileNotFoundError):
                os.unlink(os.path.join(self.paths.state, "locks", rec.id))
        return rec

    def _teardown(self, rec: ContainerRecord, rt: InProcessRuntime | CliRuntime) -> None:
        """Runtime state, cgroup and rootfs mount of a container that is not
        (or no longer) supervised."""
        try:
            rt.delete(rec.id, force=True)
        except BerthError as exc:
            _warn("delete %s in runtime %s: %s", rec.id, rt.name, exc)
        if _network_request(rec):
            from berth.network.attach import release_container

            try:
                release_container(self.paths, rec.id)
            except BerthError as exc:
                _warn("release networks of %s: %s", rec.id, exc)
        _unmount(self.rootfs(rec.id))

    def prune(self) -> list[str]:
        removed = []
        for rec in self.list():
            if rec.status in ("exited", "created", "dead"):
                self.remove(rec.id)
                removed.append(rec.id)
        return removed

    # exec -------------------------------------------------------------------------------

    def exec(self, ref: str, args: list[str], env: list[str] | None = None, workdir: str = "",
             user: str = "", privileged: bool = False, detach: bool = False,
             tty: bool = False) -> int:
        """Run `args` in a running container with this process's stdio, as
        `docker exec`: the container's environment, user and capabilities
        unless overridden; returns its exit status. With `tty`, the process
        gets a pty of its own, relayed to this process's stdio."""
        from berth.engine import execd

        rec = self.get(ref)
        if rec.status == "paused":
            raise ConflictError(f"Container {rec.id} is paused, unpause the container before "
                                "exec")
        if rec.status != "running":
            raise ConflictError(f"Container {rec.id} is not running")
        cfg = jsonio.load_file(os.path.join(self.bundle(rec.id), "config.json"))
        assert isinstance(cfg, dict)
        proc = execd.build_process(cfg, self.rootfs(rec.id), args, env or [], workdir, user,
                                   privileged)
        if tty:
            # with `detach` too: the runtime hands its pty to a holder (engine/ttyhold.py)
            proc["terminal"] = True
            proc.pop("consoleSize", None)  # the runtime takes this terminal's
        path, fd = execd.process_file(proc)  # a memfd: nothing written to disk
        try:
            return self.runtime(rec).exec(rec.id, path, detach, tty=tty)
        except BerthError as exc:
            raise StartError(exc.message, exit_code=_exec_code(exc.message)) from None
        finally:
            os.close(fd)

    def attach(self, ref: str, stdout: int, stderr: int, stdin: int = -1) -> Any:
        """Connect to the monitor of a running container: its output is
        copied to `stdout`/`stderr` from now on (and `stdin` to its terminal).
        Returns the connection: the monitor writes ``{"exit": N}`` on it when
        the container stops; closing it detaches."""
        import _socket
        import array

        rec = self.get(ref)
        if rec.status not in ("running", "paused"):
            raise ConflictError("You cannot attach to a stopped container, start it first")
        if not alive(rec.monitor_pid, rec.monitor_start):
            raise ConflictError(f"container {rec.id} has no monitor to attach to")
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # relative to the bundle: a path of any length fits sun_path
            os.chdir(self.bundle(rec.id))
            sock.connect("attach.sock")
        except OSError as exc:
            sock.close()
            raise ConflictError(f"attach to container {rec.id}: "
                                f"{os.strerror(exc.errno or 0).lower()}") from None
        finally:
            os.fchdir(cwd)
            os.close(cwd)
        fds = [stdout, stderr] + ([stdin] if stdin >= 0 else [])
        sock.sendmsg([b"attach"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                    array.array("i", fds).tobytes())])
        return sock

    def image_in_use(self, image_id: str) -> bool:
        """Whether a container (in any state) was made from `image_id`: the
        image service must not remove it (pass this as its `in_use`)."""
        return bool(self.store.conn.execute(
            "SELECT 1 FROM containers WHERE image_id = ? LIMIT 1", (str(image_id),)).fetchone())

    # wait -------------------------------------------------------------------------------

    def wait(self, ref: str) -> int:
        rec = self.get(ref)
        while True:
            rec = self.refresh(self.store.get(rec.id))
            if rec.status not in ("running", "paused", "restarting", "removing"):
                return rec.exit_code
            if rec.pid and rec.status in ("running", "paused"):
                wait_pid(rec.pid, 1.0)
            time.sleep(0.02)

    # processes, stats -------------------------------------------------------------------

    def cgroup(self, rec: ContainerRecord) -> Any:
        from berth.cgroups import open_manager

        return open_manager(f"/berth/{rec.id}", rec.id)

    def pids(self, rec: ContainerRecord) -> list[int]:
        if rec.status not in ("running", "paused"):
            raise ConflictError(f"Container {rec.id} is not running")
        return sorted(self.cgroup(rec).pids())

    def stats(self, rec: ContainerRecord) -> dict[str, Any]:
        return self.cgroup(rec).stats()


class StartError(BerthError):
    """The container could not start; `exit_code` is Docker's (125, or 126/127
    when its command could not be executed)."""

    category = "invalid_argument"
    exit_code = 125
    http_status = 400

    def __init__(self, message: str, exit_code: int = 125, **data: object) -> None:
        super().__init__(message, **data)
        self.exit_code = exit_code


# helpers --------------------------------------------------------------------------------


def _healthcheck(image: dict[str, Any] | None, opts: RunOptions) -> dict[str, Any] | None:
    """Config.Healthcheck: the image's HEALTHCHECK with the --health-* flags
    over it (Docker's merge); None when there is none or --no-healthcheck."""
    if opts.no_healthcheck:
        if opts.health_cmd:
            raise InvalidArgumentError("--no-healthcheck conflicts with --health-* options")
        return {"Test": ["NONE"]}
    hc = dict(image or {})
    if opts.health_cmd is not None:
        hc["Test"] = ["CMD-SHELL", opts.health_cmd]
    for key, value in (("Interval", opts.health_interval), ("Timeout", opts.health_timeout),
                       ("StartPeriod", opts.health_start_period),
                       ("Retries", opts.health_retries)):
        if value < 0:
            raise InvalidArgumentError(f"--health-{key.lower()} cannot be negative")
        if value:
            hc[key] = value
    if opts.health_on_failure not in ("none", "kill", "restart", "stop"):
        raise InvalidArgumentError(f"invalid --health-on-failure: {opts.health_on_failure}")
    if opts.health_on_failure != "none":
        if not hc.get("Test"):
            raise InvalidArgumentError("--health-on-failure needs a health check")
        hc["OnFailure"] = opts.health_on_failure
    return hc or None


def _monitor_health(rec: ContainerRecord) -> dict[str, Any] | None:
    hc = rec.config.get("Healthcheck") or {}
    test = hc.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    return {"Test": test, "Interval": hc.get("Interval") or 30_000_000_000,
            "Timeout": hc.get("Timeout") or 30_000_000_000, "Retries": hc.get("Retries") or 3,
            "StartPeriod": hc.get("StartPeriod") or 0, "OnFailure": hc.get("OnFailure", "none")}


def _rmtree(path: str) -> None:
    from berth.fsutil import rmtree

    rmtree(path, ignore_errors=True)


def _unnetworked(mode: str) -> bool:
    """Network modes berth.network has nothing to do with (its
    attach.is_networked, without importing berth.network: none, host and
    container:<id>)."""
    return mode in ("none", "host") or mode.startswith("container:")


def _network_request(rec: ContainerRecord) -> dict[str, Any] | None:
    hc = rec.host_config
    if _unnetworked(hc.get("NetworkMode") or ""):
        return None
    from berth.network.attach import start_request

    return start_request(hc, rec.config, rec.name, hc.get("BerthEndpointsConfig"))


def _network_host_config(opts: RunOptions) -> dict[str, Any]:
    """Docker's HostConfig network fields, checked now (not at start)."""
    bindings: dict[str, Any] = {}
    if not (_unnetworked(opts.network) and not opts.ip and not opts.ip6):
        from berth.network.attach import check_network_options, is_networked, port_bindings

        check_network_options(opts.network, opts.ip or None, opts.ip6 or None)
        if is_networked(opts.network):
            bindings, _ = port_bindings(opts.publish)
    return {
        "PortBindings": bindings,
        "PublishAllPorts": opts.publish_all,
        "Dns": list(opts.dns),
        "DnsSearch": list(opts.dns_search),
        "DnsOptions": list(opts.dns_options),
        "ExtraHosts": list(opts.extra_hosts) or None,
        "BerthEndpointsConfig": {opts.network: {
            "IPAMConfig": {**({"IPv4Address": opts.ip} if opts.ip else {}),
                           **({"IPv6Address": opts.ip6} if opts.ip6 else {})} or None,
            "Aliases": list(opts.network_aliases)}},
    }


def _exec_code(message: str) -> int:
    from berth.engine.monitor import _exec_exit_code

    code = _exec_exit_code(message)
    return 126 if code == 125 else code


def _last_message(buf: bytes) -> dict[str, Any]:
    for line in reversed(buf.split(b"\n")[:-1]):  # complete lines only
        try:
            msg = jsonio.loads(line)
        except ValueError:
            continue
        if isinstance(msg, dict) and "exit" in msg:
            return msg
    return {}


def _read_message(fd: int) -> dict[str, Any]:
    buf = b""
    while b"\n" not in buf:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        if not chunk:
            break
        buf += chunk
    line = buf.split(b"\n", 1)[0]
    if not line:
        return {}
    try:
        msg = jsonio.loads(line)
    except ValueError:
        raise InternalError(f"monitor: malformed status {line!r}") from None
    return msg if isinstance(msg, dict) else {}


def _unmount(target: str) -> None:
    from berth.image.snapshots import unmount_all

    with suppress(NotFoundError):
        unmount_all(target)
