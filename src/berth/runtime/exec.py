"""`exec`: run a new process in a created or running container.

Processes, as for `create` (runtime/__init__.py):

- the runtime process ("parent") loads the state, builds the process
  (process.json or the container's process with the flags) and forks; then
  it moves the child into the container's cgroup, makes itself
  non-dumpable and a subreaper;
- the "exec" child (berth:[3:EXEC]) makes itself non-dumpable before it
  touches the container (CVE-2019-5736: until its execve the process that
  joins the container runs the host's Python; non-dumpable, nothing in the
  container can open it through /proc/<pid>/exe), compiles the seccomp
  filter, checks the process, and joins the init's namespaces (user first,
  mount last) while
  the parent moves it into the container's cgroup (a write that can wait
  ~10 ms for an RCU grace period: done in parallel); then it forks the
  process and exits;
- the process (berth:[4:PROC]) is born in the container's pid namespace and
  already in its mount namespace (never visible in the container with the
  host's root, the CVE-2016-9962 class), and inherits the cgroup; the
  parent, a subreaper, adopts it. It does the init's last steps
  (init.exec_process: rlimits, fds, cwd, LSM, capabilities and user,
  no_new_privs, seccomp, execve).

The parent waits for the execve (end of file on the sync channel) or an
error (a typed message naming the step), then (unless --detach) forwards
signals and returns the process's exit status (128+n for signal n).
"""

import os

from berth import rcu
from berth.errors import ConflictError, InvalidArgumentError, NotFoundError
from berth.paths import RuntimePaths
from berth.runtime import state as st
from berth.runtime.log import Log
from berth.runtime.sync import Channel, ChannelClosed

# ctypes (berth.linux.libc, through berth.runtime.init) is imported after the
# fork, in the child and in the parent while its cgroup write waits: 2 ms off
# the path of every exec
TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.runtime.init import Setup

# runtime-spec namespace type -> /proc/<pid>/ns/ name
NS_FILES = {"user": "user", "mount": "mnt", "uts": "uts", "ipc": "ipc", "network": "net",
            "cgroup": "cgroup", "pid": "pid", "time": "time"}


class ExecOptions:
    """runc exec's flags."""

    __slots__ = ("additional_gids", "apparmor", "args", "caps", "console_socket", "cwd", "detach", "env",
                 "ignore_paused", "no_new_privs", "pid_file", "preserve_fds", "process", "process_label",
                 "tty", "user")

    def __init__(self, args: list[str] | None = None, process: "str | dict | None" = None) -> None:
        self.args = args or []
        self.process = process  # --process FILE, or the process itself
        self.tty: bool | None = None
        self.cwd: str | None = None
        self.env: list[str] = []
        self.user: str | None = None
        self.additional_gids: list[int] = []
        self.caps: list[str] = []
        self.no_new_privs: bool | None = None
        self.apparmor: str | None = None
        self.process_label: str | None = None
        self.detach = False
        self.pid_file: str | None = None
        self.console_socket: str | None = None
        self.preserve_fds = 0
        self.ignore_paused = False


