"""Processes the engine watches but did not fork (container inits, monitors):
identity by pid and start time, waiting through pidfds."""

import os
import time


def start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])


def alive(pid: int, start: int) -> bool:
    return pid > 0 and start_time(pid) == start


def wait_pid(pid: int, timeout: float | None) -> bool:
    """Wait until process `pid` (not our child) is gone; False on timeout."""
    import select

    if pid <= 0:
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if start_time(pid) is None:
                return True
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if left <= 0:
                return False
            select.select([fd], [], [], left)
    finally:
        os.close(fd)


def wait_gone(pid: int, start: int, timeout: float) -> bool:
    if not alive(pid, start):
        return True
    return wait_pid(pid, timeout)
