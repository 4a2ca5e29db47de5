"""`berth exec` served by a zygote's spare helper or the container's monitor.

A plain `berth exec CTR CMD...` does not load the engine, the database
module or the runtime library into the CLI (together ~35 ms of imports,
more than the exec itself), nor `os` (~1.5 ms; posix suffices). The CLI
hands the request and its stdio to a process that has the runtime library
and sqlite loaded (pages shared with the monitor zygote), which checks the
request against the database, builds the process as `Engine.exec` does
(`build_process`) and runs the runtime's exec with the CLI's fds as the
process's stdio. That process is, in order of preference:

- the zygote's spare exec helper (STATE/monitor/exec.sock, see `spare`):
  forked by the zygote before it is needed, its database already open; it
  serves one exec for any running container of its engine, and the zygote
  forks the next. Not for a detached exec, nor when no zygote runs (the
  socket then refuses the connection) or the request is another engine's;
- the container's monitor (BUNDLE/attach.sock, see monitor.listen), found
  from a name hint: the monitor forks a short-lived helper for it (the
  monitor itself only peeks and forks: what it executes would become
  private pages of a long-lived process);
- else the engine's own path, in the CLI.

Protocol (a SOCK_STREAM connection to either socket, root only: both are
0600 in 0700 directories):

- CLI: ``exec``; helper: ``ok PID\\n`` (its pid: the CLI forwards the
  signals it gets to it, which the runtime's exec passes on to the process);
- CLI: the request, a 4-byte length then a marshalled dict (ref, args, env,
  workdir, user, privileged, detach; and for the spare the database of the
  CLI's --root), with the process's stdin, stdout and stderr (SCM_RIGHTS)
  on its first byte;
- helper, once, then it closes: ``exit N`` (the process's exit status),
  ``error N MESSAGE`` (the exec failed: Docker's exit code N and message),
  ``fallback`` (nothing was done: the request is not one the helper
  serves, e.g. the reference names another container, or the container
  is paused or stopping; the CLI then runs the engine's path, which gives
  Docker's answer), or, from a spare, ``pass`` (the request is another
  engine's: the CLI asks the container's monitor).

Name hints: STATE/names/NAME is a symbolic link to the container's id,
made when a container starts and on rename, removed with it. A hint is
never trusted: the helper resolves the reference in the database (Docker's
order: full id, name, unique id prefix) and answers ``fallback`` unless it
names a running container (for a monitor: its own), so a stale or missing
hint only costs the engine's path.

The attach socket also takes ``wsiz ROWS COLS`` from a foreground `run -t`
or `attach` whose terminal was resized (`send_window_size`,
`follow_window_size`): the monitor resizes the container's pty.

Import-light: the CLI imports this module before anything else of the
engine (posix, _socket and marshal only).
"""

import marshal
import posix

HINTS = "names"
SPARE = "monitor/exec.sock"  # under --state: the zygote's spare exec helper (see serve_spare)
FIRST_REPLY_TIMEOUT_S = 1.0  # the monitor accepts at once unless it is in a restart back-off
_S_IFDIR = 0o040000


# name hints -----------------------------------------------------------------------------

def _hint_path(state: str, name: str) -> str | None:
    name = name.removeprefix("/")
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        return None
    return f"{state}/{HINTS}/{name}"


def write_hint(state: str, name: str, cid: str) -> None:
    """STATE/names/NAME -> CID (best effort: a missing hint only makes
    `berth exec` take the engine's path)."""
    import os

    path = _hint_path(state, name)
    if path is None:
        return
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        try:
            os.symlink(cid, tmp)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            os.symlink(cid, tmp)
        except FileExistsError:
            os.unlink(tmp)
            os.symlink(cid, tmp)
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def drop_hint(state: str, name: str, cid: str) -> None:
    """Remove STATE/names/NAME if it still names `cid`."""
    path = _hint_path(state, name)
    if path is None:
        return
    try:
        if posix.readlink(path) == cid:
            posix.unlink(path)
    except OSError:
        pass


def _hex(s: str) -> bool:
    return bool(s) and all(c in "0123456789abcdef" for c in s)


