"""The OCI runtime the engine drives, behind one small interface:

- `InProcessRuntime`: berth's own runtime library, called in this process
  (no exec of a runtime binary: the default, `--runtime berth`);
- `CliRuntime`: any runc-compatible binary (`--runtime runc`, a path),
  driven through its command line with its own `--root`.

Both are used by the monitor (create, start, delete) and by the CLI (kill,
pause, resume, state, delete). Import-light: the monitor imports this.
"""

import os

from berth.errors import BerthError, ConflictError, InternalError, NotFoundError

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from collections.abc import Callable


def runtime_for(name: str, state_dir: str, log_path: str) -> "InProcessRuntime | CliRuntime":
    """`name` is berth (in-process), a binary on PATH or a path; its state
    lives under `state_dir`/<name>."""
    if name in ("berth", ""):
        return InProcessRuntime(os.path.join(state_dir, "berth"), log_path)
    binary = name if "/" in name else _which(name)
    if binary is None:
        raise NotFoundError(f"unknown or invalid runtime name: {name}")
    return CliRuntime(binary, os.path.join(state_dir, os.path.basename(name)), log_path)


def _which(name: str) -> str | None:
    for d in (os.environ.get("PATH") or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
              "/sbin:/bin").split(":"):
        p = os.path.join(d, name)
        if os.access(p, os.X_OK) and os.path.isfile(p):
            return p
    return None


class InProcessRuntime:
    name = "berth"

    def __init__(self, root: str, log_path: str) -> None:
        from berth.paths import RuntimePaths

        self.root = root
        self.paths = RuntimePaths(root)
        self.log_path = log_path
        self._channels: dict = {}

    def _log(self):
        from berth.runtime.log import Log

        return Log(self.log_path, "json")

    def create(self, cid: str, bundle: str, stdio: tuple[int, int, int],
               console_socket: str | None = None, console_fd: int = -1,
               on_wait: "Callable[[], None] | None" = None) -> int:
        """Create the container with `stdio` as its fds 0, 1, 2; return the
        pid of its init. The init is forked from this process: its stdio is
        ours for the duration of the call. With a terminal, the pty's master
        is sent over `console_fd` (one end of a socket pair) or to
        `console_socket`. `on_wait`: see berth.runtime.container.create."""
        from berth.runtime import container

        saved = [os.dup(fd) for fd in (0, 1, 2)]
        try:
            for fd, target in zip(stdio, (0, 1, 2), strict=True):
                os.dup2(fd, target)
            opts = container.CreateOptions(bundle=bundle, console_socket=console_socket)
            opts.console_fd = console_fd
            state, ch = container.create(self.paths, self._log(), cid, opts, on_wait=on_wait)
            # kept until start: the init reports a failed exec on it
            self._channels[cid] = ch
        finally:
            for fd, target in zip(saved, (0, 1, 2), strict=True):
                os.dup2(fd, target)
                os.close(fd)
        return state.pid

    def start(self, cid: str) -> None:
        from berth.runtime import container
        from berth.runtime.sync import ChannelClosed, error_from_message

        ch = self._channels.pop(cid, None)
        try:
            container.start(self.paths, self._log(), cid)
            if ch is None:
                return
            # the init's execve closes its end: EOF means exec'd, a message failed
            try:
                msg = ch.recv()
            except ChannelClosed:
                return
            if msg is not None and msg.get("type") == "error":
                raise error_from_message(msg)
        finally:
            if ch is not None:
                ch.close()

    def kill(self, cid: str, sig: int, all_processes: bool = False) -> None:
        from berth.runtime import container

        container.kill(self.paths, cid, sig, all_processes)

    def delete(self, cid: str, force: bool = False) -> None:
        if not os.path.lexists(self.paths.container(cid)):
            return  # no state, nothing to delete (without importing the runtime)
        from berth.runtime import container

        try:
            container.delete(self.paths, self._log(), cid, force=force)
        except NotFoundError:
            pass

    def state(self, cid: str) -> dict | None:
        from berth.runtime import state as st

        try:
            return st.ContainerState.load(self.paths, cid).oci_state()
        except NotFoundError:
            return None

    def exec(self, cid: str, process_file: str, detach: bool = False, tty: bool = False) -> int:
        """Run the process of `process_file` (runtime-spec process JSON) in
        the container, with this process's stdio; its exit status. A process
        with a terminal (`tty`, as the file says) is relayed by the runtime."""
        from berth.runtime.exec import ExecOptions, exec_in

        opts = ExecOptions(process=process_file)
        opts.detach = detach
        if tty and detach:
            from berth.engine.ttyhold import exec_detached_tty

            def run(console_socket: str) -> None:
                opts.console_socket = console_socket
                exec_in(self.paths, self._log(), cid, opts)

            exec_detached_tty(cid, run)
            return 0
        return exec_in(self.paths, self._log(), cid, opts)

    def pause(self, cid: str) -> None:
        self._cgroup(cid).freeze()

    def resume(self, cid: str) -> None:
        self._cgroup(cid).thaw()

    def _cgroup(self, cid: str):
        from berth.runtime import state as st
        from berth.runtime.cgroup import manager_for

        mgr = manager_for(st.ContainerState.load(self.paths, cid))
        if mgr is None:
            raise ConflictError(f"container {cid} has no cgroup")
        return mgr


