"""The monitor zygote: a lean process that has imported what a monitor needs
(the runtime library, the database module) once, and forks one monitor per
container on request. The monitors share its pages copy-on-write (objects
frozen with `gc.freeze()` so the collector does not dirty them), which puts
a monitor's proportional memory well under what a fresh interpreter costs,
and a container start skips an interpreter start and its imports.

It is not a daemon and not a shared monitor: each monitor is its own
process in its own session, parent of its container, and outlives the
zygote. The zygote exits once it has no monitor child and no request for
IDLE_S seconds, and is started again by the next `berth run`.

Protocol, on a SOCK_SEQPACKET path socket in a 0700 directory under the
engine's --state (never an abstract socket a `--network host` container
could reach, CVE-2020-15257): the CLI sends ``{"config": PATH, "fds":
[3, 4, ...]}`` with the fds (SCM_RIGHTS) to install at those numbers (and
``"network": true`` for a container on a network berth.network manages:
its modules are loaded then, not before); the zygote peeks at the request
and forks; the monitor (monitor.serve) has its start helper receive it and
answer ``{"pid": N}``. With ``"wait": true`` (spawn.begin: the CLI has not
written monitor.json yet) the start helper then waits for a ``g`` on the
connection, and leaves if it is closed instead.

Memory: a forked monitor shares the zygote's pages until either writes
them, and CPython writes to every object it touches (reference counts,
caches), so what a monitor executes decides its private memory, and so
does what the zygote executes after the fork: each page it writes serving
the next request is copied, leaving the old one to the monitors forked
before. Hence the bare fork (no at-fork handlers), a zygote that only
accepts, peeks and forks, the monitor's setup done by its short-lived start
helper (monitor.serve), and nothing loaded that --network none containers
do not use.

`berth exec`: the zygote that holds STATE/monitor/exec.sock (see _Spare)
keeps a spare exec helper forked and waiting on it (execserve.spare), its
database open; the spare takes one exec, tells the zygote on a pipe, and
the zygote forks the next. One spare per engine, not per container.

Run as ``python -I -S zygote.py SOCKET_PATH [IDLE_SECONDS [DATABASE]]``.
"""

import os
import sys
import time

IDLE_S = 1.0


def _preload() -> None:
    """Import everything a monitor and the container's init may import."""
    import select  # noqa: F401
    import sqlite3

    # the library initialised (sqlite3_initialize: its mutexes, allocator and
    # VFS) here once, not by each monitor's and exec helper's first connection
    sqlite3.connect(":memory:").close()

    from berth import db, jsonio  # noqa: F401
    from berth.cgroups import open_manager
    from berth.engine import execd, execserve, monitor, runtimes  # noqa: F401
    from berth.linux import capabilities, libc, seccomp  # noqa: F401
    from berth.runtime import cgroup, container, exec, hooks, init, process, rootfs, state, sync  # noqa: F401

    try:
        # libseccomp opened and its API level probed (it keeps it) once here,
        # not in every container start's and exec's runtime
        seccomp.libseccomp().seccomp_api_get()
    except Exception:  # libseccomp missing: each start says so itself
        pass

    try:
        open_manager("/berth/zygote-preload", "zygote-preload")
    except (OSError, ValueError, ImportError):
        pass


def _preload_network(path: str) -> None:
    """A container on a bridge network is attached by its monitor's start
    helper and released by its monitor: both forks of this process. Loaded
    at the first request for such a container, not before: every monitor
    forked from a larger zygote has more private pages (~0.15 MB each with
    these modules loaded, measured with 100 `--network none` containers).
    While this process lives, the default bridge outlives its containers
    (berth.network.attach.keep_bridges; removed by release_kept as we leave)."""
    from berth.network import attach, files, manager, netlink, nft, store  # noqa: F401

    attach.keep_bridges(path)


_FILLERS: list = []