def find_bundle(root: str, state: str, ref: str) -> str | None:
    """The bundle of the container `ref` probably names (full id, name hint,
    unique prefix of the ids under ROOT/containers), or None."""
    containers = f"{root}/containers"
    if len(ref) == 64 and _hex(ref) and _is_dir(f"{containers}/{ref}"):
        return f"{containers}/{ref}"
    path = _hint_path(state, ref)
    if path is not None:
        try:
            cid = posix.readlink(path)
        except OSError:
            cid = ""
        if len(cid) == 64 and _hex(cid):
            return f"{containers}/{cid}"
    if _hex(ref):
        try:
            found = [n for n in posix.listdir(containers) if n.startswith(ref)]
        except OSError:
            return None
        if len(found) == 1:
            return f"{containers}/{found[0]}"
    return None


def _is_dir(path: str) -> bool:
    try:
        return posix.stat(path).st_mode & 0o170000 == _S_IFDIR
    except OSError:
        return False


def absolute(path: str) -> str:
    """`path` made absolute against this process's directory (not
    normalised: the receiver does that, see serve_spare)."""
    return path if path.startswith("/") else f"{posix.getcwd()}/{path}"


# the CLI's side -------------------------------------------------------------------------

def request(root: str, state: str, req: dict, stdin: int) -> tuple[int, str] | None:
    """Run `req` (see the module's docstring) through the zygote's spare
    exec helper, or else the monitor of the container it names, with `stdin`
    and this process's stdout and stderr: (exit code, error message or ""),
    or None when nothing was done and the engine's path must run it.
    `root` and `state` are absolute."""
    if not req.get("detach"):
        # a detached process is left to a subreaper: its container's monitor
        result = _ask(state, SPARE, {**req, "database": f"{root}/berth.db"}, stdin)
        if result is not _PASS:
            # the spare answered, or looked in the database and found nothing
            # it runs: the monitor's path would not do better
            return result
    bundle = find_bundle(root, state, req["ref"])
    if bundle is None:
        return None
    result = _ask(bundle, "attach.sock", req, stdin)
    return None if result is _PASS else result


_PASS = (-1, "pass")  # `_ask`: nothing done, and nothing known: ask the next one


def _ask(directory: str, name: str, req: dict, stdin: int) -> tuple[int, str] | None:
    """`req` through the socket DIRECTORY/NAME (see `request`): as
    `request`, or _PASS when nobody there serves it (no socket, no answer,
    another engine's spare)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
    try:
        if not _connect(sock, directory, name):
            return _PASS
        sock.settimeout(FIRST_REPLY_TIMEOUT_S)
        try:
            sock.sendall(b"exec")
            first = _line(sock)
        except OSError:  # a timeout too: the monitor does not answer now
            return _PASS
        if not first.startswith(b"ok "):
            return _PASS
        helper = int(first[3:])
        sock.settimeout(None)
        data = marshal.dumps(req)
        msg = len(data).to_bytes(4, "little") + data
        try:
            sent = sock.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                         b"".join(fd.to_bytes(4, "little")
                                                  for fd in (stdin, 1, 2)))])
            if sent < len(msg):
                sock.sendall(msg[sent:])
        except OSError:
            return _PASS
        from berth.linux.signals import forward_to

        forward_to(helper)
        reply = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                break
            reply += chunk
    finally:
        sock.close()
    if reply == b"fallback\n":
        return None
    if reply == b"pass\n":
        return _PASS
    word, _, rest = reply.partition(b" ")
    if word == b"exit":
        return int(rest), ""
    if word == b"error":
        code, _, text = rest.partition(b" ")
        return int(code), text.decode(errors="replace").rstrip("\n")
    return 126, "exec: the container's monitor ended the exec without an exit status"


def send_window_size(bundle: str, rows: int, cols: int) -> None:
    """Tell the container's monitor that the terminal of a foreground
    `run -t` or `attach` is now rows x cols (best effort: a monitor that is
    gone has no terminal to resize)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
    try:
        if _connect(sock, bundle, "attach.sock"):
            sock.sendall(f"wsiz {rows} {cols}\n".encode())
    except OSError:
        pass
    finally:
        sock.close()