def build_process(config: dict, opts: ExecOptions) -> dict:
    """The process to run: --process FILE, or the container's process with
    runc's overrides (libcontainer's getProcess in runc 1.1)."""
    if isinstance(opts.process, dict):  # built by the engine (engine/execd.py)
        if not opts.process.get("args"):
            raise InvalidArgumentError("exec: process args cannot be empty")
        return opts.process
    if opts.process:
        from berth import jsonio

        try:
            proc = jsonio.load_file(opts.process)
        except FileNotFoundError:
            raise NotFoundError(f"open process file {opts.process}: no such file or directory") from None
        except ValueError as exc:
            raise InvalidArgumentError(f"process file {opts.process}: malformed JSON: {exc}") from None
        if not isinstance(proc, dict) or not proc.get("args"):
            raise InvalidArgumentError(f"process file {opts.process}: args must not be empty")
        return proc
    if not opts.args:
        raise InvalidArgumentError("exec: process args cannot be empty")
    base = config.get("process") or {}
    proc = {k: v for k, v in base.items() if k not in ("args", "commandLine")}
    proc["args"] = list(opts.args)
    proc["terminal"] = bool(opts.tty)
    if opts.cwd:
        proc["cwd"] = opts.cwd
    if opts.apparmor:
        proc["apparmorProfile"] = opts.apparmor
    if opts.process_label:
        proc["selinuxLabel"] = opts.process_label
    if opts.caps:
        caps = {k: list(v) for k, v in (base.get("capabilities") or {}).items()}
        for c in opts.caps:
            for field in ("bounding", "effective", "permitted"):
                caps.setdefault(field, []).append(c)
            # runc 1.1.2+ (CVE-2022-29162): never inheritable; ambient only
            # when the config already has an inheritable set
            if caps.get("inheritable") is not None:
                caps.setdefault("ambient", []).append(c)
        proc["capabilities"] = caps
    proc["env"] = list(base.get("env") or []) + list(opts.env)
    if opts.no_new_privs is not None:
        proc["noNewPrivileges"] = opts.no_new_privs
    user = dict(base.get("user") or {})
    if opts.user:
        uid, _, gid = opts.user.partition(":")
        try:
            user["uid"] = int(uid)
            if gid:
                user["gid"] = int(gid)
        except ValueError:
            raise InvalidArgumentError(f"exec: --user {opts.user}: expected uid[:gid] as numbers") from None
    if opts.additional_gids:
        user["additionalGids"] = list(user.get("additionalGids") or []) + list(opts.additional_gids)
    proc["user"] = user
    return proc


def _open_namespaces(pid: int, config: dict) -> list[tuple[str, int]]:
    """(type, fd) of the init's namespaces, in join order; those we already
    share are left out (setns to one's own user namespace is EINVAL)."""
    from berth.runtime.init import JOIN_ORDER

    types = {n.get("type") for n in (config.get("linux") or {}).get("namespaces") or []}
    out: list[tuple[str, int]] = []
    try:
        for t in JOIN_ORDER:
            if t not in types:
                continue
            name = NS_FILES[t]
            try:
                fd = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                raise ConflictError("cannot exec in a stopped container") from None
            mine = os.stat(f"/proc/self/ns/{name}")
            theirs = os.fstat(fd)
            if (mine.st_dev, mine.st_ino) == (theirs.st_dev, theirs.st_ino):
                os.close(fd)
                continue
            out.append((t, fd))
    except BaseException:
        for _, fd in out:
            os.close(fd)
        raise
    return out


