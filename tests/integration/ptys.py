"""Driving a command from a terminal in tests: the command runs as the
session leader of a new pty (its controlling terminal) of a given size,
and a script plays the user on the master side."""

import fcntl
import os
import select
import struct
import termios
import time
from collections.abc import Callable

Script = Callable[[bytes, int], bool]


def pty_session(argv: list[str], rows: int, cols: int, script: Script,
                env: dict | None = None, timeout: float = 20) -> tuple[int, bytes]:
    """Run argv on a new pty of rows x cols; `script(out, fd)` is called
    with the output so far and the master until it returns True. Returns
    (exit code, all output); the command is killed at `timeout`."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:
        try:
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
            os.execvpe(argv[0], argv, env if env is not None else os.environ)
        finally:
            os._exit(127)  # never back into pytest in the forked child
    out = b""
    done = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([fd], [], [], 0.1)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the command and its children closed the pty
                break
            if not chunk:
                break
            out += chunk
        if not done:
            done = script(out, fd)
    else:
        os.kill(pid, 9)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def resize(fd: int, rows: int, cols: int) -> None:
    """Resize the terminal (the kernel sends SIGWINCH to its foreground group)."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def resize_when(marker: bytes, rows: int, cols: int, then: bytes) -> Script:
    """A script: once `marker` is printed, resize the terminal to rows x
    cols, and a moment later type `then`."""
    state: dict = {}

    def script(out: bytes, fd: int) -> bool:
        if marker in out and "at" not in state:
            resize(fd, rows, cols)
            state["at"] = time.monotonic()
        if "at" in state and time.monotonic() - state["at"] > 0.3:
            os.write(fd, then)
            return True
        return False

    return script
