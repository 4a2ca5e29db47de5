"""The lifecycle of the embedded DNS server processes (dns.py): one per
container on a user-defined network, recorded in the database by pid and
start time (a pid alone may be reused).

`claim` runs under the network lock and records "being started" (pid 0), so
two attaches of one container never start two servers; `start` then spawns
the server outside the lock, which lets parallel container starts overlap.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from berth.errors import InternalError, UnavailableError
from berth.network.store import NetworkStore


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


def is_alive(store: NetworkStore, container_id: str) -> bool:
    """Running, or being started by another attach (pid 0)."""
    rec = store.dns_server(container_id)
    return bool(rec) and (rec[0] == 0 or starttime(rec[0]) == rec[1])


def claim(store: NetworkStore, container_id: str) -> bool:
    """Whether the caller must start the container's server (under the lock)."""
    if is_alive(store, container_id):
        return False
    store.set_dns_server(container_id, 0, "starting")
    return True


def start(store: NetworkStore, database: str, container_id: str, netns_path: str,
          watch_pid: int | None, upstreams: Sequence[str]) -> int:
    """Spawn the server for a claimed container; it detaches once bound."""
    argv = [sys.executable, "-m", "berth.network.dns", "--database", database,
            "--container", container_id, "--netns", netns_path]
    if watch_pid:
        argv += ["--watch-pid", str(watch_pid)]
    for u in upstreams:
        argv += ["--upstream", u]
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        store.set_dns_server(container_id, None)
        raise UnavailableError(f"start dns server for {container_id[:12]}: {exc}") from exc
    line = p.stdout.strip()
    if p.returncode != 0 or not line.startswith("ready "):
        store.set_dns_server(container_id, None)
        raise UnavailableError(line.removeprefix("error: ") or
                               f"start dns server for {container_id[:12]}: {p.stderr.strip()}")
    pid = int(line.split()[1])
    store.set_dns_server(container_id, pid, starttime(pid))
    return pid


def stop(store: NetworkStore, container_id: str) -> None:
    """SIGTERM the container's server and wait until it is gone."""
    rec = store.dns_server(container_id)
    if not rec:
        return
    pid, start_time = rec
    if pid and starttime(pid) == start_time:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(200):
            if starttime(pid) != start_time:
                break
            time.sleep(0.01)
        else:
            raise InternalError(f"stop dns server {pid} of {container_id[:12]}: still running")
    store.set_dns_server(container_id, None)
