"""The small per-container helper processes of berth.network (the embedded
DNS server, dns.py; the [::1] port proxy, proxy.py): how they are spawned,
how they detach once ready, and how they are stopped.

A helper is run as ``python -m berth.network.<module> ...``; once its
sockets are bound it forks, the parent prints ``ready PID`` (or ``error:
MESSAGE`` and exits 1 before that), and the child serves in a session of
its own with stdio on /dev/null. It is recorded in the database by pid and
start time (a pid alone may be reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

from berth.errors import InternalError, UnavailableError


def starttime(pid: int) -> str:
    """The process's start time (field 22 of /proc/PID/stat): with the pid,
    names one process for good; "" when gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return ""
    if rest[0] in ("Z", "X"):
        return ""
    return rest[19]


def spawn(argv: list[str], what: str) -> int:
    """Run a helper's command until it reports ready; its pid. `what` names
    it in errors ("start dns server for 0123456789ab")."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnavailableError(f"{what}: {exc}") from exc
    line = p.stdout.strip()
    if p.returncode != 0 or not line.startswith("ready "):
        raise UnavailableError(line.removeprefix("error: ") or f"{what}: {p.stderr.strip()}")
    return int(line.split()[1])


def detach(out) -> None:
    """In the helper, once ready: the parent reports the child's pid on
    `out` and exits; the child returns in a session of its own, stdio on
    /dev/null, SIGTERM ending it at once and SIGHUP ignored."""
    pid = os.fork()
    if pid:
        out.write(f"ready {pid}\n")
        out.flush()
        os._exit(0)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for i in (0, 1, 2):
        os.dup2(null, i)
    os.close(null)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def stop(pid: int, start_time: str, what: str) -> None:
    """SIGTERM the helper (if it is still the process recorded) and wait
    until it is gone; `what` names it in the error ("stop dns server 42 of ...")."""
    if not pid or starttime(pid) != start_time:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(200):
        if starttime(pid) != start_time:
            return
        time.sleep(0.01)
    raise InternalError(f"{what}: still running")
