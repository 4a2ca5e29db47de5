"""The child and init processes of a container (see runtime/__init__.py).

Both run in a fork of the runtime process and never return: they end in
os._exit or execve. Every failure is sent to the parent as an "error" message
naming the step, then the process exits 1.
"""

import os

from berth.linux import libc

NS_FLAGS = {
    "user": libc.CLONE_NEWUSER, "mount": libc.CLONE_NEWNS, "uts": libc.CLONE_NEWUTS,
    "ipc": libc.CLONE_NEWIPC, "network": libc.CLONE_NEWNET, "cgroup": libc.CLONE_NEWCGROUP,
    "pid": libc.CLONE_NEWPID, "time": libc.CLONE_NEWTIME,
}
# joined in this order: user first (it grants the rights for the rest), mount last
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


class Setup:
    """Everything the child and init need, built by the parent before fork."""

    __slots__ = ("bundle", "cap_sets", "cgroup_paths", "channel", "config", "console_fd", "container_id", "fifo_fd", "found", "host_pid",
                 "idmap_fds", "listener", "log", "namespaces", "no_new_keyring", "no_pivot", "parent_fds", "preserve_fds", "rootfs", "seccomp", "state")

    def __init__(self) -> None:
        self.config: dict = {}
        self.bundle = ""
        self.rootfs = ""
        self.namespaces: dict[str, str] = {}
        self.channel = None  # sync.Channel, the child's end
        self.fifo_fd = -1
        self.console_fd = -1
        self.cgroup_paths: dict[str, str] | None = None  # hierarchy -> the container's cgroup on the host
        self.no_pivot = False
        self.preserve_fds = 0
        self.state: dict = {}
        self.parent_fds: list[int] = []  # the parent's own fds (its lock): closed at once
        self.no_new_keyring = False
        self.log = None  # the runtime's Log: debug lines from the child and init
        self.container_id = ""
        self.seccomp = None  # berth.linux.seccomp.Filter, compiled by the parent
        self.listener = None  # socket connected to linux.seccomp.listenerPath
        self.host_pid = 0  # the container process's pid as the runtime sees it
        self.idmap_fds: dict[int, int] = {}  # mounts[i] -> user namespace fd of its id mapping
        # what a parent found for the process (see exec._exec_here): its
        # environment and executable (checked: not the runtime's own), and
        # process.capabilities parsed (process_capabilities), the bounding
        # set already dropped to them
        self.found: tuple[dict[str, str], str] | None = None
        self.cap_sets: dict[str, int] | None = None


def child_main(s: "Setup") -> None:
    ch = s.channel
    step = "join namespaces"
    try:
        for fd in s.parent_fds:
            os.close(fd)
        # fds the caller left inheritable are not ours to keep: only stdio,
        # --preserve-fds, the FIFO, the sync socket and the console reach the
        # init (what a created container holds is visible from inside)
        keep = {s.fifo_fd, ch.fileno(), s.console_fd, *s.idmap_fds.values()}
        if s.log is not None:
            keep.add(s.log.fd)  # --debug only; close-on-exec
        prev = 3 + s.preserve_fds
        for k in sorted(k for k in keep if k >= prev):
            if k > prev:
                libc.close_range(prev, k - 1)
            prev = k + 1
        libc.close_range(prev)
        libc.set_name("berth:[1:CHILD]")
        ns = s.namespaces
        if "user" not in ns:
            # CVE-2019-5736: until its execve the init runs the host's Python;
            # non-dumpable, no process in the container (another exec, a
            # shared pid namespace) can open it through /proc/<pid>/exe. In a
            # user namespace container root cannot write host files anyway, and
            # the init must stay dumpable to write its own /proc/self files.
            libc.prctl(libc.PR_SET_DUMPABLE, 0)
        for t in JOIN_ORDER:
            path = ns.get(t)
            if path:
                step = f"join {t} namespace {path}"
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    libc.setns(fd, NS_FLAGS[t])
                finally:
                    os.close(fd)
        if "user" in ns and not ns["user"]:
            step = "create user namespace"
            libc.unshare(libc.CLONE_NEWUSER)
            ch.send("userns")
            ch.expect("mapped")
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for t, path in ns.items():
            # the cgroup namespace is made once the parent has moved us into
            # the container's cgroup (below)
            if not path and t not in ("user", "cgroup"):
                flags |= NS_FLAGS[t]
        step = "create namespaces"
        if flags:
            libc.unshare(flags)
        if "time" in ns and not ns["time"]:
            write_time_offsets((s.config.get("linux") or {}).get("timeOffsets") or {})
        # what the init imports before pivot_root, imported while the parent
        # still makes the cgroup: the init, forked after, has it for free
        step = "import"
        _import_before_pivot(s.config)
        # the parent moves us into the container's cgroup while we made the
        # namespaces; the init, forked after, is born there
        step = "join cgroup"
        ch.expect("cgroup")
        if ns.get("cgroup") == "":
            libc.unshare(libc.CLONE_NEWCGROUP)
        if s.log is not None:
            s.log.debug(f"{s.container_id}: child: in the cgroup")
        if s.log is not None:
            s.log.debug(f"{s.container_id}: child: namespaces made")
        step = "fork init"
        # the init shares our channel: it waits until its pid has been sent,
        # so the parent always hears "pid" before the init's first word (on a
        # busy host the init could otherwise report "ready" first)
        hold_r, hold_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(hold_w)
            os.read(hold_r, 1)  # our pid sent (or the child died: its error is queued)
            os.close(hold_r)
            init_main(s)
        os.close(hold_r)
        ch.send("pid", pid=pid)
        os.write(hold_w, b"1")
        os._exit(0)
    except BaseException as exc:
        ch.send_error(step, exc)
        os._exit(1)


