"""The per-container monitor (conmon's role; DESIGN.md "Processes").

Run as its own lean interpreter (`python -I -S monitor.py BUNDLE/monitor.json`,
started by `containers.spawn_monitor` in a new session), it:

- becomes a child subreaper, creates and starts the container through the
  runtime (so the container's init is its child), holding the container's
  stdout/stderr pipes;
- writes them to a json-file log in Docker's format, rotated at
  `log_max_size` x `log_max_file`, and copies them to the attached CLI of a
  foreground `run` while that CLI lives;
- records start, exit code, OOM kill and finish time in the database, and
  applies the restart policy with Docker's back-off (100 ms doubling to 1 min,
  reset after 10 s up);
- tells the CLI over fd 3 ``{"pid": N}`` once the container runs (or
  ``{"error": ...}``) and, at the end, ``{"exit": N}``;
- serves `berth exec`: each request on its attach socket that starts with
  ``exec`` is handled by a fork of it (berth/execclient.py, engine/execserve.py);
- resizes the container's terminal when a foreground `run -t` or `attach`
  says its own was resized (``wsiz ROWS COLS`` on the attach socket).

Killing the CLI never stops the container, the log or the exit record: the
monitor is in its own session and the CLI's death only closes fd 3.

Imports: os, time, C modules, ctypes (libc), berth.jsonio and the runtime;
sqlite3 and the rest only once the container has exited. What the monitor
runs while its container runs is imported at the top: an import statement
executed in a function writes to the import machinery's objects. Nothing here may print: fds
0-2 are /dev/null, diagnostics go to BUNDLE/monitor.log.
"""

import _socket
import contextlib
import fcntl
import gc
import marshal
import os
import select
import sys
import time

if __name__ == "__main__":
    # started as a script with -I -S: put berth's source tree on the path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))

from berth.engine.health import Health
from berth.engine.logwriter import JsonFileLog, Stream, write_all
from berth.linux import libc

STATUS_FD = 3
ATTACH_OUT_FD = 4
ATTACH_ERR_FD = 5
ATTACH_IN_FD = 6
FINISH_DRAIN_S = 2.0


def _now() -> str:
    t = time.time_ns()
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000))
            + f".{t % 1_000_000_000:09d}Z")


class _Lazy:
    """functools.cached_property without functools: computed at the first
    read, then an ordinary attribute of the instance."""

    def __init__(self, fn) -> None:
        self.fn = fn
        self.name = fn.__name__

    def __get__(self, obj: object, cls: type | None = None) -> object:
        if obj is None:
            return self
        value = self.fn(obj)
        obj.__dict__[self.name] = value
        return value