def follow_window_size(bundle: str, fd: int = 0) -> None:
    """From now on, each resize of the terminal on `fd` (SIGWINCH) is sent
    to the container's monitor."""
    import _signal
    import os

    def resized(_signum: int, _frame: object) -> None:
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            return
        send_window_size(bundle, size.lines, size.columns)

    _signal.signal(28, resized)  # SIGWINCH


def _connect(sock, directory: str, name: str) -> bool:
    path = f"{directory}/{name}"
    try:
        if len(path) < 100:
            sock.connect(path)
            return True
        # relative to the directory: a path of any length fits sun_path
        cwd = posix.open(".", posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        try:
            posix.chdir(directory)
            sock.connect(name)
        finally:
            posix.fchdir(cwd)
            posix.close(cwd)
        return True
    except OSError:
        return False


def _line(sock) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            break
        buf += chunk
    return buf


# the process ----------------------------------------------------------------------------

def build_process(config: dict, rootfs: str, args: list[str], env: list[str], workdir: str,
                  user: str, privileged: bool) -> dict:
    """The runtime-spec process `docker exec` runs: the container's own
    (environment, user, capabilities) with the command and the flags over
    it; a later variable replaces an earlier one in place, as options.merge_env."""
    proc = dict(config["process"])
    proc["args"] = list(args)
    proc["terminal"] = False
    merged: dict[str, str] = {}
    for item in [*(proc.get("env") or []), *env]:
        merged[item.split("=", 1)[0]] = item
    proc["env"] = list(merged.values())
    if workdir:
        proc["cwd"] = workdir
    if user or privileged:
        from berth.engine import spec

        if user:
            proc["user"] = spec.resolve_user(rootfs, user)
        if privileged:
            caps = spec.capabilities([], [], True)
            proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective",
                                                           "permitted")}
    return proc


def process_file(proc: dict) -> tuple[str, int]:
    """The process as a file the runtime can open, without a file on disk
    (a memfd, named through /proc so a runtime binary we spawn can open it
    too); (path, fd to close once the runtime has read it)."""
    import os

    from berth import jsonio

    fd = os.memfd_create("process.json", os.MFD_CLOEXEC)
    try:
        data = jsonio.dumps(proc).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return f"/proc/{os.getpid()}/fd/{fd}", fd


# the serving side -----------------------------------------------------------------------

def serve(mon, conn) -> int:
    """The helper's work (a fork of the monitor `mon`) for the connection
    `conn`, whose ``exec`` is still unread; returns the helper's exit code."""
    if not _greet(conn):
        return 1
    # what does not depend on the request, while the CLI sends it
    try:
        db = _open_database(mon.database)
        state, config = _load(mon.rt, mon.cid, mon.bundle)
    except Exception:  # the request is still read: the CLI waits for an answer
        db = state = config = None
    got = _receive(conn)
    if got is None:
        return 1
    req, fds = got
    try:
        row = _resolve(db, req["ref"]) if db is not None else None
        proc = None
        if row == (mon.cid, "running") and config is not None:
            proc = _build(config, mon.bundle, req)
    except Exception:  # nothing done yet: the engine's path answers
        proc = None
    finally:
        if db is not None:
            db.close()
    return _run(conn, mon.rt, mon.cid, req, fds, proc, state)