def write_time_offsets(offsets: dict) -> None:
    lines = []
    for clock in ("monotonic", "boottime"):
        o = offsets.get(clock)
        if o:
            lines.append(f"{clock} {o.get('secs', 0)} {o.get('nanosecs', 0)}\n")
    if lines:
        fd = os.open("/proc/self/timens_offsets", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, "".join(lines).encode())
        finally:
            os.close(fd)


def _exit_on_signal(signum: int, frame: object) -> None:
    # the init is pid 1 of its namespace: without a handler, signals other than
    # SIGKILL from outside would be ignored while it waits to be started
    os._exit(128 + signum)


def bring_up_loopback() -> None:
    """ip link set lo up, with two ioctls on a datagram socket."""
    import _socket
    import fcntl

    s = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM, 0)
    try:
        # struct ifreq: 16 bytes of name, then (for these requests) short ifr_flags
        name = b"lo".ljust(16, b"\0")
        got = fcntl.ioctl(s.fileno(), 0x8913, name + bytes(24))  # SIOCGIFFLAGS
        flags = int.from_bytes(got[16:18], "little") | 0x1 | 0x40  # IFF_UP | IFF_RUNNING
        fcntl.ioctl(s.fileno(), 0x8914, name + flags.to_bytes(2, "little") + bytes(22))  # SIOCSIFFLAGS
    finally:
        s.close()


def _import_before_pivot(cfg: dict) -> None:
    """After pivot_root the host's filesystem, berth's source included, is
    gone: everything the rest of the init may import is imported now."""
    from berth.linux import capabilities  # noqa: F401
    from berth.runtime import process  # noqa: F401

    if cfg.get("hooks"):
        from berth.runtime import hooks  # noqa: F401
    if (cfg.get("process") or {}).get("terminal"):
        from berth.runtime import console  # noqa: F401
    proc = cfg.get("process") or {}
    if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
        from berth.runtime import lsm  # noqa: F401
    if ((cfg.get("linux") or {}).get("seccomp") or {}).get("listenerPath"):
        import _socket  # noqa: F401
        import struct  # noqa: F401


