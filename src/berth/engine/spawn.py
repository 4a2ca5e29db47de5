"""Starting a container's monitor: forked by the monitor zygote of this
engine's --state (started on demand, see zygote.py), or, failing that, as a
fresh lean interpreter. Either way the monitor is in a session of its own
and gets the status pipe as fd 3 and the attached CLI's stdio as 4, 5, 6.

`Engine.start` asks the zygote before it writes the bundle (`begin`): the
monitor and its start helper are forked meanwhile and wait for `go()`
(monitor.json written) or `cancel()`; `spawn_monitor` does both at once."""

from __future__ import annotations

import os
import sys
import time

from berth import jsonio
from berth.paths import Paths

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from berth.engine.containers import Attach

HERE = os.path.dirname(os.path.abspath(__file__))
MONITOR = os.path.join(HERE, "monitor.py")
ZYGOTE = os.path.join(HERE, "zygote.py")


def spawn_monitor(paths: Paths, bundle: str, attach: Attach | None,
                  networked: bool = False) -> int:
    """Start the container's monitor; returns the read end of its status
    pipe. Forked by the zygote (started if none serves this engine), or,
    failing that, started as a fresh interpreter. `networked`: the
    container joins a network berth.network manages (the zygote loads it)."""
    if attach is not None:
        cfg_path = os.path.join(bundle, "monitor.json")
        cfg = jsonio.load_file(cfg_path)
        assert isinstance(cfg, dict)
        cfg.update(attach_config(attach))
        jsonio.write_atomic(cfg_path, jsonio.dumps(cfg), 0o600, durable=False)
    return begin(paths, bundle, attach, networked).go()


def attach_config(attach: Attach) -> dict:
    """monitor.json's keys for a CLI attached to the container's output."""
    cfg: dict = {"attach": True, "stdin": attach.stdin >= 0}
    if attach.tty_size:
        cfg["tty_size"] = list(attach.tty_size)
    return cfg


class Pending:
    """A monitor being started while the caller writes the bundle: the
    zygote forks it and its start helper meanwhile, which wait for `go`
    before reading monitor.json (a container start's critical path is
    shorter by those two forks)."""

    def __init__(self, paths: Paths, bundle: str, attach: Attach | None, networked: bool,
                 sock: object, r: int) -> None:
        self.args = (paths, bundle, attach, networked)
        self.sock = sock
        self.r = r

    def go(self) -> int:
        """monitor.json is written: start; returns the read end of the
        status pipe (as spawn_monitor)."""
        paths, bundle, attach, networked = self.args
        sock, self.sock = self.sock, None
        if sock is not None:
            try:
                try:
                    reply = sock.recv(4096)  # type: ignore[attr-defined]
                    if reply:
                        sock.sendall(b"g")  # type: ignore[attr-defined]
                except OSError:
                    reply = b""
            finally:
                sock.close()  # type: ignore[attr-defined]
            if reply:
                return self.r
            os.close(self.r)  # the zygote was exiting: start another
            if os.environ.get("BERTH_MONITOR_ZYGOTE", "1") != "0":
                r = _spawn_by_zygote(paths, bundle, attach, networked)
                if r >= 0:
                    return r
        return _spawn_fresh(paths, bundle, attach)

    def cancel(self) -> None:
        """The bundle could not be made: the forked monitor exits unstarted."""
        if self.sock is not None:
            self.sock.close()  # type: ignore[attr-defined]
            self.sock = None
            os.close(self.r)


def begin(paths: Paths, bundle: str, attach: Attach | None, networked: bool = False,
          config: dict | None = None) -> Pending:
    """Have the zygote fork the container's monitor now, to be started by
    `go()` once its monitor.json is written (or `cancel()`ed). `config`:
    what monitor.json will hold, sent along so that the start helper sets
    the monitor up (its files, attach socket and pipes) meanwhile."""
    sock, r = None, -1
    if os.environ.get("BERTH_MONITOR_ZYGOTE", "1") != "0":
        sock, r = _request(paths, bundle, attach, networked, wait=True, config=config)
    return Pending(paths, bundle, attach, networked, sock, r)


def zygote_path(paths: Paths, networked: bool = False) -> str:
    """The zygote's socket, named by the code it has loaded: a zygote
    started before berth was upgraded keeps serving only the monitors
    it already forked. Containers on a network berth.network manages have
    a zygote of their own, which loads those modules: the monitors of the
    others are forked from one that never does (each would have more
    private pages, ~0.03 MiB with 100 containers)."""
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.dirname(here)
    runtime = os.path.join(top, "runtime")
    key = []
    for d, files in ((here, ("monitor.py", "zygote.py", "runtimes.py", "execd.py", "execserve.py")),
                     (top, ("execclient.py", "rcu.py")),
                     (runtime, tuple(sorted(os.listdir(runtime))))):
        for name in files:
            if name.endswith(".py"):
                st = os.stat(os.path.join(d, name))
                key.append(f"{name}:{st.st_mtime_ns}:{st.st_size}")
    import zlib

    tag = f"{zlib.crc32(';'.join(key).encode()):08x}"
    kind = "-net" if networked else ""
    return os.path.join(paths.state, "monitor", f"zygote-{tag}{kind}.sock")