class Monitor:
    # the exit of a foreground `run --rm` whose CLI records it (cli_removes):
    # what Monitor.record would have written, for the CLI or, if it is gone
    # without doing so, for finish
    exit_record: "dict | None" = None

    def __init__(self, cfg: dict) -> None:
        self.cfg = cfg
        self.cid: str = cfg["id"]
        self.bundle: str = cfg["bundle"]
        self.database: str = cfg["database"]
        self.diag = os.open(os.path.join(self.bundle, "monitor.log"),
                            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.status_fd = STATUS_FD if _is_open(STATUS_FD) else -1
        self.attach_out = ATTACH_OUT_FD if cfg.get("attach") else -1
        self.attach_err = ATTACH_ERR_FD if cfg.get("attach") else -1
        self.stdin_fd = ATTACH_IN_FD if cfg.get("stdin") else -1
        self.log = JsonFileLog(cfg["log_path"], cfg["log_max_size"], cfg["log_max_file"])
        from berth.engine.runtimes import runtime_for

        self.rt = runtime_for(cfg["runtime"], cfg["runtime_state"], cfg["runtime_log"])
        self.restart_count = cfg.get("restart_count", 0)
        self.conn = None
        hc = cfg.get("healthcheck")
        self.health = Health(hc) if hc else None
        self.listener = None
        self.sessions: list[Session] = []
        self.monitor_pid = os.getpid()
        self.cfg_path = ""
        self.pid_told = False

    # A monitor made by `serve` has its configuration and runtime loaded
    # when first used (after the container's exit or for a restart), not
    # while the container runs. Non-data descriptors, not __getattr__: that
    # would put every attribute access of the monitor's loop on a slower
    # path, through more of the interpreter's objects.

    @_Lazy
    def cfg(self) -> dict:
        from berth import jsonio

        cfg = jsonio.load_file(self.cfg_path)
        assert isinstance(cfg, dict)
        return cfg

    @_Lazy
    def rt(self) -> "object":
        from berth.engine.runtimes import runtime_for

        cfg = self.cfg
        return runtime_for(cfg["runtime"], cfg["runtime_state"], cfg["runtime_log"])

    def note(self, text: str) -> None:
        os.write(self.diag, f"{_now()} {text}\n".encode())

    def tell(self, **msg: object) -> None:
        if self.status_fd < 0:
            return
        from berth import jsonio

        try:
            os.write(self.status_fd, (jsonio.dumps(msg) + "\n").encode())
        except OSError:
            os.close(self.status_fd)
            self.status_fd = -1

    def tell_raw(self, line: bytes) -> None:
        if self.status_fd < 0:
            return
        try:
            os.write(self.status_fd, line)
        except OSError:
            os.close(self.status_fd)
            self.status_fd = -1

    # database, opened lazily --------------------------------------------------------

    def db(self):
        if self.conn is None:
            from berth import db

            self.conn = db.connect(self.cfg["database"])
        return self.conn

    def _open_db_meanwhile(self) -> None:
        """db() with its schema read, for the start's record; a failure is
        met again, and reported, by the record itself."""
        try:
            self.db().execute("SELECT 1 FROM containers LIMIT 0")
        except Exception:  # see the docstring
            self.close_db()

    def close_db(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def record(self, events: "list[tuple[str, dict]] | None" = None, **values: object) -> bool:
        """UPDATE the container's row (and record `events`, (action,
        attributes) pairs, in the same transaction); False when the row is
        gone (removed)."""
        from berth import db

        conn = self.db()
        cols = ", ".join(f"{k} = ?" for k in values)
        with db.transaction(conn):
            cur = conn.execute(f"UPDATE containers SET {cols} WHERE id = ?",
                               (*values.values(), self.cid))
            for action, attrs in events or ():
                self._insert_event(conn, action, attrs)
        return cur.rowcount == 1

    def event(self, action: str, **attrs: object) -> None:
        """An event row, as the engine writes them (store.EVENT_INSERT)."""
        from berth import db

        conn = self.db()
        with db.transaction(conn):
            self._insert_event(conn, action, attrs)

    def _insert_event(self, conn, action: str, attrs: dict) -> None:
        from berth import jsonio

        a = {"image": self.cfg.get("image", ""), "name": self.cfg.get("name", "")}
        a.update({k: str(v) for k, v in attrs.items()})
        conn.execute("INSERT INTO events (time_nano, type, action, actor, attributes)"
                     " VALUES (?, ?, ?, ?, ?)",
                     (time.time_ns(), "container", action, self.cid, jsonio.dumps(a)))

    def row(self) -> dict | None:
        r = self.db().execute(
            "SELECT status, stop_requested, reason FROM containers WHERE id = ?",
            (self.cid,)).fetchone()
        return dict(r) if r is not None else None

    # the container ------------------------------------------------------------------

    def run(self, first_start: "tuple[dict, int, int] | None" = None) -> int:
        """Start the container and supervise it until it is not restarted;
        returns its last exit code (or 125 if it never started).
        `first_start`: the first start, made by the helper of `serve` (its
        result, the read ends of the output pipes)."""
        first = True
        delay = 0.0
        code = 125
        while True:
            if first_start is not None:
                result, out_r, err_r = first_start
                first_start = None
                out_w = err_w = null = -1
            else:
                out_r, out_w = os.pipe()
                err_r, err_w = os.pipe()
                null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
                stdin = self.stdin_fd if self.stdin_fd >= 0 else null
                result = self.start_container((stdin, out_w, err_w))
            master = result.pop("master", -1)
            if "error" in result:
                for fd in (out_r, out_w, err_r, err_w, null):
                    if fd >= 0:
                        os.close(fd)
                message = str(result["error"])
                self.note(f"start failed: {message}")
                try:
                    self.rt.delete(self.cid, force=True)
                except BaseException as exc2:
                    self.note(f"delete after failed start: {exc2}")
                exit_code = _exec_exit_code(message)
                self.record(status="created" if first else "exited", pid=0, error=message,
                            exit_code=exit_code, finished_at=_now(),
                            reason=f"failed to start: {message}")
                if first:
                    self.tell(error=message, category=result.get("category", "internal"),
                              exit_code=exit_code)
                return exit_code
            pid = int(result["pid"])
            for fd in (out_w, err_w, null):
                if fd >= 0:
                    os.close(fd)
            if self.stdin_fd >= 0 and master < 0:
                # the container holds the attached stdin now; EOF reaches it
                # only if nobody else keeps the terminal or pipe open
                os.close(self.stdin_fd)
                self.stdin_fd = -1
            if master >= 0:
                # a terminal: its master is both output streams, and input
                for fd in (out_r, err_r):
                    if fd >= 0:
                        os.close(fd)
                out_r, err_r = master, -1
            started = time.monotonic()
            if self.health is not None:
                self.health.reset(self)
            # an idle connection keeps sqlite's page cache: not worth its memory
            self.close_db()
            if first:
                if not self.pid_told:  # serve's start helper may have told it
                    # jsonio.dumps({"pid": pid}), without executing the encoder here
                    self.tell_raw(b'{"pid":%d}\n' % pid)
                first = False
            status = self.pump(pid, out_r, err_r)
            code = os.waitstatus_to_exitcode(status)
            signaled = code < 0
            if signaled:
                code = 128 - code
            oom = _oom_kills(self.cid)
            try:
                self.rt.delete(self.cid, force=True)
            except BaseException as exc:
                self.note(f"delete after exit: {exc}")
            if self.cli_removes():
                self.exit_record = {
                    "oom": oom, "finished_at": _now(),
                    "reason": _reason(code, signaled, oom, False),
                    "reason_stopped": _reason(code, signaled, oom, True),
                }
                self.end_sessions(code)
                return code
            row = self.row()
            if row is None:  # removed meanwhile (rm -f)
                self.end_sessions(code)
                return code
            reason = _reason(code, signaled, oom, bool(row["stop_requested"]))
            if row["reason"].startswith("unhealthy:"):
                reason = row["reason"]  # the health check's action killed it
            ran = time.monotonic() - started
            restart = self.should_restart(code, bool(row["stop_requested"])) or (
                reason == "unhealthy:restart" and not row["stop_requested"])
            self.record(status="restarting" if restart else "exited", pid=0, exit_code=code,
                        oom_killed=int(oom), finished_at=_now(), reason=reason,
                        events=[*([("oom", {})] if oom else []), ("die", {"exitCode": code})])
            # after the record: an attach that comes later sees it stopped
            self.end_sessions(code)
            if not restart:
                return code
            # Docker's back-off: 100 ms doubling, capped at 1 min, reset when
            # the container had run for 10 s
            delay = 0.1 if ran >= 10 or delay == 0 else min(delay * 2, 60.0)
            self.restart_count += 1
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
                row = self.row()
                if row is None or row["stop_requested"]:
                    if row is not None:
                        self.record(status="exited")
                    return code

    def cli_removes(self) -> bool:
        """Whether the container's exit is recorded by the CLI of a
        foreground `run --rm`, attached and still there, with its removal
        (finish tells it, Started.wait_exit): this process then opens no
        database after the exit (~2.5 ms of a `run --rm`). Not with a
        health check or a restart policy: whether to restart is decided on
        the row (Docker refuses to give an --rm container a restart policy,
        at create as at update)."""
        cfg = self.cfg
        return (self.status_fd >= 0 and bool(cfg.get("attach")) and bool(cfg.get("auto_remove"))
                and self.health is None
                and (cfg.get("restart") or {}).get("Name", "no") in ("", "no"))

    def listen(self) -> None:
        """The attach socket: BUNDLE/attach.sock, a path socket in the
        bundle (under the 0700 data root), bound relative to it so any
        --root fits sun_path (never an abstract socket, CVE-2020-15257)."""
        import _socket

        cwd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(self.bundle)
            with contextlib.suppress(FileNotFoundError):
                os.unlink("attach.sock")
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
            try:
                sock.bind("attach.sock")
                os.chmod("attach.sock", 0o600)
                sock.listen(8)
            except OSError:
                sock.close()
                raise
            sock.setblocking(False)
            self.listener = sock
        finally:
            os.fchdir(cwd)  # the start helper's (see serve)
            os.close(cwd)

    def accept(self, streams: dict, master: int) -> int:
        """A `berth attach`: its stdout/stderr fds (and a pipe of its input
        for a terminal) arrive with SCM_RIGHTS; returns the input fd or -1."""
        import _socket

        try:
            cfd, _ = self.listener._accept()
        except OSError:
            return -1
        conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, cfd)
        conn.settimeout(2)
        try:
            head = conn.recv(4, _socket.MSG_PEEK)
            if head == b"wsiz":
                # a foreground CLI's terminal was resized: "wsiz ROWS COLS\n"
                # (execclient.send_window_size); the container's terminal follows
                # (the kernel sends SIGWINCH to its foreground process group)
                words = conn.recv(64).split()
                conn.close()
                if master >= 0 and len(words) == 3 and words[1].isdigit() and words[2].isdigit():
                    size = int(words[1]).to_bytes(2, sys.byteorder) + int(words[2]).to_bytes(
                        2, sys.byteorder) + bytes(4)
                    with contextlib.suppress(OSError, OverflowError):
                        fcntl.ioctl(master, 0x5414, size)  # TIOCSWINSZ
                return -1
            if head == b"exec":
                # a `berth exec`: served by a fork (berth/execclient.py), which
                # this process reaps with its container's orphans (_reap)
                if libc.fork_bare() == 0:
                    code = 1
                    try:
                        from berth.engine.execserve import serve

                        code = serve(self, conn)
                    finally:
                        os._exit(code)
                conn.close()
                return -1
            _msg, anc, _f, _a = conn.recvmsg(1024, _socket.CMSG_SPACE(4 * 3))
        except OSError:
            conn.close()
            return -1
        fds = []
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds.extend(int.from_bytes(data[i:i + 4], sys.byteorder)
                           for i in range(0, len(data) - len(data) % 4, 4))
        if len(fds) < 2:
            for fd in fds:
                os.close(fd)
            conn.close()
            return -1
        conn.setblocking(False)
        sess = Session(conn, fds[0], fds[1], fds[2] if len(fds) > 2 else -1)
        self.sessions.append(sess)
        out = [st for st in streams.values() if st.name == "stdout"]
        err = [st for st in streams.values() if st.name == "stderr"]
        if out:
            out[0].extra.append(sess.out)
        if err:
            err[0].extra.append(sess.err)
        if sess.inp >= 0 and master < 0:
            os.close(sess.inp)  # input only goes to a terminal
            sess.inp = -1
        return sess.inp

    def drop(self, sess: "Session", streams: dict) -> None:
        for st in streams.values():
            for fd in (sess.out, sess.err):
                if fd in st.extra:
                    st.extra.remove(fd)
        sess.close()
        if sess in self.sessions:
            self.sessions.remove(sess)

    def end_sessions(self, code: int) -> None:
        for sess in list(self.sessions):
            try:
                sess.conn.setblocking(True)
                sess.conn.settimeout(1)
                sess.conn.send(f'{{"exit": {code}}}\n'.encode())
            except OSError:
                pass
            sess.close()
        self.sessions = []

    def start_container(self, stdio: tuple[int, int, int], inline: bool = False) -> dict:
        """Create and start the container (see _start_container); `inline`:
        in this process, which is short-lived (serve's start helper)."""
        if not self.cfg.get("tty"):
            return self._start_container(stdio, inline=inline)
        import _socket

        from berth.runtime.console import recv_fd

        if self.cfg["runtime"] in ("berth", ""):
            mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
            try:
                result = self._start_container(stdio, console_fd=theirs.fileno(),
                                               inline=inline)
            finally:
                theirs.close()
            try:
                if "pid" in result:
                    result["master"] = recv_fd(mine)[0]
            finally:
                mine.close()
        else:
            # runc takes a path; relative to our cwd (the bundle) it always
            # fits in sun_path
            os.chdir(self.bundle)
            name = "console.sock"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
            listener.bind(name)
            listener.listen(1)
            try:
                result = self._start_container(stdio, console_socket=name, inline=inline)
                if "pid" in result:
                    listener.settimeout(5)
                    cfd, _ = listener._accept()
                    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, cfd)
                    try:
                        result["master"] = recv_fd(conn)[0]
                    finally:
                        conn.close()
            finally:
                listener.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name)
        size = self.cfg.get("tty_size")
        if result.get("master", -1) >= 0 and size:
            import fcntl
            import struct

            fcntl.ioctl(result["master"], 0x5414,  # TIOCSWINSZ
                        struct.pack("HHHH", size[0], size[1], 0, 0))
        return result

    def _start_container(self, stdio: tuple[int, int, int], console_socket: str | None = None,
                         console_fd: int = -1, inline: bool = False) -> dict:
        """Create and start the container from a short-lived fork of this
        process, which also records it running: the runtime's code and the
        database touch many shared pages, and would leave this long-lived
        process with private copies of them. The container's init, orphaned
        when the helper exits, is reparented to us (we are its subreaper).
        `inline`: this process is such a helper already (serve's), no fork."""
        from berth import jsonio
        from berth.linux import libc

        if inline:
            return self._create_and_start(stdio, console_socket, console_fd)
        r, w = os.pipe()
        # single-threaded, no lock held: a bare fork (libc.fork_bare) spares
        # this long-lived process the at-fork handlers' pages and the helper
        # their time
        helper = libc.fork_bare()
        if helper == 0:
            os.close(r)
            out = self._create_and_start(stdio, console_socket, console_fd)
            try:
                write_all(w, jsonio.dumps(out).encode())
            finally:
                os._exit(0)
        os.close(w)
        data = b""
        while True:
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
        os.close(r)
        _wait_helper(helper)
        if data.startswith(b'{"pid":') and data.endswith(b"}") and data[7:-1].isdigit():
            # the usual answer, parsed without executing the decoder here
            return {"pid": int(data[7:-1])}
        try:
            msg = jsonio.loads(data)
        except ValueError:
            msg = None
        if not isinstance(msg, dict):
            return {"error": "container start helper died", "category": "internal"}
        return msg

    def _create_and_start(self, stdio: tuple[int, int, int], console_socket: str | None,
                          console_fd: int) -> dict:
        """The runtime's create and start, the network attached between, the
        start recorded: {"pid": N} or {"error": ..., "category": ...}. In a
        bare fork (libc.fork_bare) of the monitor."""
        if "random" in sys.modules:
            # what os.fork's at-fork handler does: a random state of its own
            # (host port picks in network attach)
            sys.modules["random"].seed()
        try:
            kw = {}
            if self.cfg["runtime"] in ("berth", "") and self.conn is None:
                # the database that records the start is opened while the
                # container's child makes its namespaces (the runtime waits)
                kw["on_wait"] = self._open_db_meanwhile
            pid = self.rt.create(self.cid, self.bundle, stdio, console_socket=console_socket,
                                 console_fd=console_fd, **kw)
            if self.cfg.get("network"):
                # the monitor starts without site-packages (pyroute2 lives there)
                sys.path.extend(p for p in self.cfg.get("sys_path") or [] if p not in sys.path)
                from berth.network.attach import attach_container
                from berth.paths import Paths

                attach_container(Paths(self.cfg["root"], self.cfg["state"]), self.cid, pid,
                                 self.cfg["network"], self.bundle)
            self.rt.start(self.cid)
            monitor = self.monitor_pid
            self.record(status="running", pid=pid, started_at=_now(), error="",
                        restart_count=self.restart_count, monitor_pid=monitor,
                        monitor_start=_start_time(monitor), oom_killed=0, reason="",
                        events=[("start", {})])
            return {"pid": pid}
        except BaseException as exc:
            return {"error": getattr(exc, "message", None) or str(exc),
                    "category": getattr(exc, "category", "internal")}

    def should_restart(self, code: int, stop_requested: bool) -> bool:
        policy = self.cfg.get("restart") or {}
        try:  # `berth update --restart` may have changed it since the start
            from berth import jsonio

            row = self.db().execute("SELECT host_config FROM containers WHERE id = ?",
                                    (self.cid,)).fetchone()
            if row is not None:
                hc = jsonio.loads(row[0])
                if isinstance(hc, dict) and hc.get("RestartPolicy"):
                    policy = hc["RestartPolicy"]
        except (OSError, ValueError):
            pass
        name = policy.get("Name") or "no"
        if stop_requested or name == "no":
            return False
        if name in ("always", "unless-stopped"):
            return True
        if name == "on-failure":
            limit = policy.get("MaximumRetryCount") or 0
            return code != 0 and (limit == 0 or self.restart_count < limit)
        return False

    def pump(self, pid: int, out_r: int, err_r: int) -> int:
        """Copy output until the container's init exits and its pipes drain;
        returns the init's wait status."""
        os.set_blocking(out_r, False)
        streams = {out_r: Stream("stdout", out_r, self.log, self.attach_out)}
        if err_r >= 0:
            os.set_blocking(err_r, False)
            streams[err_r] = Stream("stderr", err_r, self.log, self.attach_err)
        relay_in = self.stdin_fd if err_r < 0 else -1  # a terminal's input
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN | select.POLLHUP)
        if pidfd >= 0:
            poller.register(pidfd, select.POLLIN)
        if relay_in >= 0:
            poller.register(relay_in, select.POLLIN | select.POLLHUP)
        master = out_r if err_r < 0 else -1
        listen_fd = self.listener.fileno() if self.listener is not None else -1
        if listen_fd >= 0:
            poller.register(listen_fd, select.POLLIN)
        session_of: dict[int, Session] = {}
        inputs: dict[int, Session] = {}
        status = None
        drain_deadline = None
        while streams:
            timeout = 1000
            if self.health is not None and status is None:
                due = self.health.due()
                if due <= 0:
                    self.health.probe(self)
                    due = self.health.due()
                timeout = min(timeout, max(1, int(due * 1000)))
            if drain_deadline is not None:
                timeout = max(0, int((drain_deadline - time.monotonic()) * 1000))
            events = poller.poll(timeout)
            for fd, _ev in events:
                if fd == pidfd:
                    poller.unregister(pidfd)
                    continue
                if fd == listen_fd:
                    n = len(self.sessions)
                    inp = self.accept(streams, master)
                    if len(self.sessions) > n:
                        sess = self.sessions[-1]
                        session_of[sess.conn.fileno()] = sess
                        poller.register(sess.conn.fileno(), select.POLLIN | select.POLLHUP)
                        if inp >= 0:
                            inputs[inp] = sess
                            poller.register(inp, select.POLLIN | select.POLLHUP)
                    continue
                if fd in session_of:
                    sess = session_of.pop(fd)
                    poller.unregister(fd)
                    if sess.inp in inputs:
                        poller.unregister(sess.inp)
                        del inputs[sess.inp]
                    self.drop(sess, streams)
                    continue
                if fd in inputs:
                    try:
                        data = os.read(fd, 65536)
                    except OSError:
                        data = b""
                    if data and master >= 0:
                        with contextlib.suppress(OSError):
                            write_all(master, data)
                    if not data:
                        poller.unregister(fd)
                        sess = inputs.pop(fd)
                        os.close(fd)
                        sess.inp = -1
                    continue
                if fd == relay_in:
                    try:
                        data = os.read(relay_in, 65536)
                    except OSError:
                        data = b""
                    if data:
                        try:
                            write_all(out_r, data)
                        except OSError:
                            data = b""
                    if not data:
                        poller.unregister(relay_in)
                        relay_in = -1
                    continue
                if fd not in streams:
                    continue
                if not streams[fd].read():
                    poller.unregister(fd)
                    os.close(fd)
                    del streams[fd]
            if status is None:
                status = _reap(pid)
                if status is not None and drain_deadline is None:
                    drain_deadline = time.monotonic() + FINISH_DRAIN_S
            if drain_deadline is not None and time.monotonic() >= drain_deadline:
                break
        while status is None:
            if pidfd >= 0:
                select.select([pidfd], [], [], 1.0)
            else:
                time.sleep(0.01)
            status = _reap(pid)
        for st in streams.values():
            while True:
                try:
                    if not st.read():
                        break
                except OSError:
                    break
            st.flush()
            os.close(st.fd)
        if pidfd >= 0:
            os.close(pidfd)
        return status

    def finish(self, code: int) -> None:
        """After the last exit: unmount the rootfs, remove the container if
        it is --rm, close the attached streams and report the exit."""
        for fd in (self.attach_out, self.attach_err):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.attach_out = self.attach_err = -1
        if self.listener is not None:
            self.listener.close()
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(self.bundle, "attach.sock"))
        self.log.close()
        if self.cfg.get("network"):
            try:
                sys.path.extend(p for p in self.cfg.get("sys_path") or [] if p not in sys.path)
                from berth.network.attach import release_container
                from berth.paths import Paths

                release_container(Paths(self.cfg["root"], self.cfg["state"]), self.cid)
            except Exception as exc:  # noted, never fatal to recording the exit
                self.note(f"release networks: {exc}")
        try:
            _unmount(os.path.join(self.bundle, "rootfs"))
        except OSError as exc:
            self.note(f"unmount rootfs: {exc}")
        if not self.cfg.get("auto_remove"):
            self.tell(exit=code)
            return
        if self.status_fd >= 0:
            # a foreground `run --rm`: its CLI has the engine loaded and removes
            # the container itself once told; we wait for it to be gone and
            # remove the container only if it died first
            # (with the exit to record, see cli_removes)
            if self.exit_record is not None:
                self.tell(exit=code, remove=True, record=self.exit_record)
            else:
                self.tell(exit=code, remove=True)
            if self.status_fd >= 0:
                import select

                poller = select.poll()
                poller.register(self.status_fd, 0)  # POLLERR: the reader is gone
                while not poller.poll(1000):
                    pass
        self.close_db()
        row = self.row()
        if row is not None:
            rec = self.exit_record
            if rec is not None and row["status"] != "exited":
                # the CLI went before it recorded the exit
                self.record(status="exited", pid=0, exit_code=code, oom_killed=int(rec["oom"]),
                            finished_at=rec["finished_at"],
                            reason=rec["reason_stopped" if row["stop_requested"] else "reason"],
                            events=[*([("oom", {})] if rec["oom"] else []),
                                    ("die", {"exitCode": code})])
            self.auto_remove()
        self.tell(exit=code)

    def auto_remove(self) -> None:
        try:
            for p in self.cfg.get("sys_path") or []:
                if p not in sys.path:
                    sys.path.append(p)
            from berth.engine.containers import Engine
            from berth.paths import Paths

            eng = Engine(Paths(self.cfg["root"], self.cfg["state"]))
            eng.remove(self.cid, force=True, volumes=True, from_monitor=True)
            eng.close()
        except BaseException as exc:
            self.note(f"auto-remove: {exc}")


