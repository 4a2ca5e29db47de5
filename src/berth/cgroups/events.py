"""Waiting for a cgroup's OOM, OOM-kill, pids-limit and empty events.

How the kernel tells:

- cgroup v1 OOM: an eventfd registered on ``memory.oom_control`` through
  ``cgroup.event_control`` (Documentation/admin-guide/cgroup-v1/memory.rst
  §9); it also fires when the cgroup is removed. The OOM-kill count is the
  ``oom_kill`` line of memory.oom_control (Linux 4.13).
- cgroup v2: ``memory.events``, ``pids.events`` and ``cgroup.events`` are
  kernfs files whose changes wake poll(2) with POLLPRI; reading a file again
  re-arms it. On a hybrid host the cgroup's unified directory gives
  cgroup.events (populated) too.
- pids limit hits on v1: the ``max`` line of pids.events, which the kernel
  does not notify on v1, so it is re-read every `poll_interval` seconds.

`EventWatcher.wait` sleeps in epoll on all of these, then compares the
counters with what it saw last, so a missed wake-up only delays an event
until the next call. `fileno()` lets an event loop (the engine's monitor)
wait on the watcher together with its other descriptors.

Loaded lazily (not on the runtime's start-up path).
"""

from __future__ import annotations

import errno
import os
import select
import time

from berth.cgroups import fs
from berth.cgroups.stats import parse_flat
from berth.errors import BerthError, from_oserror


class EventWatcher:
    """Events of one cgroup (a `CgroupManager`); use as a context manager.

    `wait()` returns a list of events, each a dict with a ``type``:

    - ``{"type": "oom", "count": new, "total": seen}``: the cgroup hit its
      memory limit and the OOM killer ran (or would have, if disabled);
    - ``{"type": "oom_kill", "count": new, "total": n}``: processes killed;
    - ``{"type": "pids.max", "count": new, "total": n}``: forks refused;
    - ``{"type": "empty"}``: the last process left (v2 and hybrid hosts);
    - ``{"type": "deleted"}``: the cgroup was removed; the watcher is closed.
    """

    def __init__(self, manager: object) -> None:
        paths: dict[str, str] = manager.paths  # type: ignore[attr-defined]
        self._ep = select.epoll()
        self._files: dict[str, int] = {}  # name -> fd kept open for POLLPRI
        self._dirs: dict[str, str] = {}
        self._efd: int | None = None
        self._oom_fd: int | None = None
        self.closed = False
        self.oom_total = 0
        # seconds between re-reads of counters whose file gives no wake-up
        self.poll_interval: float | None = None
        try:
            self._setup(paths)
            self._last = self._counters()
        except BaseException:
            self.close()
            raise

    def _open(self, key: str, d: str, name: str) -> None:
        try:
            fd = os.open(f"{d}/{name}", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise from_oserror(exc, "open", f"{d}/{name}") from exc
        self._files[key] = fd
        self._dirs[key] = d
        os.read(fd, 4096)  # arm
        try:
            self._ep.register(fd, select.EPOLLPRI | select.EPOLLERR)
        except PermissionError:
            # not a kernfs file (epoll refuses regular files): re-read it
            self.poll_interval = 0.25

    def _setup(self, paths: dict[str, str]) -> None:
        if set(paths) == {""}:
            d = paths[""]
            self._open("memory", d, "memory.events")
            self._open("pids", d, "pids.events")
            self._open("cgroup", d, "cgroup.events")
            self._main = d
            return
        from berth.cgroups.v1res import controller_dirs

        dirs = controller_dirs(paths)
        self._main = next(iter(paths.values()))
        mem = dirs.get("memory")
        if mem:
            self._main = mem
            self._oom_fd = os.open(f"{mem}/memory.oom_control", os.O_RDONLY | os.O_CLOEXEC)
            self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            fs.write(mem, "cgroup.event_control", f"{self._efd} {self._oom_fd}")
            self._ep.register(self._efd, select.EPOLLIN)
            self._dirs["oom_control"] = mem
        if dirs.get("pids"):
            self._open("pids", dirs["pids"], "pids.events")
            # v1 pids.events is not poll-notified (measured on Linux 6.18):
            # re-read it now and then
            self.poll_interval = 0.25
        unified = paths.get("unified")
        if unified:
            self._open("cgroup", unified, "cgroup.events")

    def fileno(self) -> int:
        return self._ep.fileno()

    def _read(self, key: str) -> dict[str, int]:
        fd = self._files.get(key)
        if fd is None:
            return {}
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            return parse_flat(os.read(fd, 4096).decode())
        except OSError as exc:
            if exc.errno in (errno.ENODEV, errno.ENOENT):
                return {}
            raise

    def _counters(self) -> dict[str, int]:
        c: dict[str, int] = {}
        mem = self._read("memory")
        if mem:
            c["oom"] = mem.get("oom", 0)
            c["oom_kill"] = mem.get("oom_kill", 0)
        elif "oom_control" in self._dirs:
            oc = fs.read_optional(self._dirs["oom_control"], "memory.oom_control")
            c["oom"] = self.oom_total
            c["oom_kill"] = parse_flat(oc).get("oom_kill", 0) if oc else 0
        pids = self._read("pids")
        if pids:
            c["pids.max"] = pids.get("max", 0)
        cg = self._read("cgroup")
        if cg:
            c["populated"] = cg.get("populated", 0)
        return c

    def wait(self, timeout: float | None = None) -> list[dict]:
        """Events since the last call, waiting up to `timeout` seconds (None:
        until one comes) for the first."""
        if self.closed:
            return []
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            remaining = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
            if self.poll_interval is not None and not 0 <= remaining <= self.poll_interval:
                remaining = self.poll_interval
            try:
                ready = self._ep.poll(remaining)
            except InterruptedError:
                ready = []
            for fd, _ in ready:
                if fd == self._efd:
                    try:
                        n = int.from_bytes(os.read(fd, 8), "little")
                    except BlockingIOError:
                        n = 0
                    if not os.path.isdir(self._dirs["oom_control"]):
                        self.close()
                        return [{"type": "deleted"}]
                    self.oom_total += n
            if not os.path.isdir(self._main):
                self.close()
                return [{"type": "deleted"}]
            events = self._diff()
            if events or (deadline is not None and time.monotonic() >= deadline):
                return events

    def _diff(self) -> list[dict]:
        now = self._counters()
        events = []
        for key in ("oom", "oom_kill", "pids.max"):
            new = now.get(key, 0) - self._last.get(key, 0)
            if new > 0:
                events.append({"type": key, "count": new, "total": now[key]})
        if self._last.get("populated") == 1 and now.get("populated") == 0:
            events.append({"type": "empty"})
        self._last = now
        return events

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for fd in [*self._files.values(), self._efd, self._oom_fd]:
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._files.clear()
        self._efd = self._oom_fd = None
        self._ep.close()

    def __enter__(self) -> EventWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["BerthError", "EventWatcher"]
