"""create/start/stop/restart/kill/rm/pause/unpause/rename/wait/ps/inspect/
logs/top/stats: what the CLI prints, as Docker prints it."""

import json
import re
import time


def _wait_for(fn, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def test_detached_lifecycle(berth_rt):
    b = berth_rt
    cid = b.run("-d", "--name", "web", "busybox", "sh", "-c",
                "trap 'echo bye; exit 0' TERM; echo up; while true; do sleep 0.1; done",
                check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{64}", cid)
    ps = b.out("ps").splitlines()
    assert re.split(r"\s{2,}", ps[0]) == ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED",
                                          "STATUS", "PORTS", "NAMES"]
    assert ps[1].startswith(cid[:12] + "   busybox   ")
    assert re.search(r"Up (Less than a second|\d+ seconds?)\s+web$", ps[1])
    assert _wait_for(lambda: b.out("logs", "web") == "up\n")
    state = json.loads(b.out("inspect", "web"))[0]
    assert state["Id"] == cid and state["Name"] == "/web"
    assert state["State"]["Status"] == "running" and state["State"]["Pid"] > 0
    assert state["Config"]["Cmd"][0] == "sh" and state["HostConfig"]["Runtime"] == b.runtime
    assert b.out("stop", "web") == "web\n"
    assert b.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", cid) == "exited 0\n"
    assert b.out("logs", cid) == "up\nbye\n"
    assert b.out("ps", "-q") == ""
    assert b.out("ps", "-aq") == cid[:12] + "\n"
    assert re.search(r"Exited \(0\) .* ago\s+web$", b.out("ps", "-a").splitlines()[1])
    assert "stopped by berth stop" in b.out("why", "web")
    # start again: the same container, its log appended to
    assert b.out("start", cid[:8]) == cid[:8] + "\n"
    assert _wait_for(lambda: b.out("logs", "web") == "up\nbye\nup\n")
    p = b("rm", "web")
    assert p.returncode == 1
    assert f"You cannot remove a running container {cid}" in p.stderr
    assert b.out("rm", "-f", "web") == "web\n"
    assert b.out("ps", "-aq") == ""


def test_create_start_attach_and_wait(berth):
    berth.out("create", "--name", "c1", "busybox", "sh", "-c", "echo hi; exit 5").strip()
    ps = berth.out("ps", "-a", "--format", "{{.Names}} {{.Status}}")
    assert ps == "c1 Created\n"
    p = berth("start", "-a", "c1")
    assert (p.returncode, p.stdout) == (5, "hi\n")
    assert berth.out("wait", "c1") == "5\n"
    assert "exited on its own with code 5" in berth.out("why", "c1")


def test_kill_signal_and_wait(berth_rt):
    b = berth_rt
    b.run("-d", "--name", "kk", "busybox", "sleep", "100", check=True)
    assert b.out("kill", "-s", "TERM", "kk") == "kk\n"  # sleep as pid 1 ignores TERM
    assert b.out("inspect", "-f", "{{.State.Running}}", "kk") == "true\n"
    assert b.out("kill", "kk") == "kk\n"
    assert b.out("wait", "kk") == "137\n"
    assert "killed by signal SIGKILL (exit code 137)" in b.out("why", "kk") or \
        "stopped" in b.out("why", "kk")
    p = b("kill", "kk")
    assert p.returncode == 1 and "is not running" in p.stderr


def test_restart_pause_unpause_rename(berth):
    cid = berth.run("-d", "--name", "pp", "busybox", "sleep", "100", check=True).stdout.strip()
    pid1 = berth.out("inspect", "-f", "{{.State.Pid}}", "pp").strip()
    assert berth.out("pause", "pp") == "pp\n"
    assert berth.out("ps", "--format", "{{.Status}}").strip().endswith("(Paused)")
    assert berth.out("inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "pp") == \
        "paused true\n"
    with open(f"/sys/fs/cgroup/freezer/berth/{cid}/freezer.state") as f:
        assert f.read().strip() == "FROZEN"
    assert berth.out("unpause", "pp") == "pp\n"
    assert berth.out("restart", "-t", "1", "pp") == "pp\n"
    pid2 = berth.out("inspect", "-f", "{{.State.Pid}}", "pp").strip()
    assert pid1 != pid2 and int(pid2) > 0
    assert berth.out("rename", "pp", "qq") == ""
    assert berth.out("ps", "--format", "{{.Names}}") == "qq\n"
    p = berth("rename", "qq", "bad name!")
    assert p.returncode == 1 and "Invalid container name (bad name!)" in p.stderr


def test_top_and_stats(berth):
    berth.run("-d", "--name", "tt", "busybox", "sleep", "100", check=True)
    top = berth.out("top", "tt").splitlines()
    assert top[0].split()[:3] == ["UID", "PID", "PPID"]
    assert len(top) == 2 and top[1].endswith("sleep 100")
    stats = berth.out("stats", "--no-stream").splitlines()
    assert re.split(r"\s{2,}", stats[0]) == ["CONTAINER ID", "NAME", "CPU %",
                                             "MEM USAGE / LIMIT", "MEM %", "NET I/O",
                                             "BLOCK I/O", "PIDS"]
    assert re.search(r"\s+tt\s+\d+\.\d\d%\s+\S+ / \S+\s+\d+\.\d\d%.*\s1$", stats[1]), stats[1]


def test_ps_filters_format_no_trunc(berth):
    a = berth.run("-d", "--name", "aa", "-l", "tier=web", "busybox", "sleep", "100",
                  check=True).stdout.strip()
    berth.run("--name", "bb", "busybox", "true", check=True)
    assert berth.out("ps", "-q", "--no-trunc") == a + "\n"
    assert berth.out("ps", "-a", "--filter", "status=exited", "--format", "{{.Names}}") == "bb\n"
    assert berth.out("ps", "-a", "--filter", "label=tier=web", "--format",
                     "{{.ID}}\t{{.Names}}") == f"{a[:12]}\taa\n"
    assert berth.out("ps", "-a", "--filter", "name=bb", "-q") == \
        berth.out("inspect", "-f", "{{.Id}}", "bb")[:12] + "\n"
    table = berth.out("ps", "-a", "--format", "table {{.Names}}\t{{.State}}").splitlines()
    assert [re.split(r"\s{2,}", ln) for ln in table] == [["NAMES", "STATE"], ["bb", "exited"],
                                                        ["aa", "running"]]
    assert berth.out("inspect", "-f", "{{json .Config.Labels}}", "aa") == '{"tier":"web"}\n'


def test_logs_tail_timestamps_follow(berth):
    berth.run("--name", "ll", "busybox", "sh", "-c", "for i in 1 2 3 4; do echo $i; done",
              check=True)
    assert berth.out("logs", "--tail", "2", "ll") == "3\n4\n"
    ts = berth.out("logs", "-t", "--tail", "1", "ll")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z 4\n", ts), ts
    berth.run("-d", "--name", "ff", "busybox", "sh", "-c",
              "for i in 1 2 3; do echo line$i; sleep 0.2; done", check=True)
    p = berth("logs", "-f", "ff", timeout=20)
    assert p.stdout == "line1\nline2\nline3\n"


def test_log_rotation(berth, workdir):
    berth.run("--name", "rr", "--log-opt", "max-size=2k", "--log-opt", "max-file=2",
                    "busybox", "sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line$i; "
                    "i=$((i+1)); done", check=True)
    cid = berth.out("inspect", "-f", "{{.Id}}", "rr").strip()
    import os

    d = os.path.join(berth.root, "containers", cid)
    logs = sorted(f for f in os.listdir(d) if "-json.log" in f)
    assert logs == [f"{cid}-json.log", f"{cid}-json.log.1"]
    for f in logs:
        assert os.path.getsize(os.path.join(d, f)) <= 2048
    out = berth.out("logs", "rr").split()
    assert out[-1] == "line299" and len(out) < 300
    assert out == [f"line{i}" for i in range(300 - len(out), 300)]


def test_exec(berth_rt):
    b = berth_rt
    b.run("-d", "--name", "ex", "-e", "KEEP=1", "busybox", "sleep", "100", check=True)
    p = b("exec", "ex", "sh", "-c", "echo $KEEP $HOSTNAME; pwd; exit 3")
    assert p.returncode == 3
    assert p.stdout.split("\n")[1] == "/"
    p = b("exec", "-e", "KEEP=2", "-u", "nobody", "-w", "/tmp", "ex", "sh", "-c",
          "echo $KEEP; id -u; pwd")
    assert (p.returncode, p.stdout) == (0, "2\n65534\n/tmp\n"), p.stderr
    p = b("exec", "-i", "ex", "tr", "a-z", "A-Z", input=b"quiet\n")
    assert p.stdout == "QUIET\n"
    p = b("exec", "ex", "nosuchcommand")
    assert p.returncode == 127
    assert 'exec: "nosuchcommand": executable file not found in $PATH' in p.stderr
    # the exec'd process runs in the container's pid namespace
    assert b.out("exec", "ex", "sh", "-c", "echo $$") != ""
    b.out("stop", "-t", "0", "ex")
    p = b("exec", "ex", "true")
    assert p.returncode == 125 and "is not running" in p.stderr


def test_update_resources_and_restart_policy(berth):
    cid = berth.run("-d", "--name", "up", "-m", "64m", "busybox", "sh", "-c",
                    "sleep 1.5; exit 3", check=True).stdout.strip()
    assert berth.out("update", "-m", "128m", "--memory-swap", "256m", "--pids-limit", "20",
                     "--restart", "on-failure:1", "up") == "up\n"
    import os

    mem = f"/sys/fs/cgroup/memory/berth/{cid}/memory.limit_in_bytes"
    if os.path.exists(mem):
        with open(mem) as f:
            assert f.read().strip() == str(128 << 20)
        with open(f"/sys/fs/cgroup/pids/berth/{cid}/pids.max") as f:
            assert f.read().strip() == "20"
    assert berth.out("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.PidsLimit}}",
                     "up") == f"{128 << 20} 20\n"
    # the new policy decides at the next exit: restarted once, then left exited
    assert _wait_for(lambda: berth.out("inspect", "-f", "{{.RestartCount}} {{.State.Status}}",
                                       "up") == "1 exited\n", timeout=20)
    p = berth("update", "up")
    assert p.returncode == 1 and "one or more flags" in p.stderr


def test_update_refuses_a_restart_policy_with_rm(berth):
    # as Docker: the monitor of an --rm container decides without its row
    cid = berth.run("-d", "--rm", "--name", "rmup", "busybox", "sleep", "100",
                    check=True).stdout.strip()
    p = berth("update", "--restart", "always", "rmup")
    assert p.returncode == 1
    assert p.stderr == (f"Error response from daemon: Cannot update container {cid}: Restart "
                        "policy cannot be updated because AutoRemove is enabled for the "
                        "container\n")
    assert berth.out("update", "-m", "64m", "rmup") == "rmup\n"


def test_logs_follow_across_rotation(berth):
    """`logs -f` started before the container writes: every line once, in
    order, while the file rotates under it (max-size=1k, 3 files)."""
    berth.run("-d", "--name", "rot", "--log-opt", "max-size=1k", "--log-opt", "max-file=3",
              "busybox", "sh", "-c",
              "sleep 0.5; i=0; while [ $i -lt 60 ]; do echo line$i; i=$((i+1)); "
              "[ $((i % 10)) = 0 ] && sleep 0.1; done", check=True)
    p = berth("logs", "-f", "rot", timeout=30)
    assert p.stdout.split() == [f"line{i}" for i in range(60)]


def test_attach_output_and_exit_code(berth_rt):
    b = berth_rt
    b.run("-d", "--name", "at", "busybox", "sh", "-c",
          "sleep 1; for i in 1 2 3; do echo tick$i; sleep 0.2; done; exit 5", check=True)
    p = b("attach", "at", timeout=30)
    assert (p.returncode, p.stdout) == (5, "tick1\ntick2\ntick3\n")
    p = b("attach", "at")
    assert p.returncode == 1 and "You cannot attach to a stopped container" in p.stderr


def test_attach_terminal_input_and_detach(berth):
    """`attach` to a `run -dit` shell from a terminal: keys reach it, its
    answers come back, ctrl-p ctrl-q detaches and the shell runs on."""
    import os
    import pty
    import select

    from tests.integration.engine.conftest import BERTH

    berth.run("-dit", "--name", "sh1", "busybox", "sh", check=True)
    pid, fd = pty.fork()
    if pid == 0:
        os.environ.update(berth.env)
        os.execv(BERTH, [BERTH, "attach", "sh1"])
    out = b""
    deadline = time.monotonic() + 20
    step = 0
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.3)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if step == 0:
            time.sleep(0.5)
            os.write(fd, b"echo hi-$((20+22))\r")
            step = 1
        elif step == 1 and b"hi-42" in out:
            os.write(fd, b"\x10\x11")  # ctrl-p ctrl-q
            step = 2
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert b"hi-42" in out, out
    assert os.waitstatus_to_exitcode(status) == 0, out
    assert b"read escape sequence" in out
    assert berth.out("inspect", "-f", "{{.State.Status}}", "sh1") == "running\n"
    assert "hi-42" in berth.out("logs", "sh1")