def spare(listener, notify: int, database: str) -> int:
    """The zygote's spare exec helper (a fork of the zygote, made before it
    is needed): opens the database, then takes one connection from the
    zygote's exec socket (STATE/monitor/exec.sock), tells the zygote (a byte
    on `notify`, so that it forks the next spare) and serves it as
    `serve` does for a monitor, for any running container of the engine
    whose database this is. What a monitor's helper does after the CLI
    connects (a fork, its first page faults, the database's opening and
    schema) is done here in advance: ~4 ms of every `berth exec`.

    A detached exec (`-d`) is never sent here: its process is left to a
    subreaper when the runtime's exec returns, and that must be its
    container's monitor, not a zygote that leaves when idle."""
    import gc

    from berth.linux import libc

    gc.disable()
    try:
        libc.set_name("berth-exec")
    except OSError:
        pass
    # made while the previous spare serves its exec: on a 2-CPU host our
    # warming up would otherwise take CPU time from that exec
    try:
        posix.setpriority(posix.PRIO_PROCESS, 0, 19)
    except OSError:
        pass
    try:
        db = _open_database(database)
    except Exception:  # not there yet, or unreadable: at the request
        db = None
    else:
        _warm(db, database)
    try:
        posix.setpriority(posix.PRIO_PROCESS, 0, 0)
    except OSError:
        pass
    listener.setblocking(True)
    while True:
        try:
            cfd, _ = listener._accept()
            break
        except InterruptedError:
            continue
    import _socket

    listener.close()
    try:
        posix.write(notify, b"x")
    except OSError:
        pass
    posix.close(notify)
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, cfd)
    return serve_spare(conn, db, database)


def _warm(db, database: str) -> None:
    """An exec's steps up to the container's namespaces, done on a running
    container of the engine (if any) without running anything: the pages
    they touch are copied now, before the request, and the database's
    statement is prepared (runtime.exec.warm). Best effort."""
    try:
        row = db.execute("SELECT id FROM containers WHERE status = 'running' LIMIT 1").fetchone()
        if row is None:
            return
        import os

        from berth import jsonio
        from berth.engine.runtimes import runtime_for

        cid = row[0]
        _resolve(db, cid)
        bundle = f"{os.path.dirname(database)}/containers/{cid}"
        cfg = jsonio.load_file(f"{bundle}/monitor.json")
        rt = runtime_for(cfg["runtime"], cfg["runtime_state"], cfg["runtime_log"])
        state, config = _load(rt, cid, bundle)
        if config is None:
            return
        proc = _build(config, bundle, {"args": ["true"], "env": ["A=1"]})
        if rt.name == "berth":
            from berth.runtime.exec import warm

            warm(state, proc)
        else:
            os.close(process_file(proc)[1])
        marshal.loads(marshal.dumps({"ref": cid, "args": ["true"], "env": [], "workdir": "",
                                     "user": "", "privileged": False, "detach": False}))
    except Exception:
        pass


def serve_spare(conn, db, database: str) -> int:
    import os

    if not _greet(conn):
        return 1
    got = _receive(conn)
    if got is None:
        return 1
    req, fds = got
    # the CLI's --root, absolute but not normalised (execd.absolute)
    if os.path.normpath(str(req.get("database", ""))) != database:
        conn.sendall(b"pass\n")  # another engine's: its monitors may serve it
        return 0
    proc = rt = cid = state = None
    try:
        if db is None:
            db = _open_database(database)
        row = _resolve(db, req["ref"])
        if row is not None and row[1] == "running":
            cid = row[0]
            bundle = f"{os.path.dirname(database)}/containers/{cid}"
            from berth import jsonio
            from berth.engine.runtimes import runtime_for

            cfg = jsonio.load_file(f"{bundle}/monitor.json")
            rt = runtime_for(cfg["runtime"], cfg["runtime_state"], cfg["runtime_log"])
            state, config = _load(rt, cid, bundle)
            if config is not None:
                proc = _build(config, bundle, req)
    except Exception:  # nothing done yet: the monitor's or the engine's path answers
        proc = None
    finally:
        if db is not None:
            db.close()
    return _run(conn, rt, cid, req, fds, proc, state)


def _greet(conn) -> bool:
    """Read the connection's ``exec`` and answer with our pid."""
    conn.settimeout(5)
    try:
        if conn.recv(4) != b"exec":
            return False
        conn.sendall(b"ok %d\n" % posix.getpid())
    except OSError:
        return False
    conn.settimeout(None)
    return True


def _receive(conn) -> tuple[dict, list[int]] | None:
    """The request and the three stdio fds that came with it."""
    import _socket

    try:
        data, anc, _flags, _addr = conn.recvmsg(65536, _socket.CMSG_SPACE(4 * 3))
    except OSError:
        return None
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.extend(int.from_bytes(payload[i:i + 4], "little")
                       for i in range(0, len(payload) - len(payload) % 4, 4))
    if len(data) < 4 or len(fds) != 3:
        return None
    size = int.from_bytes(data[:4], "little")
    data = data[4:]
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    try:
        req = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    return (req, fds) if isinstance(req, dict) else None