class Session:
    """One `berth attach`: its socket (closed by the CLI = detached), its
    output fds and, for a terminal, its input."""

    def __init__(self, conn: object, out: int, err: int, inp: int) -> None:
        self.conn = conn
        self.out = out
        self.err = err
        self.inp = inp

    def close(self) -> None:
        for fd in (self.out, self.err, self.inp):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.out = self.err = self.inp = -1
        with contextlib.suppress(OSError):
            self.conn.close()  # type: ignore[attr-defined]


def _reap(pid: int) -> int | None:
    """The init's wait status if it has exited; other orphans we inherited as
    subreaper are reaped on the way."""
    result = None
    while True:
        try:
            wpid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if wpid == 0:
            break
        if wpid == pid:
            result = status
    return result


def _wait_helper(pid: int) -> None:
    """Reap a start helper (os.waitpid retries EINTR itself, PEP 475)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2:].split()[19])
    except (OSError, ValueError, IndexError):
        return 0


def _oom_kills(cid: str) -> bool:
    """Whether the kernel's OOM killer fired in the container's cgroup."""
    for path, key in ((f"/sys/fs/cgroup/berth/{cid}/memory.events", "oom_kill"),
                      (f"/sys/fs/cgroup/memory/berth/{cid}/memory.oom_control", "oom_kill")):
        try:
            with open(path) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == key and int(v) > 0:
                        return True
        except (OSError, ValueError):
            continue
    return False


def _reason(code: int, signaled: bool, oom: bool, stopped: bool) -> str:
    if oom:
        return "oom"
    if stopped:
        return f"stopped:{code}"
    if signaled:
        return f"signal:{code - 128}"
    return f"exit:{code}"


def _exec_exit_code(message: str) -> int:
    """Docker's codes for a command that could not be run: 127 not found,
    126 not executable; 125 for anything else."""
    m = message.lower()
    if "exec" in m and ("not found" in m or "no such file" in m):
        return 127
    if "exec" in m and ("permission denied" in m or "exec format error" in m):
        return 126
    return 125


def _unmount(target: str) -> None:
    import errno

    from berth.linux import libc

    for _ in range(64):
        try:
            libc.umount2(target, libc.MNT_DETACH)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise


SERVE_FD_BASE = 16


def _connect_early(database: object) -> object:
    """A database connection for serve's start helper, opened while the CLI
    writes the bundle; None if it cannot be (the helper opens one later)."""
    if not isinstance(database, str):
        return None
    try:
        from berth import db

        conn = db.connect(database)
        conn.execute("SELECT 1 FROM containers LIMIT 0")  # the schema, read now
        return conn
    except Exception:  # any failure is met again, and reported, by the helper's own
        return None


def _set_name() -> None:
    """libc.set_name("berth-monitor"), without a ctypes call."""
    try:
        fd = os.open("/proc/self/comm", os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, b"berth-monitor")
        finally:
            os.close(fd)
    except OSError:
        pass


def main(argv: list[str]) -> int:
    """The monitor as a fresh interpreter (spawn._spawn_fresh)."""
    from berth import jsonio

    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)
    _set_name()
    cfg = jsonio.load_file(argv[1])
    assert isinstance(cfg, dict)
    mon = Monitor(cfg)
    try:
        mon.listen()
    except OSError as exc:
        mon.note(f"attach socket: {exc}")
    with contextlib.suppress(OSError):
        os.chdir(mon.bundle)
    return _supervise(mon, None)


def _supervise(mon: Monitor, started: "tuple[dict, int, int] | None") -> int:
    # the container's processes are forked from here: keep the imported
    # modules' objects out of the collector so their pages stay shared
    gc.freeze()
    code = 125
    try:
        code = mon.run(started)
    except BaseException as exc:
        mon.note(f"monitor failed: {type(exc).__name__}: {exc}")
        import traceback

        os.write(mon.diag, traceback.format_exc().encode())
        mon.tell(error=f"monitor failed: {exc}", category="internal", exit_code=125)
    finally:
        mon.finish(code)
    return 0


_SERVED = ("cid", "bundle", "cfg_path", "database", "status_fd", "attach_out", "attach_err",
           "stdin_fd", "restart_count", "conn", "listener", "monitor_pid", "pid_told", "log",
           "diag", "health", "sessions")


def warm_type_cache() -> None:
    """In the zygote, before it freezes: the attribute lookups a forked
    monitor makes while its container runs, made once here. CPython keeps
    a cache of (type, name) lookups in the interpreter's static data (4096
    entries, ~100 KB: every `os.setsid`, `self.diag` or `sock.fileno`
    goes through it) and each miss writes an entry and the reference
    counts of the name it stores and of the name it evicts: in a monitor,
    a page of that table and up to two pages of strings copied per miss
    (~60 misses: ~0.1 MB per monitor). Best effort: a lookup that does not
    hit the same entry costs what it did."""
    mods = [os, fcntl, _socket, select, marshal, time, gc, sys, contextlib, libc]
    codes = [serve.__code__, _supervise.__code__, Monitor.run.__code__,
             Monitor.pump.__code__, _reap.__code__, _wait_helper.__code__,
             _set_name.__code__, _is_open.__code__, Stream.__init__.__code__,
             Stream.read.__code__, write_all.__code__]
    names = [n for c in codes for n in c.co_names]
    for n in names:  # module attributes (one cache key for every module)
        for m in mods:
            if n in m.__dict__:
                getattr(m, n)
                break
    sock = _socket.socket.__new__(_socket.socket)
    mon = Monitor.__new__(Monitor)
    log = JsonFileLog.__new__(JsonFileLog)
    lazy = {k for k, v in vars(Monitor).items() if isinstance(v, _Lazy)}
    for obj in (sock, select.poll(), [], {}, memoryview(b""), log):
        for n in names:
            if hasattr(type(obj), n):
                getattr(obj, n, None)
    # the monitor's methods and attributes (serve's), not other names: an
    # entry made for nothing can evict one that is used
    for n in names:
        if n not in lazy and (n in vars(Monitor) or n in _SERVED):
            getattr(mon, n, None)
    for obj in (mon, log):
        for n in ("__new__", "__dict__"):
            getattr(type(obj) if n == "__new__" else obj, n)
    st = Stream("stdout", -1, log, -1)
    for n in Stream.read.__code__.co_names:
        if hasattr(st, n):
            getattr(st, n)
    for n in ("fd", "size", "path", "max_size", "max_file"):
        getattr(log, n, None)
    with contextlib.suppress(ChildProcessError):
        pass


def serve(conn: object, note: "object") -> int:
    """The monitor forked by the zygote for the request on `conn` (the
    CLI's ``{"config": PATH, "fds": [3, ...]}`` and those fds, SCM_RIGHTS);
    returns its exit code.

    Memory: this process lives as long as its container, and every page it
    writes after the fork is its own (CPython writes reference counts and
    the specialising interpreter's counters into every object and code
    object it touches). So the setup is done by a short-lived child (the
    start helper, `_first_start`): it receives the request, answers it,
    makes the monitor's files and attach socket, creates and starts the
    container and records it, then hands this process the fds and a few
    values (marshal: one C call to decode). What this process executes
    until the container runs is a handful of functions."""
    os.setsid()
    libc.prctl(libc.PR_SET_CHILD_SUBREAPER, 1)  # before the container exists
    _set_name()
    mine, theirs = _socket.socketpair(_socket.AF_UNIX,
                                      _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC, 0)
    me = os.getpid()
    helper = libc.fork_bare()
    if helper == 0:
        mine.close()
        _first_start(conn, theirs, me, note)  # never returns
    theirs.close()
    conn.close()  # type: ignore[attr-defined]
    try:
        size = mine.recv_into(bytearray(1), 1, _socket.MSG_PEEK | _socket.MSG_TRUNC)
        msg, anc, _f, _a = mine.recvmsg(max(size, 1), _socket.CMSG_SPACE(4 * 16),
                                        _socket.MSG_CMSG_CLOEXEC)
    except OSError:
        msg, anc = b"", []
    mine.close()
    _wait_helper(helper)
    fds: list[int] = []
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.extend(memoryview(data[:len(data) - len(data) % 4]).cast("i"))
    if not msg:
        for fd in fds:
            os.close(fd)
        return 1  # the helper failed (and noted why)
    st = marshal.loads(msg)
    # everything above the numbers it goes to, then the CLI's fds at theirs
    # (3 status, 4-6 attached stdio) and the monitor's own at 16 and up
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 64) for fd in fds]
    os.closerange(3, 64)
    null = os.open("/dev/null", os.O_RDWR)
    for t in (0, 1, 2):
        os.dup2(null, t)
    os.close(null)
    targets = st.pop("targets")
    for fd, target in zip(high, targets, strict=False):  # the rest are its own
        os.dup2(fd, target)
    own = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, SERVE_FD_BASE) for fd in high[len(targets):]]
    for fd in high:
        os.close(fd)
    own.reverse()
    mon = Monitor.__new__(Monitor)
    log = JsonFileLog.__new__(JsonFileLog)
    log.__dict__.update(st.pop("log"))
    log.fd = own.pop()
    result = st.pop("result")
    hc = st.pop("healthcheck")
    mon.__dict__.update(st)
    mon.log = log
    mon.diag = own.pop()
    mon.health = Health(hc) if hc else None
    mon.sessions = []
    if st["listening"]:
        mon.listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, own.pop())
        mon.listener.setblocking(False)
    out_r = err_r = -1
    if "pid" in result:
        out_r = own.pop()
        err_r = own.pop() if st["pipes"] == 2 else -1
        if err_r < 0:
            result["master"] = out_r
            out_r = -1
    try:
        os.chdir(mon.bundle)
    except OSError:
        pass
    return _supervise(mon, (result, out_r, err_r))


def _setup_monitor(cfg: dict | None, req: dict, pre: object, by_target: dict[int, int],
                   monitor_pid: int, note: object) -> Monitor:
    """The Monitor of serve's start helper, from `cfg` (else monitor.json),
    its files open and its attach socket listening. Exits if it cannot be."""
    from berth import jsonio

    try:
        if cfg is None:
            cfg = jsonio.load_file(req["config"])  # type: ignore[assignment]
        assert isinstance(cfg, dict)
        mon = Monitor(cfg)
        if pre is not None and req.get("database") == mon.database:
            mon.conn = pre
    except BaseException as exc:
        note(f"monitor failed: {type(exc).__name__}: {exc}")  # type: ignore[operator]
        os._exit(1)
    mon.monitor_pid = monitor_pid
    # the CLI's fds are at other numbers here than in the monitor
    mon.status_fd = by_target.get(STATUS_FD, -1)
    mon.stdin_fd = by_target.get(ATTACH_IN_FD, -1) if cfg.get("stdin") else -1
    try:
        mon.listen()
    except OSError as exc:
        mon.note(f"attach socket: {exc}")
    return mon


def _first_start(conn: object, to_monitor: object, monitor_pid: int, note: object) -> None:
    """The start helper of `serve` (a child of the monitor): the request
    received and answered, the monitor's files and attach socket made, the
    container created, started and recorded (Monitor.start_container), and
    what the monitor needs sent to it. Exits."""
    import _socket
    import marshal

    from berth import jsonio

    try:
        msg, anc, _flags, _addr = conn.recvmsg(65536, _socket.CMSG_SPACE(4 * 8))  # type: ignore[attr-defined]
        fds: list[int] = []
        for level, kind, data in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds.extend(int.from_bytes(data[i:i + 4], sys.byteorder)
                           for i in range(0, len(data) - len(data) % 4, 4))
        req = jsonio.loads(msg)
        assert isinstance(req, dict)
        targets: list[int] = list(req["fds"])
        if len(targets) != len(fds):
            raise ValueError(f"{len(fds)} fds for {len(targets)} targets")
        by_target = dict(zip(targets, fds, strict=True))
    except BaseException as exc:
        # no answer: the CLI tries again, then starts a monitor of its own
        try:
            note(f"request: {type(exc).__name__}: {exc}")  # type: ignore[operator]
        finally:
            os._exit(1)
    pre = mon = None
    try:
        # answered as the zygote did once it had forked the monitor; a CLI
        # killed meanwhile does not stop the start
        conn.send(b'{"pid":%d}' % monitor_pid)  # type: ignore[attr-defined]
        if req.get("wait"):
            # forked while the CLI writes the bundle (spawn.begin): it says
            # when monitor.json is there, or closes (nothing to start).
            # Meanwhile the database connection that records the start is
            # opened and its schema read, and, with monitor.json's content
            # in the request, the monitor is set up.
            early = req.get("monitor") if isinstance(req.get("monitor"), dict) else None
            if early is None or early.get("runtime") not in ("berth", ""):
                # (with berth's runtime, during its create: _open_db_meanwhile)
                pre = _connect_early(req.get("database"))
            if early is not None:
                mon = _setup_monitor(early, req, pre, by_target, monitor_pid, note)
            conn.settimeout(None)  # type: ignore[attr-defined]
            if conn.recv(1) != b"g":  # type: ignore[attr-defined]
                os._exit(1)
    except OSError:
        if req.get("wait"):
            os._exit(1)
    conn.close()  # type: ignore[attr-defined]
    if mon is None:
        mon = _setup_monitor(None, req, pre, by_target, monitor_pid, note)
    cfg = mon.cfg
    try:
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
        stdin = mon.stdin_fd if mon.stdin_fd >= 0 else null
        result = mon.start_container((stdin, out_w, err_w), inline=True)
        for fd in (out_w, err_w, null):
            os.close(fd)
        master = result.pop("master", -1)
        own = [mon.log.fd, mon.diag]
        if mon.listener is not None:
            own.append(mon.listener.fileno())
        pipes = 0
        if "pid" in result:
            if master >= 0:
                os.close(out_r)
                os.close(err_r)
                own.append(master)
                pipes = 1
            else:
                own += [out_r, err_r]
                pipes = 2
        else:
            os.close(out_r)
            os.close(err_r)
        told = False
        if "pid" in result and mon.status_fd >= 0 and not cfg.get("healthcheck"):
            # the CLI goes on now, not once the monitor has taken over (with
            # a health check, the monitor tells it once the state is recorded)
            try:
                os.write(mon.status_fd, b'{"pid":%d}\n' % result["pid"])
                told = True
            except OSError:
                pass
        st = {
            "targets": targets, "result": result, "pipes": pipes,
            "listening": mon.listener is not None,
            "log": {"path": mon.log.path, "max_size": mon.log.max_size,
                    "max_file": mon.log.max_file, "size": mon.log.size},
            "healthcheck": cfg.get("healthcheck") or None,
            "cid": mon.cid, "bundle": mon.bundle, "cfg_path": req["config"],
            "database": mon.database,
            "status_fd": STATUS_FD if STATUS_FD in by_target else -1,
            "attach_out": ATTACH_OUT_FD if cfg.get("attach") else -1,
            "attach_err": ATTACH_ERR_FD if cfg.get("attach") else -1,
            "stdin_fd": ATTACH_IN_FD if cfg.get("stdin") else -1,
            "restart_count": mon.restart_count, "conn": None, "listener": None,
            "monitor_pid": monitor_pid, "pid_told": told,
        }
        to_monitor.sendmsg([marshal.dumps(st)],  # type: ignore[attr-defined]
                           [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                             b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds + own))])
    except BaseException as exc:
        with contextlib.suppress(BaseException):
            mon.note(f"monitor start helper failed: {type(exc).__name__}: {exc}")
            mon.tell(error=f"monitor failed: {exc}", category="internal", exit_code=125)
        os._exit(1)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
