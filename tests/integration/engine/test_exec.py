"""`berth exec` served by the container's monitor (berth/execclient.py): the
name hints it is found by, what it does when a hint is wrong, signals,
--detach, and the engine's own path behind it."""

import os
import signal
import sqlite3
import subprocess
import time

from berth import execclient as execd
from tests.integration.conftest import until


def hint(berth, name: str) -> str | None:
    try:
        return os.readlink(os.path.join(berth.state, execd.HINTS, name))
    except FileNotFoundError:
        return None


def test_exec_by_name_id_and_prefix(berth_rt):
    b = berth_rt
    cid = b.run("-d", "--name", "ex1", "--network", "none", "busybox", "sleep", "100",
                check=True).stdout.strip()
    assert hint(b, "ex1") == cid
    for ref in ("ex1", "/ex1", cid, cid[:12]):
        assert b.out("exec", ref, "hostname") == cid[:12] + "\n"
    p = b("exec", "-e", "A=1", "-e", "A=2", "-w", "/tmp", "ex1", "sh", "-c", "echo $A; pwd")
    assert (p.returncode, p.stdout) == (0, "2\n/tmp\n"), p.stderr
    p = b("exec", "ex1", "sh", "-c", "exit 9")
    assert p.returncode == 9
    p = b("exec", "-u", "nosuchuser", "ex1", "true")
    assert p.returncode == 125 and "nosuchuser" in p.stderr


def test_a_wrong_hint_is_not_trusted(berth):
    a = berth.run("-d", "--name", "ha", "--network", "none", "--hostname", "host-a",
                  "busybox", "sleep", "100", check=True).stdout.strip()
    berth.run("-d", "--name", "hb", "--network", "none", "--hostname", "host-b",
              "busybox", "sleep", "100", check=True)
    # hb's hint names ha's container: its monitor finds out in the database
    # and the engine's path runs the command in hb
    path = os.path.join(berth.state, execd.HINTS, "hb")
    os.unlink(path)
    os.symlink(a, path)
    assert berth.out("exec", "hb", "hostname") == "host-b\n"
    # a name nobody has, hinted at a running container
    os.symlink(a, os.path.join(berth.state, execd.HINTS, "nobody"))
    p = berth("exec", "nobody", "true")
    assert p.returncode != 0 and "No such container: nobody" in p.stderr
    # no hint at all: the engine's path
    os.unlink(path)
    assert berth.out("exec", "hb", "hostname") == "host-b\n"


def test_rename_and_remove_move_the_hints(berth):
    cid = berth.run("-d", "--name", "r1", "--network", "none", "busybox", "sleep", "100",
                    check=True).stdout.strip()
    berth.out("rename", "r1", "r2")
    assert hint(berth, "r1") is None and hint(berth, "r2") == cid
    assert berth.out("exec", "r2", "hostname") == cid[:12] + "\n"
    p = berth("exec", "r1", "true")
    assert p.returncode != 0 and "No such container: r1" in p.stderr
    berth.out("rm", "-f", "r2")
    assert hint(berth, "r2") is None


def test_paused_and_stopped(berth):
    berth.run("-d", "--name", "pz", "--network", "none", "busybox", "sleep", "100",
              check=True)
    berth.out("pause", "pz")
    p = berth("exec", "pz", "true")
    assert p.returncode == 125 and "is paused" in p.stderr
    berth.out("unpause", "pz")
    assert berth("exec", "pz", "true").returncode == 0
    berth.out("stop", "-t", "0", "pz")
    p = berth("exec", "pz", "true")
    assert p.returncode == 125 and "is not running" in p.stderr


def test_signals_reach_the_process(berth):
    berth.run("-d", "--name", "sg", "--network", "none", "busybox", "sleep", "100",
              check=True)
    cli = berth.popen("exec", "sg", "sh", "-c",
                      'trap "exit 7" TERM; touch /tmp/ready; while :; do sleep 0.05; done')
    try:
        until(lambda: berth("exec", "sg", "test", "-e", "/tmp/ready").returncode == 0)
        cli.send_signal(signal.SIGTERM)
        assert cli.wait(10) == 7
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()


def test_detach(berth):
    berth.run("-d", "--name", "dt", "--network", "none", "busybox", "sleep", "100",
              check=True)
    # the process waits for /tmp/go: the CLI returns only if it does not wait for it
    p = berth("exec", "-d", "dt", "sh", "-c",
              "while [ ! -e /tmp/go ]; do sleep 0.05; done; touch /tmp/done", timeout=20)
    assert (p.returncode, p.stdout) == (0, ""), p.stderr
    # served by the monitor: the process is left to it (its subreaper)
    waiting = [pid for pid in os.listdir("/proc") if pid.isdigit() and _cmdline(pid).endswith(
        "touch /tmp/done")]
    assert len(waiting) == 1
    assert _comm(_ppid(waiting[0])) == "berth-monitor"
    berth.out("exec", "dt", "touch", "/tmp/go")
    until(lambda: berth("exec", "dt", "test", "-e", "/tmp/done").returncode == 0)


