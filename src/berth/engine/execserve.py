"""The serving side of `berth exec` (see berth/execclient.py, which the CLI
imports alone, for the ways and the protocol): the helper a monitor forks
for an exec (`serve`) and the zygote's spare exec helper (`spare`).
Imported by the monitor zygote, never by the CLI."""

import marshal
import posix

from berth.engine.execd import _hex, build_process, link, process_file

SPARE_IDLE_S = 5.0  # a spare that gets no request for this long leaves...
SPARE_IDLE_EXIT = 75  # ...with this status (the zygote forks the next on demand)
LAST = "exec.last"  # beside the spare's socket: the container the last spare served


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
    # a CLI already waiting is served at once, without the warm-up
    listener.setblocking(False)
    try:
        cfd, _ = listener._accept()
    except OSError:
        cfd = -1
    last = f"{listener.getsockname().rpartition('/')[0]}/{LAST}"
    warmed = None
    if cfd < 0 and db is not None:
        warmed = _warm(db, database, last)
    try:
        posix.setpriority(posix.PRIO_PROCESS, 0, 0)
    except OSError:
        pass
    listener.settimeout(SPARE_IDLE_S)
    while cfd < 0:
        try:
            cfd, _ = listener._accept()
        except TimeoutError:
            return SPARE_IDLE_EXIT
        except InterruptedError:
            continue
    import _socket

    listener.close()
    try:
        posix.write(notify, b"x\n")
    except OSError:
        pass
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0, cfd)
    try:
        return serve_spare(conn, db, database, warmed, last)
    finally:
        # answered (the CLI may be gone): the zygote forks the next spare now
        try:
            posix.write(notify, b"d%d\n" % posix.getpid())
        except OSError:
            pass


def _warm(db, database: str, last: str) -> tuple | None:
    """An exec's steps up to the container's namespaces, done on a running
    container of the engine (the last one a spare served, if it still runs,
    else any) without running anything: the pages they touch are copied
    now, before the request, and the database's statement is prepared
    (runtime.exec.warm). What was loaded for it, (id, runtime, its state,
    config), for `serve_spare` to use if the request names it; None if
    nothing was. Best effort."""
    try:
        try:
            hint = posix.readlink(last)
        except OSError:
            hint = ""
        # read to the end: no statement, so no read transaction, may stay
        # open while we wait (no checkpoint could reset the WAL past it)
        rows = db.execute("SELECT id FROM containers WHERE status = 'running'"
                          " ORDER BY id = ? DESC LIMIT 1", (hint,)).fetchall()
        if not rows:
            return None
        row = rows[0]
        import os

        cid = row[0]
        _resolve(db, cid)
        bundle = f"{os.path.dirname(database)}/containers/{cid}"
        rt, state, config = _runtime_and_config(cid, bundle)
        if config is None:
            return None
        warmed = (cid, rt, state, config)
        proc = _build(config, bundle, {"args": ["true"], "env": ["A=1"]})
        if rt.name == "berth":
            from berth.runtime.exec import warm

            warm(state, proc)
        else:
            os.close(process_file(proc)[1])
        marshal.loads(marshal.dumps({"ref": cid, "args": ["true"], "env": [], "workdir": "",
                                     "user": "", "privileged": False, "detach": False}))
        return warmed
    except Exception:
        return None


def _runtime_and_config(cid: str, bundle: str) -> tuple:
    """(the runtime the container runs with, its state (berth's runtime) or
    None, its config or None)."""
    from berth import jsonio
    from berth.engine.runtimes import runtime_for

    cfg = jsonio.load_file(f"{bundle}/monitor.json")
    rt = runtime_for(cfg["runtime"], cfg["runtime_state"], cfg["runtime_log"])
    return (rt, *_load(rt, cid, bundle))


def serve_spare(conn, db, database: str, warmed: tuple | None = None, last: str = "") -> int:
    """The spare's exec (see `spare`); `warmed`: what `_warm` loaded, used
    if the request names that container and its init is still the one the
    state names (else loaded again). The container served is noted in
    `last` for the next spare's warm-up."""
    import os

    if not _greet(conn):
        return 1
    got = _receive(conn)
    if got is None:
        return 1
    req, fds = got
    # the CLI's --root, absolute but not normalised (execclient.absolute)
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
            if (warmed is not None and warmed[0] == cid
                    and (warmed[2] is None or warmed[2].is_alive())):
                rt, state, config = warmed[1:]
            else:
                rt, state, config = _runtime_and_config(cid, bundle)
            if config is not None:
                proc = _build(config, bundle, req)
    except Exception:  # nothing done yet: the monitor's or the engine's path answers
        proc = None
    finally:
        if db is not None:
            db.close()
    if proc is not None and last:
        link(last, cid)  # now: the exec may leave the host's mount namespace
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
