"""Run a function in a forked child and bring back its result through a pipe.

The child always ends with os._exit, whatever happens; its result (or the
exception it raised, as text) comes back as JSON, and the parent reaps it and
returns the wait status too, so a test can check a death by signal."""

import json
import os
import resource
import traceback
from collections.abc import Callable


class ChildResult:
    def __init__(self, value: object, error: str | None, status: int) -> None:
        self.value = value
        self.error = error
        self.status = status

    @property
    def signal(self) -> int | None:
        return os.WTERMSIG(self.status) if os.WIFSIGNALED(self.status) else None

    @property
    def exit_code(self) -> int | None:
        return os.WEXITSTATUS(self.status) if os.WIFEXITED(self.status) else None

    def get(self) -> object:
        """The child's return value; fails loudly if it raised or died."""
        if self.error is not None:
            raise AssertionError(f"child failed:\n{self.error}")
        if self.signal is not None or self.exit_code != 0:
            raise AssertionError(f"child ended with status {self.status:#x} and no result")
        return self.value


def in_child(fn: Callable[[], object]) -> ChildResult:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(r)
            # tests kill children with SIGSYS on purpose: no core files
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            try:
                out = {"value": fn()}
            except BaseException:
                out = {"error": traceback.format_exc()}
                code = 1
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(code)
    os.close(w)
    chunks = []
    with os.fdopen(r, "rb") as f:
        while chunk := f.read(65536):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    data = json.loads(b"".join(chunks) or b"{}")
    return ChildResult(data.get("value"), data.get("error"), status)


def proc_status() -> dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
