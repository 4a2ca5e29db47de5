"""The json-file log as the monitor writes it (Docker's format, rotated),
and the container's output streams feeding it. Import-light: the monitor
imports it (os and berth.jsonio only)."""

import os
import time

PARTIAL_MAX = 16 * 1024  # Docker's json-file splits lines longer than this


def now_rfc3339() -> str:
    t = time.time_ns()
    return (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 1_000_000_000))
            + f".{t % 1_000_000_000:09d}Z")


class JsonFileLog:
    """Docker's json-file driver: one JSON object per line,
    ``{"log":"text\\n","stream":"stdout","time":"...Z"}``, rotated to
    PATH.1 ... PATH.(max_file-1) when PATH would pass max_size bytes."""

    def __init__(self, path: str, max_size: int, max_file: int) -> None:
        self.path = path
        self.max_size = max_size
        self.max_file = max(1, max_file)
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self.size = os.fstat(self.fd).st_size

    def write(self, stream: str, data: bytes) -> None:
        from berth import jsonio

        line = (jsonio.dumps({"log": data.decode("utf-8", errors="replace"), "stream": stream,
                              "time": now_rfc3339()}) + "\n").encode()
        if self.max_size > 0 and self.size + len(line) > self.max_size and self.size > 0:
            self.rotate()
        os.write(self.fd, line)
        self.size += len(line)

    def rotate(self) -> None:
        os.close(self.fd)
        if self.max_file > 1:
            for i in range(self.max_file - 1, 1, -1):
                try:
                    os.rename(f"{self.path}.{i - 1}", f"{self.path}.{i}")
                except FileNotFoundError:
                    pass
            os.rename(self.path, f"{self.path}.1")
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        else:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self.fd = os.open(self.path, flags, 0o640)
        self.size = 0

    def close(self) -> None:
        os.close(self.fd)


class Stream:
    """One of the container's output pipes: split into lines for the log,
    copied raw to the attached CLI."""

    def __init__(self, name: str, fd: int, log: JsonFileLog, attach: int) -> None:
        self.name = name
        self.fd = fd
        self.log = log
        self.attach = attach
        self.extra: list[int] = []  # fds of `berth attach` sessions
        self.buf = b""

    def read(self) -> bool:
        """Read what is there; False at EOF."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return True
        except OSError:
            data = b""  # EIO: a pty master whose last slave closed
        if not data:
            self.flush()
            return False
        if self.attach >= 0:
            try:
                write_all(self.attach, data)
            except OSError:
                # the attached CLI is gone: keep logging, stop copying
                os.close(self.attach)
                self.attach = -1
        for fd in list(self.extra):
            try:
                write_all(fd, data)
            except OSError:
                self.extra.remove(fd)
        self.buf += data
        while True:
            i = self.buf.find(b"\n")
            if i < 0:
                break
            self.log.write(self.name, self.buf[: i + 1])
            self.buf = self.buf[i + 1:]
        while len(self.buf) >= PARTIAL_MAX:
            self.log.write(self.name, self.buf[:PARTIAL_MAX])
            self.buf = self.buf[PARTIAL_MAX:]
        return True

    def flush(self) -> None:
        if self.buf:
            self.log.write(self.name, self.buf)
            self.buf = b""


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]