def _spawn_by_zygote(paths: Paths, bundle: str, attach: Attach | None,
                     networked: bool = False) -> int:
    for _attempt in range(3):
        s, r = _request(paths, bundle, attach, networked)
        if s is None:
            return -1
        try:
            try:
                reply = s.recv(4096)
            except OSError:
                reply = b""
        finally:
            s.close()
        if reply:
            return r
        os.close(r)  # the zygote was exiting: start another
    return -1


def _request(paths: Paths, bundle: str, attach: Attach | None, networked: bool,
             wait: bool = False, config: dict | None = None) -> tuple:
    """Send the zygote a monitor's request: (the connection, on which its
    start helper answers, the read end of the status pipe), or (None, -1)
    when no zygote serves this engine and none could be started. With
    `wait`, the start helper then waits for a byte (``g``) on the
    connection before it reads monitor.json (with `config`, monitor.json's
    content, it sets the monitor up meanwhile), and leaves at end of file."""
    import _socket

    path = zygote_path(paths, networked)
    for attempt in range(3):
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
        try:
            s.connect(path)
        except OSError:
            s.close()
            if attempt == 2 or not _start_zygote(path, paths.database):
                return None, -1
            continue
        r, w = os.pipe2(os.O_CLOEXEC)
        fds, targets = [w], [3]
        if attach is not None:
            for src, target in ((attach.stdout, 4), (attach.stderr, 5), (attach.stdin, 6)):
                if src >= 0:
                    fds.append(src)
                    targets.append(target)
        req: dict = {"config": os.path.join(bundle, "monitor.json"), "fds": targets}
        if networked:
            req["network"] = True
        if wait:
            req["wait"] = True
            req["database"] = paths.database
            if config is not None:
                req["monitor"] = config
        try:
            # the fds as C ints, without `array` (its import brings collections)
            s.sendmsg([jsonio.dumps(req).encode()],
                      [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                        b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds))])
            s.settimeout(10)
        except OSError:
            pass  # recv finds out
        finally:
            os.close(w)
        return s, r
    return None, -1

def _start_zygote(path: str, database: str) -> bool:
    """Start a zygote for this engine's --state (and database: its spare
    exec helpers', see zygote.py), unless one is starting; True once its
    socket accepts."""
    import fcntl

    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    lock = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists(path) and not _answers(path):
            os.unlink(path)  # left by a zygote that died
        if not os.path.exists(path):
            null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            try:
                actions = [(os.POSIX_SPAWN_DUP2, null, i) for i in (0, 1, 2)]
                env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
                idle = os.environ.get("BERTH_ZYGOTE_IDLE", "1")
                os.posix_spawn(sys.executable,
                               [sys.executable, "-I", "-S", ZYGOTE, path, idle, database],
                               env, file_actions=actions, setsid=True)
            finally:
                os.close(null)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.path.exists(path):
                return True
            time.sleep(0.002)
        return False
    finally:
        os.close(lock)

def _spawn_fresh(paths: Paths, bundle: str, attach: Attach | None) -> int:
    import fcntl

    def high(fd: int) -> int:
        # above every target fd, so no dup2 below overwrites a later source
        return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)

    r, w0 = os.pipe2(os.O_CLOEXEC)
    null0 = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    w, null = high(w0), high(null0)
    os.close(w0)
    os.close(null0)
    sources = [w, null]
    cfg_path = os.path.join(bundle, "monitor.json")
    actions: list[tuple] = [(os.POSIX_SPAWN_DUP2, null, 0), (os.POSIX_SPAWN_DUP2, null, 1),
                            (os.POSIX_SPAWN_DUP2, null, 2), (os.POSIX_SPAWN_DUP2, w, 3)]
    if attach is not None:
        for src, target in ((attach.stdout, 4), (attach.stderr, 5), (attach.stdin, 6)):
            if src >= 0:
                fd = high(src)
                sources.append(fd)
                actions.append((os.POSIX_SPAWN_DUP2, fd, target))
    env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    try:
        os.posix_spawn(sys.executable, [sys.executable, "-I", "-S", MONITOR, cfg_path], env,
                       file_actions=actions, setsid=True)
    except OSError:
        os.close(r)
        raise
    finally:
        for fd in sources:
            os.close(fd)
    return r


def _answers(path: str) -> bool:
    import _socket

    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
    try:
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