def _run(conn, rt, cid: str | None, req: dict, fds: list[int], proc: dict | None,
         state=None) -> int:
    """Run `proc` (None: answer ``fallback``) in container `cid` through
    the runtime `rt` with the CLI's stdio `fds`, answer, and close. With
    berth's runtime (whose `state` of the container the caller may have
    loaded), an attached exec runs in this process, which is disposable:
    the runtime's exec may join the container itself (exec_in's
    in_place), one fork fewer."""
    import os

    if proc is None:
        conn.sendall(b"fallback\n")
        return 0
    # the process's stdio is ours at the runtime's fork
    for fd, target in zip(fds, (0, 1, 2), strict=True):
        os.dup2(fd, target)
        os.close(fd)
    from berth.errors import BerthError

    pfd = -1
    try:
        if rt.name == "berth" and not req.get("detach"):
            from berth.runtime.exec import ExecOptions, exec_in
            from berth.runtime.log import Log

            code = exec_in(rt.paths, Log(rt.log_path, "json"), cid, ExecOptions(process=proc),
                           state=state, in_place=True)
        else:
            path, pfd = process_file(proc)
            code = rt.exec(cid, path, bool(req.get("detach")))
        reply = b"exit %d\n" % code
    except BerthError as exc:
        from berth.engine.monitor import _exec_exit_code

        code = _exec_exit_code(exc.message)
        reply = b"error %d %s\n" % (126 if code == 125 else code, exc.message.encode())
    except Exception as exc:  # reported to the CLI, which exits 126
        reply = b"error 126 exec: %s\n" % str(exc).encode()
    finally:
        if pfd >= 0:
            os.close(pfd)
    try:
        conn.sendall(reply)
    except OSError:
        pass
    # the CLI reads to the end, and a reader of its stdout to the pipe's end:
    # closed now, not at our exit, which frees the address space first (~1 ms)
    conn.close()
    for fd in (0, 1, 2):
        try:
            os.close(fd)
        except OSError:
            pass
    return 0


def _open_database(database: str):
    """A read-only connection, its schema read: no WAL made, checkpointed
    or removed at close (it may be the only connection), nothing written."""
    import sqlite3

    path = database.replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30.0,
                           isolation_level=None)
    try:
        conn.execute("SELECT 1 FROM containers LIMIT 0")
    except BaseException:
        conn.close()
        raise
    return conn


def _load(rt, cid: str, bundle: str) -> tuple:
    """(the runtime's state of the container or None, its config or None):
    berth's runtime keeps the config in its state, which its exec loads
    anyway; another runtime's exec needs the bundle's config.json."""
    from berth import jsonio

    if rt.name == "berth":
        from berth.runtime import state as st

        state = st.ContainerState.load(rt.paths, cid)
        return state, state.config
    config = jsonio.load_file(f"{bundle}/config.json")
    return None, config if isinstance(config, dict) else None


def _resolve(db, ref: str) -> tuple[str, str] | None:
    """(id, status) of the container `ref` names in the database, in
    Docker's order (store.resolve): full id, name, unique id prefix."""
    rows = db.execute(
        "SELECT id, status, id = ?1 AS by_id, name = ?2 AS by_name FROM containers"
        " WHERE id = ?1 OR name = ?2 OR (?3 AND id >= ?1 AND id < ?1 || 'g')"
        " ORDER BY by_id DESC, by_name DESC LIMIT 2",
        (ref, ref.removeprefix("/"), _hex(ref))).fetchall()
    row = rows[0] if rows and (rows[0][2] or rows[0][3] or len(rows) == 1) else None
    return None if row is None else (row[0], row[1])


def _build(config: dict, bundle: str, req: dict) -> dict:
    return build_process(config, f"{bundle}/rootfs", req["args"], req.get("env") or [],
                         req.get("workdir") or "", req.get("user") or "",
                         bool(req.get("privileged")))