def init_main(s: "Setup") -> None:
    import _signal

    from berth.runtime import rootfs as rfs

    ch = s.channel
    cfg = s.config
    linux = cfg.get("linux") or {}
    proc = cfg.get("process") or {}
    ns = s.namespaces
    step = "init"
    try:
        libc.set_name("berth:[2:INIT]")
        if s.log is not None:
            s.log.debug(f"{s.container_id}: init: forked")
        step = "import"
        _import_before_pivot(cfg)
        for sig in (1, 2, 3, 10, 12, 15):  # HUP INT QUIT USR1 USR2 TERM
            _signal.signal(sig, _exit_on_signal)
        in_userns = "user" in ns
        if "network" in ns and not ns["network"]:
            step = "bring up loopback"
            bring_up_loopback()
        if "uts" in ns:
            if cfg.get("hostname"):
                step = "set hostname"
                libc.sethostname(cfg["hostname"])
            if cfg.get("domainname"):
                step = "set domainname"
                libc.setdomainname(cfg["domainname"])
        if "mount" not in ns:
            from berth.errors import InvalidArgumentError

            raise InvalidArgumentError("a container needs a mount namespace (linux.namespaces)")
        prop = linux.get("rootfsPropagation") or ""
        step = "make / " + (prop or "rslave")
        prop_flags = rfs.PROPAGATION.get(prop, libc.MS_SLAVE | libc.MS_REC)
        libc.mount(None, "/", None, prop_flags | libc.MS_REC, None)
        shared = bool(prop_flags & libc.MS_SHARED)
        if shared:
            # pivot_root refuses a shared new root or parent (runc's
            # rootfsParentMountPrivate); the root is made shared after it
            rfs.make_parent_mount_private(s.rootfs)
        step = f"bind rootfs {s.rootfs}"
        libc.mount(s.rootfs, s.rootfs, None, libc.MS_BIND | libc.MS_REC, None)
        if shared:
            libc.mount(None, s.rootfs, None, libc.MS_PRIVATE, None)
        root_fd = os.open(s.rootfs, os.O_DIRECTORY | os.O_PATH | os.O_CLOEXEC)
        cg_paths = s.cgroup_paths
        for i, m in enumerate(cfg.get("mounts") or []):
            step = f"mount {m.get('destination')} (mounts[{i}])"
            ms = rfs.MountSpec(m)
            ms.idmap_fd = s.idmap_fds.get(i, -1)
            if linux.get("mountLabel") and not ms.is_bind:
                from berth.runtime.lsm import mount_data

                ms.data = mount_data(ms.data, ms.type, linux["mountLabel"])
            rfs.mount_one(root_fd, ms, s.bundle, cg_paths, in_userns)
        for fd in s.idmap_fds.values():
            os.close(fd)
        if rfs.has_dev_mount(cfg) and not rfs.is_dev_bound(cfg):
            step = "create devices"
            rfs.create_devices(root_fd, cfg, in_userns)
        elif linux.get("devices"):
            step = "create devices"
            rfs.create_devices(root_fd, {"linux": {"devices": linux["devices"]}}, in_userns)
        cwd = proc.get("cwd") or "/"
        if cwd != "/":
            # as runc: a missing cwd is made (before the root goes read-only)
            step = f"create cwd {cwd}"
            os.close(rfs.resolve(root_fd, cwd, "dir"))
        os.close(root_fd)
        hooks = cfg.get("hooks") or {}
        if any(hooks.get(k) for k in ("prestart", "createRuntime", "createContainer", "startContainer")):
            step = "prestart and createRuntime hooks"
            ch.send("hooks")
            s.state = ch.expect("hooks-done")["state"]
            if hooks.get("createContainer"):
                from berth.runtime.hooks import run_hooks

                step = "createContainer hooks"
                run_hooks(cfg, "createContainer", s.state)
        if s.seccomp is not None and (linux.get("seccomp") or {}).get("listenerPath"):
            step = "connect to seccomp listener"
            s.host_pid = int(os.readlink("/proc/self"))  # the host's /proc until pivot_root
            s.listener = connect_listener(linux["seccomp"]["listenerPath"])
        if s.log is not None:
            s.log.debug(f"{s.container_id}: init: mounts made")
        step = "pivot_root"
        if s.no_pivot:
            rfs.move_root(s.rootfs)
        else:
            rfs.pivot(s.rootfs)
        if s.log is not None:
            s.log.debug(f"{s.container_id}: init: pivoted")
        if shared:
            step = f"make / {prop}"
            libc.mount(None, "/", None, prop_flags, None)
        if linux.get("sysctl"):
            step = "sysctl"
            rfs.write_sysctls(linux["sysctl"])
        step = "masked paths"
        rfs.mask_paths(linux.get("maskedPaths") or [])
        step = "readonly paths"
        rfs.readonly_paths(linux.get("readonlyPaths") or [])
        if proc.get("terminal"):
            step = "console"
            from berth.runtime.console import setup_console

            setup_console(s.console_fd, proc.get("consoleSize"))
        if (cfg.get("root") or {}).get("readonly"):
            step = "remount / read-only"
            rfs.remount_root_readonly()
        if not s.no_new_keyring:
            # as runc: a session keyring of its own, so the container does not
            # share the caller's keys (ENOSYS: a kernel without keys)
            step = "join session keyring"
            try:
                libc.join_session_keyring(f"_ses.{s.container_id}")
            except OSError as exc:
                if exc.errno != 38:
                    raise
        if "oomScoreAdj" in proc:
            step = "oom_score_adj"
            from berth.runtime.process import set_oom_score_adj

            set_oom_score_adj(proc["oomScoreAdj"])
        from berth.runtime.process import environ, find_executable

        env = environ(proc)
        step = "find executable"
        path = find_executable(proc["args"][0], env)
        if s.log is not None:
            s.log.debug(f"{s.container_id}: init: process found")
        step = "wait for start"
        ch.send("ready")
        # blocks until `start` (or `run`) opens the FIFO for reading
        fd = os.open(f"/proc/self/fd/{s.fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fd, b"0")
        os.close(fd)
        os.close(s.fifo_fd)
        if hooks.get("startContainer"):
            from berth.runtime.hooks import run_hooks

            step = "startContainer hooks"
            run_hooks(cfg, "startContainer", s.state)
        exec_process(s, proc, path, env)
    except BaseException as exc:
        ch.send_error(step, exc)
        os._exit(1)


def connect_listener(path: str):
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"connect to seccomp listener {path}: {os.strerror(exc.errno or 0).lower()}") from None
    return sock