def _fill_pools() -> None:
    """Fill the free blocks of the allocator's partly used pools (per size
    class, as sys._debugmallocstats counts them) with objects kept for the
    zygote's life. A monitor's first allocations of each size then come
    from pages nobody has touched instead of landing one by one on pages
    shared with the zygote, each of which it would copy. Best effort."""
    r, w = os.pipe()
    saved = os.dup(2)
    try:
        os.dup2(w, 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(w)
        out = b""
        while chunk := os.read(r, 65536):
            out += chunk
    except OSError:
        return
    finally:
        os.close(saved)
        os.close(r)
    for line in out.splitlines():
        # "class   size   num pools   blocks in use  avail blocks"
        parts = line.split()
        if len(parts) != 5 or not all(p.isdigit() for p in parts):
            continue
        size, avail = int(parts[1]), int(parts[4])
        n = size - 33  # a bytes object of length n takes 33 + n bytes
        if n > 0 and avail:
            _FILLERS.extend(bytes(n) for _ in range(avail))


class _Spare:
    """The spare exec helper of the zygote that holds D/exec.sock (D: the
    zygotes' directory). Holding it is holding the flock on D/exec.lock, so
    that the zygotes of an engine (the --network none one and the networked
    one) take turns without talking: a zygote that does not hold it tries
    again at each turn of its loop, and takes over when the holder has
    left (or died: the kernel releases the lock).

    The spare is made on demand: the first `berth exec` that connects wakes
    the zygote, which forks one (it serves that CLI at once, without its
    warm-up); after each exec the next spare is forked, and one that waits
    SPARE_IDLE_S (execserve) for a request leaves. An engine that runs
    containers but no exec keeps no spare (~1.8 MB)."""

    MAX_FAILURES = 3  # spares that died without taking a request, in a row

    def __init__(self, d: str, database: str) -> None:
        self.path = os.path.join(d, "exec.sock")
        self.lock_path = os.path.join(d, "exec.lock")
        self.database = database
        self.lock = -1
        self.listener = None
        self.ino = 0
        self.pid = 0
        self.failures = 0
        self.wanted = False  # a CLI came, and no spare has left idle since
        self.serving: set[int] = set()  # spares serving an exec
        self.waiting = False  # a CLI waits on the socket
        self.notify_r = self.notify_w = -1

    def take(self) -> bool:
        """Hold the lock and listen on the socket, if free."""
        import _socket
        import fcntl

        if self.lock < 0:
            try:
                self.lock = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                return False
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
        try:
            try:
                os.unlink(self.path)  # the last holder's, if it died
            except FileNotFoundError:
                pass
            sock.bind(self.path)
            os.chmod(self.path, 0o600)
            sock.listen(16)
            self.ino = os.stat(self.path).st_ino
            self.notify_r, self.notify_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            sock.close()
            fcntl.flock(self.lock, fcntl.LOCK_UN)
            return False
        self.listener = sock
        return True

    def forget(self) -> None:
        """In a monitor forked by the zygote: none of this is its own (the
        lock especially: a monitor holding it would keep it past the zygote).
        Only the fds are closed: the objects are left as they are (never
        used again, and never finalised: the monitor leaves with _exit),
        because each object written here is a page the monitor copies."""
        fds = (self.listener.fileno(), self.notify_r, self.notify_w) if self.listener else ()
        for fd in (*fds, self.lock):
            if fd >= 0:
                os.close(fd)

    def ensure(self, zygote_sock) -> None:
        """Fork a spare if one is wanted and none waits (unless spares keep
        failing, or another zygote holds the socket)."""
        if not self.database or self.pid or self.failures >= self.MAX_FAILURES:
            return
        if self.listener is None and not self.take():
            return
        if not self.wanted:
            return
        if self.serving and not self.waiting:
            # the next spare is forked when this exec is done (or another CLI
            # comes): forked now, it (and the fork) would take CPU time from
            # the exec on a 2-CPU host (~2 ms of every `berth exec` here)
            return
        from berth.linux import libc

        pid = libc.fork_bare()
        if pid == 0:
            code = 1
            try:
                zygote_sock.close()
                os.close(self.notify_r)
                os.close(self.lock)
                os.set_blocking(self.notify_w, True)
                from berth.engine import execserve

                code = execserve.spare(self.listener, self.notify_w, self.database)
            finally:
                os._exit(code)
        self.pid = pid

    def waits(self, zygote_sock) -> list:
        """What the zygote's select waits for: with no spare, a CLI on the
        exec socket too (see `wake`)."""
        if self.listener is None:
            return [zygote_sock]
        return [zygote_sock, self.notify_r] + ([] if self.pid else [self.listener])

    def wake(self, ready: list) -> None:
        self.waiting = self.listener is not None and self.listener in ready
        if self.waiting:
            self.wanted = True  # a CLI waits: ensure() forks the spare it needs

    def taken(self, children: set[int]) -> None:
        """Drain the pipe: b"x\n" from the spare that now serves an exec (a
        child like a monitor: the zygote stays until it is done), b"d<pid>\n"
        from one that has answered its CLI (execserve.spare)."""
        if self.listener is None:
            return
        try:
            got = os.read(self.notify_r, 256)
        except OSError:
            return
        for msg in got.split(b"\n"):
            if msg == b"x" and self.pid:
                children.add(self.pid)
                self.serving.add(self.pid)
                self.pid = 0
                self.failures = 0
                self.wanted = True
            elif msg[:1] == b"d" and msg[1:].isdigit():
                self.serving.discard(int(msg[1:]))

    def reaped(self, pid: int, status: int) -> None:
        self.serving.discard(pid)
        if pid != self.pid:
            return
        self.pid = 0
        from berth.engine.execserve import SPARE_IDLE_EXIT

        if os.WIFEXITED(status) and os.WEXITSTATUS(status) == SPARE_IDLE_EXIT:
            self.wanted = False  # no exec for a while: the next CLI asks again
            return
        self.failures += 1  # died waiting: not replaced forever
        if self.failures >= self.MAX_FAILURES:
            self.close()  # a socket nobody accepts on would keep CLIs waiting

    def close(self) -> None:
        if self.pid:
            import signal

            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = 0
        if self.listener is not None:
            try:
                if os.stat(self.path).st_ino == self.ino:
                    os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.listener.close()
            os.close(self.notify_r)
            os.close(self.notify_w)
            self.listener = None
        if self.lock >= 0:
            os.close(self.lock)  # the lock goes with it
            self.lock = -1


def serve(path: str, idle: float = IDLE_S, database: str = "") -> int:
    import _socket
    import gc
    import select

    _preload()
    from berth.engine import monitor
    from berth.linux import libc

    try:
        libc.set_name("berth-zygote")
    except OSError:
        pass
    d = os.path.dirname(path)
    os.makedirs(d, mode=0o700, exist_ok=True)
    os.chmod(d, 0o700)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC, 0)
    try:
        sock.bind(path)
    except OSError:
        # a socket left by a zygote that died: take it over, unless one answers
        probe = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC, 0)
        try:
            probe.connect(path)
            return 1  # another zygote is serving this path
        except ConnectionRefusedError:
            os.unlink(path)
            sock.bind(path)
        finally:
            probe.close()
    sock.listen(128)
    ino = os.stat(path).st_ino
    network_loaded = False
    children: set[int] = set()
    # the spare's socket and pipe made before the pools are filled: what the
    # zygote allocates after that lands on pages the monitors forked later
    # share, and they copy them (~45 KB more per monitor when these came
    # after the filling); the spare itself forked after the freezing (what
    # the zygote writes after a fork becomes the child's alone: ~2 MB)
    spare = _Spare(d, database)
    if database:
        spare.take()
    # the attribute lookups a monitor makes cached once here, before the
    # freezing (see monitor.warm_type_cache), those of spare.forget with them
    monitor.warm_type_cache()
    for n in ("forget", *_Spare.forget.__code__.co_names):
        if hasattr(spare, n):
            getattr(spare, n)
    gc.collect()
    _fill_pools()
    gc.freeze()
    idle_since = time.monotonic()
    while True:
        while children or spare.pid:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            spare.reaped(pid, status)
        if not children and time.monotonic() - idle_since > idle:
            spare.close()
            try:
                if os.stat(path).st_ino == ino:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            # a client that connected before the unlink gets EOF and retries
            sock.close()
            if network_loaded:
                try:
                    from berth.network.attach import release_kept

                    release_kept(path)
                except Exception as exc:
                    _note(path, f"release kept bridges: {type(exc).__name__}: {exc}")
            return 0
        spare.ensure(sock)
        ready, _, _ = select.select(spare.waits(sock), [], [], min(0.25, idle))
        spare.wake(ready)
        if spare.notify_r in ready:
            # read only when there is something: an exception each turn of
            # the loop would churn the allocator's pools that monitors forked
            # later share (and copy)
            spare.taken(children)
        if sock not in ready:
            continue
        try:
            cfd, _ = sock._accept()  # _socket has no accept(); this is socket.accept's core
            conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, cfd)
        except OSError:
            continue
        idle_since = time.monotonic()
        try:
            conn.settimeout(5)
            # a peek, without the fds: the forked monitor receives the
            # request itself (see monitor.serve). Its head only ("network"
            # comes early, see spawn._request): a 64 KB buffer, shrunk, left
            # a free stretch in the malloc heap the monitors share, and their
            # own allocations there copied its pages (~30 KB per monitor)
            msg = conn.recv(4096, _socket.MSG_PEEK)
            if not msg:
                continue  # a probe (spawn._answers) or a client that gave up
            if b'"network":true' in msg and not network_loaded:
                _preload_network(path)
                network_loaded = True
                gc.collect()
                _fill_pools()
                gc.freeze()
            # single-threaded, no lock held: a bare fork (see fork_bare)
            pid = libc.fork_bare()
            if pid == 0:
                sock.close()
                spare.forget()
                code = 1
                try:
                    code = monitor.serve(conn, lambda text: _note(path, text))
                finally:
                    os._exit(code)
            children.add(pid)
        except OSError as exc:
            _note(path, f"request: {type(exc).__name__}: {exc}")
        finally:
            conn.close()


def _note(path: str, text: str) -> None:
    fd = os.open(path + ".log", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, f"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())} {text}\n".encode())
    finally:
        os.close(fd)


if __name__ == "__main__":
    # it outlives the command that started it: no fd that command left
    # inheritable (a `flock` lock, a pipe a reader waits on for EOF) may stay
    # open here, nor pass to the monitors forked from it
    os.closerange(3, 1 << 20)
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))))
    try:
        sys.exit(serve(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else IDLE_S,
                       sys.argv[3] if len(sys.argv) > 3 else ""))
    except Exception as exc:
        import traceback

        _note(sys.argv[1], f"zygote failed: {exc}\n{traceback.format_exc()}")
        raise
