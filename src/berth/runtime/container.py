"""The runtime's operations on containers, as a library: create, start, run,
kill, delete, state, list. The CLI (cli.py) is a thin layer over these.

`create` does, in the runtime process: validate the config; make the state
directory (the id is taken atomically by mkdir), the exec FIFO and the
cgroup; fork the child (init.py), answer its requests (user namespace maps,
hooks) until the init reports "ready"; write state.json and the pid file.
Any failure undoes everything done so far: the init and child are killed,
the cgroup and state directory removed.
"""

import os
import time

from berth import jsonio, rcu
from berth.errors import BerthError, ConflictError, InvalidArgumentError, NotFoundError
from berth.oci import runtime as spec
from berth.paths import RuntimePaths
from berth.runtime import state as st
from berth.runtime.filters import STATE_KEY as FILTER_KEY
from berth.runtime.filters import compile_seccomp, recorded_entry
from berth.runtime.init import Setup, child_main
from berth.runtime.log import Log
from berth.runtime.sync import Channel, ChannelClosed

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from collections.abc import Callable


class CreateOptions:
    __slots__ = ("bundle", "console_fd", "console_socket", "detach", "no_new_keyring", "no_pivot",
                 "pid_file", "preserve_fds")

    def __init__(self, bundle: str = ".", pid_file: str | None = None, console_socket: str | None = None,
                 no_pivot: bool = False, no_new_keyring: bool = False, preserve_fds: int = 0,
                 detach: bool = False) -> None:
        self.bundle = bundle
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = no_new_keyring
        self.preserve_fds = preserve_fds
        self.detach = detach
        self.console_fd = -1  # run without --console-socket: our own end of a socket pair


def load_config(bundle: str) -> dict:
    path = os.path.join(bundle, "config.json")
    try:
        cfg = jsonio.load_file(path)
    except FileNotFoundError:
        raise NotFoundError(f"open {path}: no such file or directory", path=path) from None
    except ValueError as exc:
        raise InvalidArgumentError(f"config.json: malformed JSON: {exc}", path=path) from None
    spec.validate(cfg)
    assert isinstance(cfg, dict)
    if "process" not in cfg:
        raise InvalidArgumentError("config.json: process: is missing (needed to create a container)")
    linux = cfg.get("linux") or {}
    nss = spec.namespaces(cfg)
    from berth.runtime.rootfs import check_sysctl

    for name in linux.get("sysctl") or {}:
        check_sysctl(name, nss)
    # a capability name the kernel has never heard of fails here, before anything exists
    from berth.linux import capabilities

    capabilities.parse_config(cfg["process"].get("capabilities"))
    proc = cfg["process"]
    if proc.get("apparmorProfile") or proc.get("selinuxLabel") or linux.get("mountLabel"):
        from berth.runtime import lsm

        lsm.check(proc, linux)
    return cfg


