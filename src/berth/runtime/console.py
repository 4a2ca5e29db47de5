"""The container's console: a pty made inside the container's own devpts,
its master sent over --console-socket (SCM_RIGHTS, the message carrying the
pty's name, as runc's `recvtty` expects), its slave the process's stdio and
controlling terminal, and bound over /dev/console."""

import _socket
import fcntl
import os
import stat
import struct

from berth.errors import PermissionDeniedError
from berth.linux import libc


def send_fd(sock_fd: int, fd: int, name: str) -> None:
    sock = _socket.socket(fileno=os.dup(sock_fd))
    try:
        sock.sendmsg([name.encode()], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, struct.pack("i", fd))])
    finally:
        sock.close()


def recv_fd(sock: "_socket.socket") -> tuple[int, str]:
    msg, anc, _flags, _addr = sock.recvmsg(4096, _socket.CMSG_SPACE(4))
    for level, kind, data in anc:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            return struct.unpack("i", data[:4])[0], msg.decode(errors="replace")
    raise OSError(0, "receive console fd: no file descriptor in message")


def setup_console(console_fd: int, size: dict | None, bind_console: bool = True) -> None:
    """A new pty in the container's devpts: its master sent over `console_fd`,
    its slave our stdio and controlling terminal and (for the init, not for
    exec) bound over /dev/console."""
    master = os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if libc.fstatfs_type(master) != libc.DEVPTS_SUPER_MAGIC:
            raise PermissionDeniedError("console: /dev/ptmx is not on a devpts: refused")
        fcntl.ioctl(master, libc.TIOCSPTLCK, struct.pack("i", 0))
        n = struct.unpack("I", fcntl.ioctl(master, libc.TIOCGPTN, struct.pack("I", 0)))[0]
        # the slave through the master (TIOCGPTPEER), never a path an image could plant
        slave = fcntl.ioctl(master, libc.TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        if size:
            fcntl.ioctl(slave, libc.TIOCSWINSZ, struct.pack("HHHH", size.get("height", 0), size.get("width", 0), 0, 0))
        name = f"/dev/pts/{n}"
        if bind_console:
            _bind_console(slave)
        if console_fd >= 0:
            send_fd(console_fd, master, name)
            os.close(console_fd)
        os.setsid()
        fcntl.ioctl(slave, libc.TIOCSCTTY, 0)
        for i in (0, 1, 2):
            os.dup2(slave, i, inheritable=True)
        os.close(slave)
    finally:
        os.close(master)


def _bind_console(slave: int) -> None:
    # /dev/console: a regular file we create, never an image's symlink (CVE-2025-52565)
    try:
        st = os.lstat("/dev/console")
        if not stat.S_ISREG(st.st_mode) and not stat.S_ISCHR(st.st_mode):
            os.unlink("/dev/console")
    except FileNotFoundError:
        pass
    if not os.path.lexists("/dev/console"):
        os.close(os.open("/dev/console", os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
    libc.mount(f"/proc/self/fd/{slave}", "/dev/console", None, libc.MS_BIND, None)


def window_size(fd: int = 0) -> dict | None:
    """The size of the terminal on `fd` as runtime-spec's consoleSize, None
    if it is not a terminal or has no size. A relayed container's pty is
    made at this size (setup_console), so its process never sees a 0x0
    terminal while the relay starts."""
    try:
        rows, cols = struct.unpack("HHHH", fcntl.ioctl(fd, 0x5413, b"\0" * 8))[:2]  # TIOCGWINSZ
    except OSError:
        return None
    return {"height": rows, "width": cols} if rows and cols else None


def _copy_window_size(master: int) -> None:
    """Our terminal's size (fd 0) onto the container's pty."""
    try:
        fcntl.ioctl(master, libc.TIOCSWINSZ, fcntl.ioctl(0, 0x5413, b"\0" * 8))  # TIOCGWINSZ
    except OSError:
        pass


def relay_terminal(master: int, pid: int) -> None:
    """`run` with a terminal and no --console-socket: copy our stdin to the
    pty and the pty to our stdout until the container's side closes. Our
    terminal, if stdin is one, is in raw mode meanwhile."""
    import select
    import termios
    import tty

    saved = None
    if os.isatty(0):
        saved = termios.tcgetattr(0)
        tty.setraw(0)
        _copy_window_size(master)
        import _signal

        # our terminal was resized: so is the container's (the kernel then
        # sends SIGWINCH to the pty's foreground process group), as runc does;
        # the signal is not forwarded to the process itself
        _signal.signal(28, lambda _signum, _frame: _copy_window_size(master))  # SIGWINCH
    fds = [master, 0]
    try:
        while True:
            try:
                ready, _, _ = select.select(fds, [], [], 0.5)
            except InterruptedError:
                continue
            if master in ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the last slave fd closed
                    data = b""
                if not data:
                    break
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    os.write(master, data)
                else:
                    fds.remove(0)
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        os.close(master)