def send_listener(s: "Setup", fd: int, status: str) -> None:
    """The SCMP_ACT_NOTIFY listener fd to linux.seccomp.listenerPath, with
    the container process state (runtime-spec config-linux.md)."""
    import _socket
    import struct

    from berth import OCI_VERSION, jsonio

    cfg = s.config
    sc = (cfg.get("linux") or {}).get("seccomp") or {}
    state = {"ociVersion": cfg.get("ociVersion", OCI_VERSION), "id": s.container_id, "status": status,
             "pid": s.host_pid, "bundle": s.bundle}
    if cfg.get("annotations"):
        state["annotations"] = cfg["annotations"]
    msg = {"ociVersion": cfg.get("ociVersion", OCI_VERSION), "fds": ["seccompFd"], "pid": s.host_pid,
           "metadata": sc.get("listenerMetadata", ""), "state": state}
    try:
        s.listener.sendmsg([jsonio.dumps(msg).encode()],
                           [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))])
    finally:
        s.listener.close()
        os.close(fd)


def _load_seccomp(s: "Setup", status: str) -> None:
    fd = s.seccomp.load()
    if fd is not None:
        if s.listener is None:
            os.close(fd)
            from berth.errors import InvalidArgumentError

            raise InvalidArgumentError("seccomp: SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath")
        send_listener(s, fd, status)


def process_capabilities(proc: dict) -> dict | None:
    """process.capabilities as applied: the kernel raises an ambient
    capability only if it is permitted and inheritable; runc warns and skips
    the others (runc spec's default config asks for ambient caps with no
    inheritable set)."""
    caps = proc.get("capabilities")
    if caps and caps.get("ambient"):
        allowed = set(caps.get("inheritable") or ()) & set(caps.get("permitted") or ())
        caps = {**caps, "ambient": [c for c in caps["ambient"] if c in allowed]}
    return caps


def exec_process(s: "Setup", proc: dict, path: str, env: dict[str, str], status: str = "creating",
                 ready=None) -> None:
    """The last steps, shared by init and exec: rlimits, scheduling, fds,
    cwd, LSM labels, user and capabilities, no_new_privs, seccomp, execve.
    Raises on failure. `ready` (if given) is called once the process is
    ready to be confined: after the cwd check, before the LSM labels (an
    exec waits there for its cgroup move, see exec._exec_here).

    The seccomp filter goes last, right before execve, when no_new_privs is
    set. Without no_new_privs loading it needs CAP_SYS_ADMIN, so it goes
    before the capabilities are dropped (runc's order): the filter must then
    allow what follows (prctl, capset, setgroups, setres[ug]id, rt_sigaction,
    execve), as every sane profile does."""
    import _signal

    from berth.runtime import process as p

    step = "rlimits"
    try:
        p.set_rlimits(proc)
        if proc.get("ioPriority"):
            step = "io priority"
            p.set_io_priority(proc["ioPriority"])
        if proc.get("scheduler"):
            step = "scheduler"
            p.set_scheduler(proc["scheduler"])
        step = "close fds"
        keep = s.listener.fileno() if s.listener is not None else -1
        p.close_fds(3 + s.preserve_fds, keep)
        step = "cwd"
        p.check_cwd(proc.get("cwd") or "/")
        if ready is not None:
            step = "join cgroup"
            ready()
        if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
            step = "lsm labels"
            from berth.runtime import lsm

            lsm.apply_exec_labels(proc)
        nnp = bool(proc.get("noNewPrivileges"))
        if s.seccomp is not None and not nnp:
            step = "seccomp"
            _load_seccomp(s, status)
        user = proc.get("user") or {}
        step = "capabilities and user"
        from berth.linux import capabilities

        if s.cap_sets is not None:
            capabilities.apply_sets(s.cap_sets, lambda: p.switch_user(user), bounding_dropped=True)
        else:
            capabilities.apply(process_capabilities(proc), lambda: p.switch_user(user))
        if "umask" in user:
            os.umask(user["umask"])
        if nnp:
            step = "no_new_privs"
            libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
        # Python ignores SIGPIPE and SIGXFSZ; ignored signals survive execve
        for sig in range(1, 32):
            if sig not in (9, 19):
                try:
                    _signal.signal(sig, _signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        if s.seccomp is not None and nnp:
            step = "seccomp"
            _load_seccomp(s, status)
        step = f"exec {path}"
        if s.found is None:  # else checked by the parent that found it
            p.refuse_runtime_executable(path)
        os.execve(path, proc["args"], env)
    except BaseException as exc:
        if isinstance(exc, OSError) and not (exc.strerror and ": " in exc.strerror):
            raise OSError(exc.errno, f"{step}: {(exc.strerror or '').lower()}", exc.filename) from None
        raise
