"""kill -9 of the `berth` CLI in the middle of `run -d`, `start`, `stop` and
`rm`, at points spread over the whole command (fractions of the time one
uninterrupted command takes here): the container is left in a state that
matches what runs, the next command sees that truth and finishes the job,
and nothing is leaked (no monitor, mount, cgroup or process after `rm`; the
leak check after each test enforces the rest)."""

import os
import signal
import subprocess
import time

from tests.integration.engine.test_monitor import _monitors, _mounted

FRACTIONS = (0.05, 0.2, 0.35, 0.5, 0.65, 0.8, 0.95)


def _until(fn, tries: int = 300, pause: float = 0.05):
    for _ in range(tries):
        v = fn()
        if v:
            return v
        time.sleep(pause)
    return fn()


def _cgroup_procs(cid: str) -> list[int] | None:
    """Processes in the container's cgroup (None: no cgroup)."""
    for d in (f"/sys/fs/cgroup/pids/berth/{cid}", f"/sys/fs/cgroup/berth/{cid}"):
        try:
            with open(os.path.join(d, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except FileNotFoundError:
            continue
    return None


def _observe(b, name: str) -> tuple[str, str, list[int]]:
    out = b.out("ps", "-a", "--no-trunc", "--filter", f"name=^{name}$", "--format",
                "{{.ID}} {{.State}}").split()
    if not out:
        return "", "gone", []
    cid, state = out
    return cid, state, _cgroup_procs(cid) or []


def _truth(b, name: str) -> str:
    """The container's status as `ps -a` prints it, checked against the
    kernel: running means its pid lives in its cgroup under a monitor;
    created or exited means no process of it is left. A monitor that the
    killed CLI had started may still be starting the container (the record
    says created while its process exists): that must end in running, so
    the check is repeated until the record and the kernel agree."""
    for _ in range(300):
        cid, state, procs = _observe(b, name)
        if state == "gone":
            return state
        if state == "running":
            pid = int(b.out("inspect", "-f", "{{.State.Pid}}", cid))
            if pid > 0 and pid in procs and _monitors(b.root):
                return state
        elif state in ("created", "exited"):
            if not procs and b.out("inspect", "-f", "{{.State.Pid}}", cid) == "0\n":
                return state
        else:
            raise AssertionError(f"{name} left {state!r}")
        time.sleep(0.05)
    raise AssertionError(f"{name}: the record ({state}) never matched its processes {procs} "
                         f"(monitors {_monitors(b.root)})")


def _full_time(b, *args: str) -> float:
    t = time.monotonic()
    b(*args, check=True)
    return time.monotonic() - t


def _kill_at(b, fraction: float, full: float, *args: str) -> None:
    proc = b.popen(*args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(full * fraction)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def _all_gone(b) -> None:
    assert b.out("ps", "-aq") == ""
    assert _until(lambda: not _monitors(b.root)), "a monitor outlived rm"
    assert not _mounted(b.root)
    containers = os.path.join(b.root, "containers")
    assert not os.path.isdir(containers) or not os.listdir(containers)


def test_kill_9_during_run_d(berth):
    full = _full_time(berth, "run", "-d", "--name", "victim", "busybox", "sleep", "100")
    berth.out("rm", "-f", "victim")
    seen = set()
    for fraction in FRACTIONS:
        _kill_at(berth, fraction, full, "run", "-d", "--name", "victim", "busybox", "sleep", "100")
        state = _truth(berth, "victim")
        seen.add(state)
        if state == "created":
            # the next command finishes what the killed one began
            assert berth.out("start", "victim") == "victim\n"
            assert _truth(berth, "victim") == "running"
        if state != "gone":
            assert berth.out("rm", "-f", "victim") == "victim\n"
        _all_gone(berth)
    assert "running" in seen  # the late kills found the container started


def test_kill_9_during_start(berth):
    berth.out("create", "--name", "starter", "busybox", "sleep", "100")
    full = _full_time(berth, "start", "starter")
    berth.out("rm", "-f", "starter")
    for fraction in FRACTIONS:
        berth.out("create", "--name", "starter", "busybox", "sleep", "100")
        _kill_at(berth, fraction, full, "start", "starter")
        state = _truth(berth, "starter")
        assert state in ("created", "running"), state
        # start again: starts it, or finds it running (exit 0 both, as Docker)
        assert berth.out("start", "starter") == "starter\n"
        assert _truth(berth, "starter") == "running"
        assert berth.out("stop", "-t", "0", "starter") == "starter\n"
        assert _truth(berth, "starter") == "exited"
        assert berth.out("rm", "starter") == "starter\n"
        _all_gone(berth)


def test_kill_9_during_stop(berth):
    script = "trap 'exit 0' TERM; while true; do sleep 0.05; done"
    berth.run("-d", "--name", "stopper", "busybox", "sh", "-c", script, check=True)
    full = _full_time(berth, "stop", "stopper")
    berth.out("rm", "stopper")
    for fraction in FRACTIONS:
        berth.run("-d", "--name", "stopper", "busybox", "sh", "-c", script, check=True)
        _kill_at(berth, fraction, full, "stop", "stopper")
        state = _truth(berth, "stopper")
        assert state in ("running", "exited"), state
        if state == "exited":
            assert berth.out("inspect", "-f", "{{.State.ExitCode}}", "stopper") == "0\n"
        assert berth.out("stop", "stopper") == "stopper\n"
        assert _truth(berth, "stopper") == "exited"
        assert berth.out("rm", "stopper") == "stopper\n"
        _all_gone(berth)


def test_kill_9_during_rm(berth):
    berth.run("-d", "--name", "remover", "busybox", "sleep", "100", check=True)
    berth.out("stop", "-t", "0", "remover")
    full = _full_time(berth, "rm", "remover")
    for fraction in FRACTIONS:
        berth.run("-d", "--name", "remover", "-v", "/vol", "busybox", "sleep", "100", check=True)
        berth.out("stop", "-t", "0", "remover")
        _kill_at(berth, fraction, full, "rm", "-v", "remover")
        out = berth.out("ps", "-a", "--filter", "name=^remover$", "--format", "{{.State}}")
        assert out in ("", "exited\n", "removing\n"), out
        if out:
            # a second rm finishes it, whatever the first one reached
            assert berth.out("rm", "-v", "remover") == "remover\n"
        _all_gone(berth)
        # the anonymous volume goes with its container (or stays for prune),
        # never half-made: every listed volume can be removed
        for vol in berth.out("volume", "ls", "-q").split():
            berth.out("volume", "rm", vol)
