"""The runtime's log, in runc's two formats.

text: ``time="2026-01-02T03:04:05Z" level=error msg="container does not exist"``
json: ``{"level":"error","msg":"...","time":"..."}`` one object per line, as
containerd reads runc's log file.

Not the `logging` module: it costs more to import than a container start
spends in all of berth's own code (see bench/ and the note on issue 2).
"""

import os
import sys
import time

from berth import jsonio

LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "fatal": 50}


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class Log:
    __slots__ = ("fd", "fmt", "level")

    def __init__(self, path: str | None = None, fmt: str = "text", debug: bool = False) -> None:
        self.fmt = fmt
        self.level = LEVELS["debug"] if debug else LEVELS["info"]
        if path:
            self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        else:
            self.fd = sys.stderr.fileno()

    def write(self, level: str, msg: str) -> None:
        if LEVELS[level] < self.level:
            return
        if self.fmt == "json":
            line = jsonio.dumps({"level": level, "msg": msg, "time": _now()})
        else:
            line = f'time="{_now()[:19]}Z" level={level} msg={jsonio.dumps(msg)}'
        try:
            os.write(self.fd, (line + "\n").encode())
        except OSError:
            pass

    def debug(self, msg: str) -> None:
        self.write("debug", msg)

    def info(self, msg: str) -> None:
        self.write("info", msg)

    def warning(self, msg: str) -> None:
        self.write("warning", msg)

    def error(self, msg: str) -> None:
        self.write("error", msg)