def write_id_maps(pid: int, linux: dict) -> None:
    for kind, key in (("uid", "uidMappings"), ("gid", "gidMappings")):
        lines = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in linux.get(key) or [])
        if not lines:
            continue
        try:
            fd = os.open(f"/proc/{pid}/{kind}_map", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, lines.encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise InvalidArgumentError(
                f"write {kind}_map for the user namespace ({lines.strip()!r}): {os.strerror(exc.errno or 0).lower()}",
                errno=exc.errno,
            ) from None


def host_root_ids(linux: dict) -> tuple[int, int]:
    """The host uid and gid the container's root maps to (0, 0 without a user namespace)."""
    out = [0, 0]
    for i, key in enumerate(("uidMappings", "gidMappings")):
        for m in linux.get(key) or []:
            if m["containerID"] <= 0 < m["containerID"] + m["size"]:
                out[i] = m["hostID"] - m["containerID"]
                break
    return out[0], out[1]


def make_userns(uid_maps: list, gid_maps: list) -> int:
    """An fd for a new user namespace with these mappings (for an id-mapped
    mount, which takes its mappings from a user namespace): a forked helper
    unshares it, we write its maps and open /proc/<pid>/ns/user, then the
    helper exits."""
    from berth.linux import libc

    ready_r, ready_w = os.pipe()
    done_r, done_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.close(done_w)
            libc.unshare(libc.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(done_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(done_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise BerthError("id-mapped mount: could not create a user namespace for the mapping")
        write_id_maps(pid, {"uidMappings": uid_maps, "gidMappings": gid_maps})
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(done_w)
        os.waitpid(pid, 0)


class _Creation:
    """The undo list of a create in progress."""

    def __init__(self, paths: RuntimePaths, cid: str) -> None:
        self.paths = paths
        self.cid = cid
        self.pids: list[int] = []
        self.cgroup = None
        self.dir_made = False

    def undo(self) -> None:
        for pid in self.pids:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for pid in self.pids:
            _reap(pid)
        if self.cgroup is not None:
            try:
                self.cgroup.kill_all(9)
            except OSError:
                pass
            self.cgroup.destroy()
        if self.dir_made:
            st.remove_container_dir(self.paths, self.cid)


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Wait for a child; for a non-child (the init, reparented to us only as
    subreaper) wait until it is gone."""
    try:
        os.waitpid(pid, 0)
        return
    except ChildProcessError:
        pass
    deadline = time.monotonic() + timeout
    while st.proc_start_time(pid) is not None and time.monotonic() < deadline:
        time.sleep(0.001)


def create(paths: RuntimePaths, log: Log, cid: str, opts: CreateOptions, run: bool = False,
           config: dict | None = None, on_wait: "Callable[[], None] | None" = None
           ) -> tuple[st.ContainerState, Channel]:
    """Create container `cid`; return its state and the parent's end of the
    sync channel (closed by the init's execve). `on_wait`: called once the
    child is on its own (making the namespaces, forking the init, which
    mounts the rootfs), where this process would only wait for them: the
    caller's work that can overlap theirs. It must not fork or raise."""
    rcu.start()
    bundle = os.path.abspath(opts.bundle)
    st.check_id(cid)
    cfg = config if config is not None else load_config(bundle)
    log.debug(f"{cid}: config loaded")
    root_path = cfg["root"]["path"]
    rootfs = os.path.realpath(os.path.join(bundle, root_path))
    if not os.path.isdir(rootfs):
        raise NotFoundError(f"rootfs {rootfs}: no such directory", path=rootfs)
    nss = spec.namespaces(cfg)
    linux = cfg.get("linux") or {}
    flt = compile_seccomp(paths, cfg)
    undo = _Creation(paths, cid)
    st.make_container_dir(paths, cid)
    undo.dir_made = True
    lock = st.Lock(paths.lock_file(cid), create=True)
    parent_ch = child_ch = None
    idmap_fds: dict[int, int] = {}
    try:
        fifo = paths.exec_fifo(cid)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # not narrowed by the umask: the init may be another uid
        root_uid, root_gid = host_root_ids(linux)
        if root_uid or root_gid:
            os.chown(fifo, root_uid, root_gid)
        s = Setup()
        s.config = cfg
        s.container_id = cid
        s.seccomp = flt
        s.bundle = bundle
        s.rootfs = rootfs
        s.namespaces = nss
        s.no_pivot = opts.no_pivot
        s.preserve_fds = opts.preserve_fds
        s.parent_fds = [lock.fd]
        s.no_new_keyring = opts.no_new_keyring
        if log.level <= 10:
            s.log = log
        s.fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
        s.idmap_fds = idmap_fds
        for i, m in enumerate(cfg.get("mounts") or []):
            if "uidMappings" in m:
                idmap_fds[i] = make_userns(m["uidMappings"], m["gidMappings"])
        from berth.cgroups.hierarchy import resolve_paths

        # the cgroup is made after the fork, while the child makes the
        # namespaces (both are mostly kernel work: on two CPUs they overlap)
        s.cgroup_paths = resolve_paths(linux.get("cgroupsPath") or "", cid)[1]
        from berth.cgroups import from_host_paths
        from berth.runtime.cgroup import effective_resources

        cgroup = from_host_paths(s.cgroup_paths)
        console = None
        if opts.console_socket:
            import _socket

            console = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
            try:
                console.connect(opts.console_socket)
            except OSError as exc:
                raise NotFoundError(f"connect to console socket {opts.console_socket}: {os.strerror(exc.errno or 0).lower()}") from None
            s.console_fd = console.fileno()
        elif opts.console_fd >= 0:
            s.console_fd = opts.console_fd
        elif cfg["process"].get("terminal"):
            raise InvalidArgumentError("cannot allocate tty if runc will detach without setting console socket")
        parent_ch, child_ch = Channel.pair()
        s.channel = child_ch
        data = {
            "id": cid, "pid": 0, "start_time": None, "bundle": bundle, "rootfs": rootfs,
            "created": st.now_rfc3339(), "owner": "", "config": cfg,
        }
        data["cgroup"] = {"paths": dict(s.cgroup_paths)}
        entry = recorded_entry(flt)
        if entry:
            data[FILTER_KEY] = entry
        state = st.ContainerState(paths, data)
        log.debug(f"{cid}: forking the child")
        child = os.fork()
        if child == 0:
            parent_ch.close()
            child_main(s)
            os._exit(1)  # child_main never returns
        undo.pids.append(child)
        child_ch.close()
        for fd in s.idmap_fds.values():
            os.close(fd)
        s.idmap_fds.clear()
        undo.cgroup = cgroup
        cgroup.create()
        resources = effective_resources(cfg)
        if resources:
            cgroup.apply(resources)
        log.debug(f"{cid}: cgroup made")
        new_userns = nss.get("user") == ""
        if not new_userns:
            # into the cgroup while the child makes its namespaces: the first
            # cgroup.procs write in a while waits for an RCU grace period
            # (see berth.rcu); the init it forks next is born there
            _move_child(cgroup, child, parent_ch)
        os.close(s.fifo_fd)
        if console is not None:
            console.close()
        if on_wait is not None:
            on_wait()
        init_pid = 0
        while True:
            try:
                msg = parent_ch.recv()
            except ChannelClosed:
                raise BerthError("container init exited before it was ready") from None
            t = msg["type"]
            if t == "userns":
                write_id_maps(child, linux)
                _send(parent_ch, "mapped")
                _move_child(cgroup, child, parent_ch)
            elif t == "pid":
                init_pid = msg["pid"]
                undo.pids.insert(0, init_pid)
                os.waitpid(child, 0)
                undo.pids.remove(child)
                data["pid"] = init_pid
                data["start_time"] = st.proc_start_time(init_pid)
            elif t == "hooks":
                from berth.runtime.hooks import run_hooks

                oci = state.oci_state("creating")
                run_hooks(cfg, "prestart", oci, log)
                run_hooks(cfg, "createRuntime", oci, log)
                _send(parent_ch, "hooks-done", state=oci)
            elif t == "ready":
                if not init_pid:  # the child sends it before the init may speak
                    raise BerthError("container init reported ready before its pid was known")
                log.debug(f"{cid}: init ready")
                break
            elif t == "error":
                from berth.runtime.sync import error_from_message

                raise error_from_message(msg)
            else:
                raise BerthError(f"sync: unexpected message {t!r} from container init")
        state.save()
        if opts.pid_file:
            pf = os.path.abspath(opts.pid_file)
            jsonio.write_atomic(pf, str(init_pid), 0o644, durable=False)
        undo.pids.clear()
        return state, parent_ch
    except BaseException:
        if parent_ch is not None:
            parent_ch.close()
        for fd in idmap_fds.values():
            os.close(fd)
        undo.undo()
        raise
    finally:
        lock.release()


def _move_child(cgroup, child: int, ch: Channel) -> None:
    """Move the child into the container's cgroup and tell it so. A child
    that has already failed (and exited) has its error queued on the
    channel: the move's own failure would hide it."""
    try:
        cgroup.add_process(child)
    except (BerthError, OSError):
        if st.proc_start_time(child) is not None:  # None: gone or a zombie
            raise
        return
    finally:
        rcu.stop()
    _send(ch, "cgroup")


def _send(ch: Channel, type_: str, **fields: object) -> None:
    """A reply to the child or init; if it has died meanwhile, its error
    message is still queued for the next recv, which reports it."""
    try:
        ch.send(type_, **fields)
    except (BrokenPipeError, ConnectionResetError):
        pass


def _open_fifo_for_start(state: st.ContainerState) -> None:
    """Release the init waiting on the exec FIFO; the FIFO is removed so the
    status becomes "running"."""
    import select

    fifo = state.paths.exec_fifo(state.id)
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ConflictError("cannot start an already running container") from None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while True:
            if poller.poll(100):
                data = os.read(fd, 1)
                if data:
                    break
            if not state.is_alive():
                raise ConflictError("cannot start a container that has stopped")
    finally:
        os.close(fd)
    os.unlink(fifo)


def start(paths: RuntimePaths, log: Log, cid: str) -> None:
    state = st.ContainerState.load(paths, cid)
    lock = st.Lock(paths.lock_file(cid))
    try:
        status = state.status()
        if not st.can("start", status):
            if status == "stopped":
                raise ConflictError("cannot start a container that has stopped")
            raise ConflictError("cannot start an already running container")
        _open_fifo_for_start(state)
    finally:
        lock.release()
    _poststart(state, log)


def _poststart(state: st.ContainerState, log: Log) -> None:
    if (state.config.get("hooks") or {}).get("poststart"):
        from berth.runtime.hooks import run_hooks

        run_hooks(state.config, "poststart", state.oci_state("running"), log)


def run(paths: RuntimePaths, log: Log, cid: str, opts: CreateOptions) -> int:
    """create + start; unless detached, wait for the container's exit, forward
    signals to it, delete it and return its exit status (128+n for signal n)."""
    from berth.linux import libc

    if not opts.detach:
        # the init's parent (the child) exits: make us its new parent so we can wait
        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    relay = None
    st.check_id(cid)
    rcu.start()
    cfg = load_config(os.path.abspath(opts.bundle))  # once, for the terminal question and create
    if not opts.detach and not opts.console_socket and cfg["process"].get("terminal"):
        import _socket

        relay, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
        opts.console_fd = theirs.fileno()
        if not cfg["process"].get("consoleSize"):
            from berth.runtime.console import window_size

            size = window_size(0)
            if size:
                cfg["process"]["consoleSize"] = size
    try:
        state, ch = create(paths, log, cid, opts, run=True, config=cfg)
    finally:
        if relay is not None:
            theirs.close()
    master = -1
    try:
        if relay is not None:
            from berth.runtime.console import recv_fd

            master, _ = recv_fd(relay)
            relay.close()
        try:
            _open_fifo_for_start(state)
            log.debug(f"{cid}: started")
        except ConflictError:
            # the init died waiting: its own error is queued on the channel
            raise _queued_error(ch) from None
        # the init's execve closes its end: EOF means exec'd, a message means failed
        try:
            msg = ch.recv()
        except ChannelClosed:
            msg = None
        if msg is not None and msg.get("type") == "error":
            from berth.runtime.sync import error_from_message

            raise error_from_message(msg)
    except BaseException:
        ch.close()
        try:
            delete(paths, log, cid, force=True)
        except BerthError:
            pass
        raise
    ch.close()
    _poststart(state, log)
    if opts.detach:
        return 0
    log.debug(f"{cid}: running")
    return _wait_and_destroy(paths, log, state, master)


def _queued_error(ch: Channel) -> BerthError:
    import select

    if select.select([ch.fileno()], [], [], 0.5)[0]:
        try:
            msg = ch.recv()
        except ChannelClosed:
            msg = {}
        if msg.get("type") == "error":
            from berth.runtime.sync import error_from_message

            return error_from_message(msg)
    return ConflictError("container init exited before it was started")


def _wait_and_destroy(paths: RuntimePaths, log: Log, state: st.ContainerState, master: int = -1) -> int:
    from berth.linux.signals import forward_to

    pid = state.pid
    # forwarded from now on, the terminal relay included (which resizes the
    # container's pty on SIGWINCH instead)
    forward_to(pid)
    if master >= 0:
        from berth.runtime.console import relay_terminal

        relay_terminal(master, pid)
    code = 255
    while True:
        try:
            wpid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if wpid == pid:
            code = os.waitstatus_to_exitcode(status)
            code = 128 - code if code < 0 else code
            break
    log.debug(f"{state.id}: exited with {code}")
    try:
        delete(paths, log, state.id, force=True)
    except BerthError as exc:
        log.warning(f"delete {state.id} after run: {exc.message}")
    return code


def kill(paths: RuntimePaths, cid: str, sig: int, all_processes: bool = False) -> None:
    state = st.ContainerState.load(paths, cid)
    status = state.status()
    if not st.can("kill", status):
        raise ConflictError("container not running")
    if all_processes:
        from berth.runtime.cgroup import manager_for

        mgr = manager_for(state)
        if mgr is not None:
            mgr.kill_all(sig)
            return
    _signal_init(state, sig)


def _signal_init(state: st.ContainerState, sig: int) -> None:
    """Signal the init through a pidfd checked against the recorded start
    time, so a recycled pid is never signalled."""
    from berth.linux import libc

    try:
        pidfd = os.pidfd_open(state.pid)
    except ProcessLookupError:
        raise ConflictError("container not running") from None
    try:
        if not state.is_alive():
            raise ConflictError("container not running")
        libc.pidfd_send_signal(pidfd, sig)
    finally:
        os.close(pidfd)


def delete(paths: RuntimePaths, log: Log, cid: str, force: bool = False) -> None:
    state = st.ContainerState.load(paths, cid)
    lock = st.Lock(paths.lock_file(cid))
    try:
        status = state.status()
        if not st.can("force-delete" if force else "delete", status):
            raise ConflictError(f"cannot delete container {cid} that is not stopped: {status}")
        from berth.runtime.cgroup import manager_for

        mgr = manager_for(state)
        if status != "stopped":
            if mgr is not None:
                mgr.kill_all(9)
                if status == "paused":
                    mgr.thaw()
            try:
                _signal_init(state, 9)
            except ConflictError:
                pass
            deadline = time.monotonic() + 10
            while state.is_alive() and time.monotonic() < deadline:
                try:
                    os.waitpid(state.pid, os.WNOHANG)
                except ChildProcessError:
                    pass
                time.sleep(0.001)
        if (state.config.get("hooks") or {}).get("poststop"):
            from berth.runtime.hooks import run_hooks

            run_hooks(state.config, "poststop", state.oci_state("stopped"), log)
        if mgr is not None:
            mgr.destroy()
        st.remove_container_dir(paths, cid)
        log.debug(f"{cid}: deleted")
    finally:
        lock.release()


def list_states(paths: RuntimePaths) -> list[st.ContainerState]:
    out = []
    for cid in st.list_ids(paths):
        try:
            out.append(st.ContainerState.load(paths, cid))
        except BerthError:
            continue
    return out
