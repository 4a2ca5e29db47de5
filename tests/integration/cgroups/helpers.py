"""Plain processes placed in a cgroup for effect tests (no runtime involved)."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time

# a child waits for "go" on stdin, so it is in its cgroup before it works
# (on v1, memory charged before a move stays with the old cgroup)
GATE = "import os, sys\nsys.stdin.readline()\n"


class Child:
    def __init__(self, code: str, mgr: object = None) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", GATE + code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if mgr is not None:
            mgr.add_process(self.p.pid)  # type: ignore[attr-defined]

    @property
    def pid(self) -> int:
        return self.p.pid

    def go(self) -> None:
        assert self.p.stdin is not None
        self.p.stdin.write("go\n")
        self.p.stdin.flush()

    def line(self, timeout: float = 10.0) -> str:
        assert self.p.stdout is not None
        r, _, _ = select.select([self.p.stdout], [], [], timeout)
        assert r, "child said nothing"
        return self.p.stdout.readline().strip()

    def wait(self, timeout: float = 10.0) -> int:
        return self.p.wait(timeout)

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait(10)
        for f in (self.p.stdin, self.p.stdout):
            if f is not None:
                f.close()


def cpu_ns(mgr: object) -> int:
    return mgr.stats()["cpu"]["usage"]["total"]  # type: ignore[attr-defined]


def cpu_used(mgr: object, seconds: float) -> float:
    """CPUs used by the cgroup over `seconds` of wall time."""
    t0, c0 = time.monotonic(), cpu_ns(mgr)
    time.sleep(seconds)
    t1, c1 = time.monotonic(), cpu_ns(mgr)
    return (c1 - c0) / 1e9 / (t1 - t0)


def proc_cgroups(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f.read().splitlines():
            _, key, path = line.split(":", 2)
            out[key] = path
    return out


def wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def ensure_gone(pid: int) -> None:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