def test_served_by_the_zygotes_spare(berth_rt):
    b = berth_rt
    b.run("-d", "--name", "sp", "--network", "none", "busybox", "sleep", "100", check=True)
    sock = os.path.join(b.state, execd.SPARE)
    assert os.path.exists(sock)
    cli = b.popen("exec", "sp", "sh", "-c", "touch /tmp/up; sleep 3017")
    try:
        until(lambda: b("exec", "sp", "test", "-e", "/tmp/up").returncode == 0)
        sleeping = [pid for pid in os.listdir("/proc") if pid.isdigit()
                    and _cmdline(pid) == "sleep 3017"]
        assert len(sleeping) == 1
        # the process's parent: the runtime's exec in the spare (berth) or runc
        parent = _ppid(sleeping[0])
        helper = parent if b.runtime == "berth" else _ppid(parent)
        assert _comm(helper) == "berth-exec"
        assert _comm(_ppid(helper)) == "berth-zygote"
        # meanwhile the zygote has forked the next spare, which serves this
        assert b.out("exec", "sp", "echo", "again") == "again\n"
        # the process is in every cgroup of the container (berth's helper
        # moves it before it execs), with the container's confinement
        out = b.out("exec", "sp", "sh", "-c", "cat /proc/1/cgroup; echo; cat /proc/self/cgroup; "
                    "grep -E '^(CapEff|CapInh|CapAmb|Seccomp|NoNewPrivs):' /proc/self/status")
        init, rest = out.split("\n\n")
        mine = [line for line in rest.splitlines() if line[:1].isdigit()]
        status = dict(line.split(":\t") for line in rest.splitlines() if not line[:1].isdigit())
        assert sorted(init.splitlines()) == sorted(mine) and "/berth/" in init
        assert status["CapInh"] == status["CapAmb"] == "0000000000000000"
        assert status["Seccomp"] == "2" and status["CapEff"] != "000001ffffffffff"
    finally:
        cli.kill()
        cli.wait()
    # the waiting spare holds no read transaction: a checkpoint can empty the WAL
    db = sqlite3.connect(os.path.join(b.root, "berth.db"))
    try:
        until(lambda: db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()[0][0] == 0)
    finally:
        db.close()
    # a request for another engine's database is not served by this spare:
    # the monitor's helper answers instead
    req = {"ref": "sp", "args": ["true"], "env": [], "workdir": "", "user": "",
           "privileged": False, "detach": False, "database": "/nonexistent/berth.db"}
    null = os.open("/dev/null", os.O_RDONLY)
    try:
        assert execd._ask(b.state, execd.SPARE, req, null) is execd._PASS
        assert execd.request(b.root, b.state, {**req, "args": ["sh", "-c", "exit 5"]},
                             null) == (5, "")
    finally:
        os.close(null)


def _spares(b) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        try:
            if pid.isdigit() and _comm(pid) == "berth-exec" and b.state in _cmdline(pid):
                out.append(pid)
        except OSError:
            pass
    return out


def test_spares_come_on_demand_and_leave_when_idle(berth):
    from berth.engine import execserve

    berth.run("-d", "--name", "od", "--network", "none", "busybox", "sleep", "100", check=True)
    assert _spares(berth) == []  # no exec yet: no spare
    assert berth.out("exec", "od", "echo", "1") == "1\n"  # the zygote forks one for it
    until(lambda: len(_spares(berth)) == 1)  # and the next, warmed up
    t0 = time.monotonic()
    until(lambda: _spares(berth) == [], timeout=execserve.SPARE_IDLE_S + 5)
    assert time.monotonic() - t0 > execserve.SPARE_IDLE_S - 1
    assert berth.out("exec", "od", "echo", "2") == "2\n"


def test_a_spare_warms_up_on_the_last_container_served_and_checks_it_at_the_request(berth):
    from berth.engine import execserve

    berth.run("-d", "--name", "wa", "--network", "none", "busybox", "sleep", "100", check=True)
    wb = berth.run("-d", "--name", "wb", "--network", "none", "busybox", "sleep", "100",
                   check=True).stdout.strip()
    assert berth.out("exec", "wb", "true") == ""
    last = os.path.join(berth.state, "monitor", execserve.LAST)
    assert os.readlink(last) == wb
    until(lambda: len(_spares(berth)) == 1)  # the next spare, warmed up on wb
    time.sleep(0.5)
    # wb's init is another process now: what the spare loaded names the old one
    old = berth.out("inspect", "-f", "{{.State.Pid}}", "wb")
    berth.out("restart", "-t", "0", "wb")
    new = berth.out("inspect", "-f", "{{.State.Pid}}", "wb")
    assert new != old
    # served (by the spare: no other CLI came), in the new init's container
    assert berth.out("exec", "wb", "readlink", "/proc/1/ns/pid") == \
        os.readlink(f"/proc/{new.strip()}/ns/pid") + "\n"
    assert berth.out("exec", "wa", "hostname") == berth.out("inspect", "-f", "{{.Config.Hostname}}", "wa")


def test_parallel_execs(berth):
    berth.run("-d", "--name", "par", "--network", "none", "busybox", "sleep", "100", check=True)
    clis = [berth.popen("exec", "par", "sh", "-c", f"echo {i}; exit {i % 7}",
                        stdout=subprocess.PIPE, text=True) for i in range(12)]
    for i, cli in enumerate(clis):
        out, _ = cli.communicate(timeout=60)
        assert (cli.returncode, out) == (i % 7, f"{i}\n")


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _ppid(pid: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split()[1] for line in f if line.startswith("PPid:"))


def _comm(pid: str) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().strip()
