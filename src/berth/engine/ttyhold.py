"""`exec -d -t`: a detached process with a terminal nobody reads.

Docker allows it: the process gets a pty and runs on after the command
returns; dockerd keeps the pty's master (and drains it) for the process's
lifetime. A pty whose master is closed hangs up its slave: the process would
get SIGHUP and EIO on its terminal. berth has no daemon, so the master goes
to a holder: a small process of its own (this file run as a script, named
`berth-tty-hold`, the container's id in its command line; ~3 MB of PSS)
that reads and discards what the process writes (so a chatty process never
blocks on a full pty buffer) and exits when the read fails with EIO, which
the kernel gives once every fd of the slave is closed: when the process and
whatever inherited its terminal have exited, or were killed with the
container (`stop`, `kill`, `rm -f`).

Both runtimes take the same route, runc's `exec --detach --console-socket`:
the runtime sends the master over a unix socket in a private (0700)
temporary directory before it returns.
"""

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# how long the runtime may take to connect once it has returned: it sends the
# master before it returns, so the connection is queued already
ACCEPT_TIMEOUT_S = 5.0


def exec_detached_tty(cid: str, run: "Callable[[str], None]") -> int:
    """`run(console_socket)` starts the process detached, its pty's master
    sent to `console_socket`; the master then goes to a new holder process.
    Returns the holder's pid."""
    import _socket
    import select

    from berth.errors import InternalError
    from berth.runtime.console import recv_fd

    # a private (0700) directory with a short path, for sun_path; made with os
    # alone (tempfile and shutil are ~10 ms of imports)
    d = os.path.join(os.environ.get("TMPDIR") or "/tmp", f"berth-tty-{os.urandom(8).hex()}")
    os.mkdir(d, 0o700)
    sock = f"{d}/console.sock"
    listener = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
    try:
        listener.bind(sock)
        listener.listen(1)
        run(sock)
        if not select.select([listener], [], [], ACCEPT_TIMEOUT_S)[0]:
            raise InternalError(f"exec in {cid}: the runtime sent no terminal")
        conn = _socket.socket(fileno=listener._accept()[0])  # _socket has no accept()
        try:
            master, _ = recv_fd(conn)
        finally:
            conn.close()
        os.set_inheritable(master, False)  # SCM_RIGHTS gave it without close-on-exec
        try:
            return spawn_holder(master, cid)
        finally:
            os.close(master)
    finally:
        listener.close()
        try:
            os.unlink(sock)
        except FileNotFoundError:
            pass
        os.rmdir(d)


def spawn_holder(master: int, cid: str) -> int:
    """Start the holder of `master` in a session of its own (a signal to this
    command's process group or terminal does not reach it), with nothing of
    this process but the master: stdin the master, stdout and stderr
    /dev/null (every other fd here is close-on-exec). It is our child: a
    long-lived caller reaps it (the CLI exits, and init adopts it)."""
    import sys

    null = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    try:
        # this file run as a script: no site, no berth import, nothing compiled
        # but this module
        return os.posix_spawn(
            sys.executable, [sys.executable, "-I", "-S", os.path.abspath(__file__), cid],
            {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            file_actions=[(os.POSIX_SPAWN_DUP2, master, 0), (os.POSIX_SPAWN_DUP2, null, 1),
                          (os.POSIX_SPAWN_DUP2, null, 2)],
            setsid=True)
    finally:
        os.close(null)


def hold() -> None:
    """The holder's loop: stdin is the master; read until EIO (every fd of
    the slave closed) or end of file."""
    os.chdir("/")
    # whatever the command inherited and left open (a caller's pipe): not ours to hold
    os.closerange(3, 1 << 20)
    try:
        with open("/proc/self/comm", "w") as f:
            f.write("berth-tty-hold")
    except OSError:
        pass
    while True:
        try:
            if not os.read(0, 65536):
                return
        except InterruptedError:
            continue
        except OSError:
            return


if __name__ == "__main__":
    hold()
