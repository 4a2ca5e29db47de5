"""Keep the kernel's cgroup-move lock warm while a container starts.

Every write to a cgroup.procs file takes the global cgroup_threadgroup_rwsem
for writing, and (unless the hierarchy is mounted with favordynmods) the
first writer after a quiet spell waits in rcu_sync_enter for a full RCU
grace period: 3-26 ms on these 2-CPU machines, the largest single wait of a
container start (runc pays it in the middle of its own). A writer that comes
while that grace period runs waits only for its end, and the lock stays
"warm" (no wait) until a grace period after the last writer left. That wait
also holds the global cgroup_mutex, so a cgroup mkdir behind it waits too.

`start()` runs, in a thread, no-op moves of this process into its own
cgroup: the first as early as the launcher can (before berth's imports), so
the grace period passes while Python imports and reads the config, then one
every 2 ms so the lock is still warm when the container's first process is
moved; `stop()` ends them once that move is done (at the latest after 0.5 s).
Readers (fork, exit) are not held up meanwhile. Best effort: any failure
ends the thread quietly. Root only; imports nothing beyond posix (not even
os: a plain `berth exec` starts this and never imports os).
"""

import posix

_running = False
_stop = False


def _target() -> str:
    """cgroup.procs of this process's own cgroup in one hierarchy."""
    with open("/proc/self/cgroup", "rb") as f:
        lines = f.read().splitlines()
    for line in lines:
        hid, _, rest = line.partition(b":")
        ctrls, _, path = rest.partition(b":")
        if hid == b"0" and not ctrls:
            base = "/sys/fs/cgroup/unified" if _is_dir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
        elif ctrls and not ctrls.startswith(b"name="):
            base = "/sys/fs/cgroup/" + ctrls.decode()
        else:
            continue
        return f"{base}{path.decode().rstrip('/')}/cgroup.procs"
    return ""


def _is_dir(path: str) -> bool:
    try:
        return posix.stat(path).st_mode & 0o170000 == 0o040000
    except OSError:
        return False


def start() -> None:
    global _running, _stop
    if _running or posix.geteuid() != 0:
        return
    import _thread

    _running, _stop = True, False
    try:
        # the thread finds its cgroup itself: off the caller's path
        _thread.start_new_thread(_loop, ())
    except RuntimeError:
        _running = False


def stop() -> None:
    global _stop
    _stop = True


def _loop() -> None:
    global _running
    import time

    try:
        target = _target()
        if not target:
            raise OSError("no cgroup")
        fd = posix.open(target, posix.O_WRONLY | posix.O_CLOEXEC)
        try:
            deadline = time.monotonic() + 0.5
            while True:
                posix.write(fd, b"0")
                if _stop or time.monotonic() > deadline:
                    break
                time.sleep(0.002)
        finally:
            posix.close(fd)
    except BaseException:  # best effort; a thread must not print a traceback
        pass
    _running = False
