"""The lifecycle of the embedded DNS server processes (dns.py): one per
container on a user-defined network, recorded in the database by pid and
start time (a pid alone may be reused).

`claim` runs under the network lock and records "being started" (pid 0), so
two attaches of one container never start two servers; `start` then spawns
the server outside the lock, which lets parallel container starts overlap.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from berth.errors import UnavailableError
from berth.network import daemon
from berth.network.daemon import starttime
from berth.network.store import NetworkStore


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
        pid = daemon.spawn(argv, f"start dns server for {container_id[:12]}")
    except UnavailableError:
        store.set_dns_server(container_id, None)
        raise
    store.set_dns_server(container_id, pid, starttime(pid))
    return pid


def stop(store: NetworkStore, container_id: str) -> None:
    """SIGTERM the container's server and wait until it is gone."""
    rec = store.dns_server(container_id)
    if not rec:
        return
    pid, start_time = rec
    daemon.stop(pid, start_time, f"stop dns server {pid} of {container_id[:12]}")
    store.set_dns_server(container_id, None)