class CliRuntime:
    def __init__(self, binary: str, root: str, log_path: str) -> None:
        self.binary = binary
        self.name = os.path.basename(binary)
        self.root = root
        self.log_path = log_path

    def _argv(self, *args: str) -> list[str]:
        return [self.binary, "--root", self.root, "--log", self.log_path, "--log-format", "json",
                *args]

    def _run(self, *args: str, stdio: tuple[int, int, int] | None = None) -> str:
        """Run one command; its stdout is returned, a failure raised with the
        runtime's own error message (from its json log or its stderr)."""
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        try:
            fds = stdio or (null, out_w, err_w)
            actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
            pid = os.posix_spawn(self.binary, self._argv(*args), os.environ,
                                 file_actions=actions)
        finally:
            os.close(out_w)
            os.close(err_w)
            os.close(null)
        out = _read_all(out_r)
        err = _read_all(err_r)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise self._error(args[0], err)
        return out.decode(errors="replace")

    def _error(self, command: str, stderr: bytes) -> BerthError:
        msg = ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.fstat(f.fileno()).st_size - 8192))
                lines = f.read().splitlines()
            from berth import jsonio

            for line in reversed(lines):
                try:
                    entry = jsonio.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
                    msg = str(entry.get("msg", ""))
                    break
        except OSError:
            pass
        msg = msg or stderr.decode(errors="replace").strip() or f"{self.name} {command} failed"
        lowered = msg.lower()
        if "does not exist" in lowered or ("not found" in lowered and "exec:" not in lowered):
            return NotFoundError(msg)
        if "not running" in lowered or "cannot" in lowered:
            return ConflictError(msg)
        if "exec:" in lowered and ("not found" in lowered or "no such file" in lowered):
            return NotFoundError(msg)
        if "exec:" in lowered and "permission denied" in lowered:
            from berth.errors import PermissionDeniedError

            return PermissionDeniedError(msg)
        return InternalError(msg)

    def create(self, cid: str, bundle: str, stdio: tuple[int, int, int],
               console_socket: str | None = None, console_fd: int = -1) -> int:
        pid_file = os.path.join(bundle, "init.pid")
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        self._run(*args, cid, stdio=stdio)
        with open(pid_file) as f:
            return int(f.read().strip())

    def start(self, cid: str) -> None:
        self._run("start", cid)

    def kill(self, cid: str, sig: int, all_processes: bool = False) -> None:
        args = ["kill", *(["--all"] if all_processes else []), cid, str(sig)]
        self._run(*args)

    def delete(self, cid: str, force: bool = False) -> None:
        try:
            self._run("delete", *(["--force"] if force else []), cid)
        except NotFoundError:
            pass
        # the runtime removes the container's /berth/<id>; the shared /berth
        # goes with the last container, as berth's own runtime does it
        from berth.cgroups.base import remove_default_parents
        from berth.cgroups.hierarchy import resolve_paths

        try:
            remove_default_parents(resolve_paths(f"/berth/{cid}", cid)[1].values())
        except BerthError:
            pass

    def state(self, cid: str) -> dict | None:
        from berth import jsonio

        try:
            out = self._run("state", cid)
        except NotFoundError:
            return None
        data = jsonio.loads(out)
        return data if isinstance(data, dict) else None

    def exec(self, cid: str, process_file: str, detach: bool = False, tty: bool = False) -> int:
        """`tty`: the process file asks for a terminal. runc relays one itself
        only from a terminal of its own (it opens /dev/tty): its pty master
        comes to us over --console-socket instead, and we relay it."""
        if tty and not detach:
            return self._exec_tty(cid, process_file)
        if tty:
            from berth.engine.ttyhold import exec_detached_tty

            exec_detached_tty(cid, lambda sock: self._run(
                "exec", "--process", process_file, "--detach", "--console-socket", sock, cid))
            return 0
        args = self._argv("exec", "--process", process_file, *(["--detach"] if detach else []),
                          cid)
        pid = os.posix_spawn(self.binary, args, os.environ)
        return self._exec_wait(pid)

    def _exec_tty(self, cid: str, process_file: str) -> int:
        """runc takes --console-socket only with --detach: as containerd's
        shim does, this process becomes a subreaper, so the process (whose
        parent, runc, leaves) is reparented to it and can be waited for."""
        import _socket
        import select
        import shutil
        import tempfile

        from berth.linux import libc
        from berth.runtime.console import recv_fd, relay_terminal

        libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
        d = tempfile.mkdtemp(prefix="berth-tty-")  # 0700, and a short path for sun_path
        listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
        try:
            listener.bind(f"{d}/console.sock")
            listener.listen(1)
            runc = os.posix_spawn(self.binary, self._argv(
                "exec", "--process", process_file, "--detach", "--console-socket",
                f"{d}/console.sock", "--pid-file", f"{d}/pid", cid), os.environ)
            master = -1
            status = None  # runc's wait status, once reaped
            while master < 0:
                if select.select([listener], [], [], 0.1)[0]:
                    conn = _socket.socket(fileno=listener._accept()[0])  # _socket has no accept()
                    try:
                        master, _ = recv_fd(conn)
                    finally:
                        conn.close()
                elif status is not None:
                    raise self._error("exec", b"")  # failed before the terminal: its log says why
                else:
                    reaped, st = os.waitpid(runc, os.WNOHANG)
                    if reaped:
                        status = st  # the master may still be queued: one more look
            if status is None:
                status = os.waitpid(runc, 0)[1]
            try:
                if os.waitstatus_to_exitcode(status) != 0:
                    raise ValueError("runc exec failed")
                with open(f"{d}/pid") as f:
                    pid = int(f.read())
            except (OSError, ValueError):
                os.close(master)
                raise self._error("exec", b"") from None
            relay_terminal(master, pid)
            return self._exec_wait(pid)
        finally:
            listener.close()
            shutil.rmtree(d, ignore_errors=True)

    def _exec_wait(self, pid: int) -> int:
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        code = os.waitstatus_to_exitcode(status)
        code = 128 - code if code < 0 else code
        if code == 255 or (code == 1 and self._last_error()):
            err = self._error("exec", b"")
            if "exec" in err.message:
                raise err
        return code

    def _last_error(self) -> bool:
        try:
            return os.path.getsize(self.log_path) > 0
        except OSError:
            return False

    def pause(self, cid: str) -> None:
        self._run("pause", cid)

    def resume(self, cid: str) -> None:
        self._run("resume", cid)


def _read_all(fd: int) -> bytes:
    chunks = []
    try:
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    return b"".join(chunks)