def enter_cgroup(state: st.ContainerState, pid: int) -> None:
    """Move `pid` into the container's cgroups. CgroupManager.add_process
    does the same; written here to keep the cgroups package (1.5 ms of
    imports) off exec's path. On v1 the first write in a while waits a full
    RCU grace period (see berth.rcu): the child works meanwhile."""
    rec = state.data.get("cgroup") or {}
    for path in (rec.get("paths") or {}).values():
        try:
            fd = os.open(f"{path}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, str(pid).encode())
            finally:
                os.close(fd)
        except OSError as exc:
            raise ConflictError(f"exec: join cgroup {path}: {os.strerror(exc.errno or 0).lower()}",
                                errno=exc.errno) from None


def is_paused(state: st.ContainerState) -> bool:
    """CgroupManager.is_frozen, read directly for the same reason as
    `enter_cgroup`: freezer.state on v1, cgroup.freeze on v2 (or a hybrid
    host's unified hierarchy when there is no v1 freezer)."""
    paths = (state.data.get("cgroup") or {}).get("paths") or {}
    for key, name, frozen in (("freezer", "freezer.state", (b"FROZEN", b"FREEZING")),
                              ("", "cgroup.freeze", (b"1",)), ("unified", "cgroup.freeze", (b"1",))):
        if key in paths:
            try:
                with open(f"{paths[key]}/{name}", "rb") as f:
                    return f.read().strip() in frozen
            except FileNotFoundError:
                continue
    return False


def exec_in(paths: RuntimePaths, log: Log, cid: str, opts: ExecOptions,
            state: "st.ContainerState | None" = None, in_place: bool = False) -> int:
    """Run a process in container `cid` (whose `state` the caller may have
    loaded); return its exit status (0 with --detach once it has exec'd).

    `in_place`: the caller is a disposable process that this call may move
    into the container's namespaces (the engine's exec helpers): see
    `_exec_here`, used when it applies."""
    import gc

    # a short-lived process: no collection may dirty every page of the forks
    gc.disable()
    if state is None:
        state = st.ContainerState.load(paths, cid)
    if not state.is_alive():
        raise ConflictError("cannot exec in a stopped container")
    proc = build_process(state.config, opts)
    # here, before the fork: a child moved into a frozen cgroup freezes
    if not opts.ignore_paused and is_paused(state):
        raise ConflictError("cannot exec in a paused container (use --ignore-paused to override)")
    if opts.detach and proc.get("terminal") and not opts.console_socket:
        raise InvalidArgumentError("cannot allocate tty if runc will detach without setting console socket")
    if in_place and _here_applies(state, proc, opts):
        return _exec_here(state, proc, opts)
    rcu.start()
    console = relay = None
    parent_ch, child_ch = Channel.pair()
    try:
        if proc.get("terminal"):
            import _socket

            if opts.console_socket:
                console = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
                try:
                    console.connect(opts.console_socket)
                except OSError as exc:
                    raise NotFoundError(f"connect to console socket {opts.console_socket}: "
                                        f"{os.strerror(exc.errno or 0).lower()}") from None
            else:
                relay, console = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
                if not proc.get("consoleSize"):
                    from berth.runtime.console import window_size

                    size = window_size(0)
                    if size:
                        proc["consoleSize"] = size
        child = os.fork()
        if child == 0:
            parent_ch.close()
            if relay is not None:
                relay.close()
            _child_main(child_ch, console.fileno() if console is not None else -1, state, proc, opts)
            os._exit(1)
        child_ch.close()
        if console is not None:
            console.close()
        return _parent(state, opts, parent_ch, child, relay)
    finally:
        parent_ch.close()


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def _parent(state: st.ContainerState, opts: ExecOptions, ch: Channel, child: int, relay) -> int:
    import _thread

    pid = 0
    try:
        # the cgroup write may wait an RCU grace period: meanwhile, ctypes
        done = _thread.allocate_lock()
        done.acquire()
        failed: list[BaseException] = []

        def move() -> None:
            try:
                enter_cgroup(state, child)
            except BaseException as exc:
                failed.append(exc)
            finally:
                rcu.stop()
                done.release()

        _thread.start_new_thread(move, ())
        try:
            from berth.linux import libc

            libc.prctl(libc.PR_SET_DUMPABLE, 0)
            # the process is the child's child: we adopt it when the child exits
            libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        finally:
            done.acquire()
        if failed:
            raise failed[0]
        _send_cgroup(ch)
        try:
            msg = ch.recv()
        except ChannelClosed:
            msg = {"type": "error", "message": "exec: the runtime's child exited without a word"}
        os.waitpid(child, 0)
        child = 0
        if msg.get("type") == "pid":
            pid = msg["pid"]
        else:
            from berth.runtime.sync import error_from_message

            raise error_from_message(msg)
        master = -1
        if relay is not None:
            from berth.runtime.console import recv_fd

            master, _ = recv_fd(relay)
            relay.close()
        _until_exec(ch)
    except BaseException:
        for p in (child, pid):
            if p:
                _kill_and_reap(p)
        raise
    if opts.pid_file:
        from berth import jsonio

        jsonio.write_atomic(os.path.abspath(opts.pid_file), str(pid), 0o644)
    if opts.detach:
        return 0
    return _wait(pid, master)


def _send_cgroup(ch: Channel) -> None:
    """Tell the other end it is in the container's cgroups."""
    try:
        ch.send("cgroup")
    except (BrokenPipeError, ConnectionResetError):
        pass  # it died: its error is queued


def _until_exec(ch: Channel) -> None:
    """Wait for the process's execve, which closes its end of `ch` (end of
    file); a message before that is its error, raised here."""
    try:
        msg = ch.recv()
    except ChannelClosed:
        return
    if msg is not None:
        from berth.runtime.sync import error_from_message

        raise error_from_message(msg)


def _wait(pid: int, master: int) -> int:
    from berth.linux.signals import forward_to

    forward_to(pid)
    if master >= 0:
        from berth.runtime.console import relay_terminal

        relay_terminal(master, pid)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class _Failed(Exception):
    """A step of joining the container failed: `step` names it."""

    def __init__(self, step: str, exc: BaseException) -> None:
        super().__init__(step)
        self.step, self.exc = step, exc


def _prepare_join(ch: Channel, console_fd: int, state: st.ContainerState, proc: dict,
                  opts: ExecOptions) -> tuple["Setup", list[tuple[str, int]]]:
    """What the process that joins the container does before it joins
    (it is already non-dumpable): everything imported that the process
    will need (nothing can be imported once the container's mount
    namespace is joined), the process checked, its seccomp filter compiled,
    and the init's namespaces opened (and the init seen alive after). Raises
    _Failed."""
    step = "exec"
    try:
        from berth.linux import capabilities
        from berth.runtime import process  # noqa: F401
        from berth.runtime.init import Setup

        s = Setup()
        s.channel = ch
        s.console_fd = console_fd
        s.config = state.config
        s.container_id = state.id
        s.bundle = state.data.get("bundle", "")
        s.preserve_fds = opts.preserve_fds

        if proc.get("terminal"):
            from berth.runtime import console  # noqa: F401
        if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
            from berth.runtime import lsm

            lsm.check(proc, {})
        capabilities.parse_config(proc.get("capabilities"))
        cfg = s.config
        linux = cfg.get("linux") or {}
        if linux.get("seccomp"):
            step = "seccomp"
            from berth.runtime.filters import STATE_KEY, compile_seccomp

            # the entry create compiled this config into: no hash of the profile
            s.seccomp = compile_seccomp(state.paths, cfg, state.data.get(STATE_KEY))
            if linux["seccomp"].get("listenerPath"):
                from berth.runtime.init import connect_listener

                s.listener = connect_listener(linux["seccomp"]["listenerPath"])
        step = "join namespaces"
        nss = _open_namespaces(state.pid, cfg)
        # the same start time: the fds name the init's namespaces, not those
        # of a process that took its pid meanwhile
        if not state.is_alive():
            for _, fd in nss:
                os.close(fd)
            raise ConflictError("cannot exec in a stopped container")
        return s, nss
    except BaseException as exc:
        raise _Failed(step, exc) from None


def _join(nss: list[tuple[str, int]]) -> None:
    """Join the namespaces `nss` (user first, mount last) and close their
    fds. Raises _Failed."""
    from berth.linux import libc
    from berth.runtime.init import NS_FLAGS

    step = "join namespaces"
    try:
        for t, fd in nss:
            step = f"join {t} namespace"
            libc.setns(fd, NS_FLAGS[t])
        if any(t == "user" for t, _ in nss):
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
    except BaseException as exc:
        raise _Failed(step, exc) from None
    finally:
        for _, fd in nss:
            os.close(fd)


def _child_main(ch: Channel, console_fd: int, state: st.ContainerState, proc: dict, opts: ExecOptions) -> None:
    """The child ("berth:[3:EXEC]"): checks and compiles what is left while
    the parent moves it into the cgroup, joins the namespaces, forks the
    process (born inside the pid namespace, already in the container's
    mount namespace: never visible there with the host's root), reports its
    pid and exits."""
    step = "exec"
    try:
        from berth.linux import libc

        # before anything of the container is touched (CVE-2019-5736)
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        libc.set_name("berth:[3:EXEC]")
        from berth.runtime.init import exec_process

        s, nss = _prepare_join(ch, console_fd, state, proc, opts)
        _join(nss)
        step = "join cgroup"
        ch.expect("cgroup")
        step = "fork"
        pid = os.fork()
        if pid == 0:
            _process_main(s, proc, exec_process)
        ch.send("pid", pid=pid)
        os._exit(0)
    except _Failed as f:
        ch.send_error(f.step, f.exc)
        os._exit(1)
    except BaseException as exc:
        ch.send_error(step, exc)
        os._exit(1)


def warm(state: st.ContainerState, proc: dict) -> None:
    """Do what an exec of `proc` in the container does before it joins it,
    and undo it (the namespaces' fds are closed; nothing else is changed):
    for the engine's spare exec helper, whose pages are then its own before
    a request comes, not copied one by one while the request waits (a
    copy-on-write fault costs ~6 us here, and a request touches ~900
    pages). Nothing for a seccomp listener: it would be connected to."""
    opts = ExecOptions(process=proc)
    proc = build_process(state.config, opts)
    if not state.is_alive() or is_paused(state) or not _here_applies(state, proc, opts):
        return
    if ((state.config.get("linux") or {}).get("seccomp") or {}).get("listenerPath"):
        return
    _s, nss = _prepare_join(None, -1, state, proc, opts)  # type: ignore[arg-type]
    for _, fd in nss:
        os.close(fd)


def _here_applies(state: st.ContainerState, proc: dict, opts: ExecOptions) -> bool:
    """Whether `_exec_here` can run this exec: a process without a
    terminal, not detached, no pid file; a container without a user or
    cgroup namespace (the process moves itself into the container's
    cgroups: with root's credentials, from the host's cgroup namespace);
    and this process without another thread (setns to a mount namespace
    refuses a process whose threads share its filesystem context)."""
    if proc.get("terminal") or opts.detach or opts.pid_file or opts.console_socket:
        return False
    types = {n.get("type") for n in (state.config.get("linux") or {}).get("namespaces") or []}
    if "user" in types or "cgroup" in types:
        return False
    try:
        with open("/proc/self/stat", "rb") as f:
            return f.read().rpartition(b")")[2].split()[17] == b"1"  # num_threads
    except (OSError, IndexError):
        return False


def _exec_here(state: st.ContainerState, proc: dict, opts: ExecOptions) -> int:
    """exec_in for a disposable caller: this process (made non-dumpable
    first, CVE-2019-5736) does the exec child's work itself, joins the
    container's namespaces and forks the process, one fork fewer than
    `_child_main`'s way. The process, born in the container's pid namespace
    and already in its mount namespace, goes on as `_process_main` while
    this process moves it into the container's cgroups (through
    cgroup.procs fds opened before this process left the host's mount
    namespace); it waits for that before it confines itself and execs
    (exec_process's `ready`). This process stays outside the container's pid
    namespace and cgroups (nothing in the container can see it), waits for
    the process and returns its exit status. The caller's rcu thread (the
    CLI's) keeps the cgroup lock warm: no thread of our own here, which
    setns would refuse."""
    from berth.linux import capabilities, libc
    from berth.linux.signals import forward_to  # noqa: F401  (for _wait: imported while we can)
    from berth.runtime import process as p
    from berth.runtime.init import exec_process, process_capabilities
    from berth.runtime.sync import error_for

    parent_ch, child_ch = Channel.pair()
    procs: list[tuple[str, int]] = []
    nss: list[tuple[str, int]] = []
    pid = 0
    try:
        try:
            libc.prctl(libc.PR_SET_DUMPABLE, 0)
            runtime = os.stat("/proc/self/exe")  # the host's /proc: ours is not the container's
            s, nss = _prepare_join(child_ch, -1, state, proc, opts)
            step = "join cgroup"
            try:
                for path in ((state.data.get("cgroup") or {}).get("paths") or {}).values():
                    procs.append((path, os.open(f"{path}/cgroup.procs", os.O_WRONLY | os.O_CLOEXEC)))
            except OSError as exc:
                raise _Failed(step, exc) from None
            joining, nss = nss, []
            _join(joining)
        except _Failed as f:
            raise error_for(f.step, f.exc) from None
        # what the process would find for itself, found here in the same
        # root (the container's, since the join): the fork's child then does
        # less while it writes to pages it shares with us (each write to one
        # is a copy, ~6 us here)
        try:
            s.found = _environment_and_executable(proc)
            step = "exec"
            try:
                p.refuse_runtime_executable(s.found[1], runtime)
                # ours is the process's bounding set (we exec nothing ourselves)
                step = "capabilities and user"
                s.cap_sets = capabilities.parse_config(process_capabilities(proc))
                capabilities.drop_bounding(s.cap_sets["bounding"])
            except BaseException as exc:
                raise _Failed(step, exc) from None
        except _Failed as f:
            raise error_for(f.step, f.exc) from None
        pid = os.fork()
        if pid == 0:
            parent_ch.close()
            for _, fd in procs:
                os.close(fd)
            _process_main(s, proc, exec_process, ready=lambda: child_ch.expect("cgroup"))
            os._exit(1)
        child_ch.close()
        try:
            for path, fd in procs:
                try:
                    os.write(fd, b"%d" % pid)
                except OSError as exc:
                    raise ConflictError(f"exec: join cgroup {path}: "
                                        f"{os.strerror(exc.errno or 0).lower()}",
                                        errno=exc.errno) from None
        finally:
            for _, fd in procs:
                os.close(fd)
            procs = []
        _send_cgroup(parent_ch)
        _until_exec(parent_ch)
    except BaseException:
        if pid:
            _kill_and_reap(pid)
        raise
    finally:
        parent_ch.close()
        child_ch.close()
        for _, fd in [*procs, *nss]:
            os.close(fd)
    return _wait(pid, -1)


def _environment_and_executable(proc: dict) -> tuple[dict[str, str], str]:
    """The process's environment and executable, as found in this process's
    root (the container's). Raises _Failed."""
    from berth.runtime.process import environ, find_executable

    step = "environment"
    try:
        env = environ(proc)
        step = "find executable"
        return env, find_executable(proc["args"][0], env)
    except BaseException as exc:
        raise _Failed(step, exc) from None


def _process_main(s: "Setup", proc: dict, exec_process, ready=None) -> None:
    """The process (berth:[4:PROC]): its terminal, environment and
    executable (unless its parent found them, s.found), then the init's
    last steps (exec_process, which calls `ready` before it confines the
    process)."""
    from berth.linux import libc

    ch = s.channel
    step = "exec"
    try:
        libc.set_name("berth:[4:PROC]")
        if proc.get("terminal"):
            step = "console"
            from berth.runtime.console import setup_console

            setup_console(s.console_fd, proc.get("consoleSize"), bind_console=False)
        elif s.console_fd >= 0:
            os.close(s.console_fd)
        env, path = s.found or _environment_and_executable(proc)
        step = "exec"
        exec_process(s, proc, path, env, status="running", ready=ready)
    except _Failed as f:
        ch.send_error(f.step, f.exc)
        os._exit(1)
    except BaseException as exc:
        ch.send_error(step, exc)
        os._exit(1)


def cmd_exec(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    """`berth-runtime exec [flags] <container-id> <command> [args...]`."""
    from berth.runtime.cli import UsageError

    if not args:
        raise UsageError('"exec" requires a minimum of 1 argument(s)')
    if not opts.get("process") and len(args) < 2:
        raise UsageError("exec: process args cannot be empty (give a command or --process)")
    eo = ExecOptions(args[1:], opts.get("process"))
    eo.tty = opts.get("tty")
    eo.cwd = opts.get("cwd")
    eo.env = opts.get("env") or []
    eo.user = opts.get("user")
    try:
        eo.additional_gids = [int(g) for g in opts.get("additional_gids") or []]
    except ValueError:
        raise UsageError("exec: --additional-gids takes numbers") from None
    eo.caps = opts.get("cap") or []
    eo.no_new_privs = opts.get("no_new_privs")
    eo.apparmor = opts.get("apparmor")
    eo.process_label = opts.get("process_label")
    eo.detach = opts.get("detach", False)
    eo.pid_file = opts.get("pid_file")
    eo.console_socket = opts.get("console_socket")
    eo.preserve_fds = opts.get("preserve_fds", 0)
    eo.ignore_paused = opts.get("ignore_paused", False)
    code = exec_in(paths, log, args[0], eo)
    # nothing is left to clean up: skip the interpreter's teardown (~1 ms)
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

