"""`berth run`: what the container sees and what the CLI prints, on the
in-process berth runtime and on runc."""

import os
import re


def test_run_rm_echo(berth_rt):
    p = berth_rt.run("--rm", "busybox", "echo", "hello")
    assert (p.returncode, p.stdout, p.stderr) == (0, "hello\n", "")
    assert berth_rt.out("ps", "-aq") == ""


def test_exit_code_and_streams(berth_rt):
    p = berth_rt.run("--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (p.returncode, p.stdout, p.stderr) == (3, "out\n", "err\n")


def test_run_rm_records_the_exit_then_removes(berth_rt):
    # the CLI records the exit its monitor left to it, then removes the container
    p = berth_rt.run("--rm", "--name", "rmexit", "busybox", "sh", "-c", "exit 3")
    assert p.returncode == 3, p.stderr
    out = berth_rt.out("events", "--since", "1m", "--until", "0s", "--filter",
                       "container=rmexit", "--format", "{{.Action}}")
    assert out.split() == ["create", "start", "die", "destroy"]
    out = berth_rt.out("events", "--since", "1m", "--until", "0s", "--filter", "event=die",
                       "--format", "{{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
    assert out == "rmexit 3\n"
    assert berth_rt.out("ps", "-aq") == ""


def test_command_not_found_127_not_executable_126(berth_rt):
    p = berth_rt.run("--rm", "busybox", "nosuchcommand")
    assert p.returncode == 127, p.stderr
    assert 'exec: "nosuchcommand": executable file not found in $PATH' in p.stderr
    p = berth_rt.run("--rm", "busybox", "/etc/passwd")
    assert p.returncode == 126, p.stderr
    assert "permission denied" in p.stderr
    # --rm: a container that could not start is removed too
    assert berth_rt.out("ps", "-aq") == ""


def test_env_user_workdir_hostname(berth_rt, workdir):
    env_file = os.path.join(workdir, "env")
    with open(env_file, "w") as f:
        f.write("# comment\nFROM_FILE=yes\nB=file\n")
    p = berth_rt.run("--rm", "-e", "A=1", "--env-file", env_file, "-e", "B=flag",
                     "-u", "nobody", "-w", "/made/here", "--hostname", "boxy", "busybox",
                     "sh", "-c", "echo $A $B $FROM_FILE $HOSTNAME $PATH; id; pwd; hostname")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "1 flag yes boxy /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    assert lines[1].startswith("uid=65534(nobody) gid=65534")
    assert lines[2:] == ["/made/here", "boxy"]


def test_numeric_user_and_unknown_user(berth):
    p = berth.run("--rm", "-u", "1234:5678", "busybox", "id")
    assert p.stdout.strip() == "uid=1234 gid=5678", p.stderr
    p = berth.run("--rm", "-u", "nosuchuser", "busybox", "id")
    assert p.returncode == 125
    assert "unable to find user nosuchuser: no matching entries in passwd file" in p.stderr


def test_etc_files_and_default_hostname(berth):
    cid = berth.out("create", "busybox", "sh", "-c",
                    "hostname; cat /etc/hostname; grep -c localhost /etc/hosts; "
                    "test -s /etc/resolv.conf && echo resolv").strip()
    p = berth("start", "-a", cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [cid[:12], cid[:12], "2", "resolv"]


def test_confinement_defaults_and_privileged(berth_rt):
    script = "grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status"
    p = berth_rt.run("--rm", "busybox", "sh", "-c", script)
    status = dict(line.split(":\t") for line in p.stdout.splitlines())
    # Docker's 14 default capabilities, its seccomp filter, no_new_privs off
    assert status == {"CapEff": "00000000a80425fb", "Seccomp": "2", "NoNewPrivs": "0"}
    p = berth_rt.run("--rm", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN",
                     "--security-opt", "no-new-privileges", "busybox", "sh", "-c", script)
    status = dict(line.split(":\t") for line in p.stdout.splitlines())
    assert status == {"CapEff": "0000000000001000", "Seccomp": "2", "NoNewPrivs": "1"}
    p = berth_rt.run("--rm", "--privileged", "busybox", "sh", "-c", script)
    status = dict(line.split(":\t") for line in p.stdout.splitlines())
    assert status["Seccomp"] == "0"
    with open("/proc/self/status") as f:
        bounding = next(ln.split()[1] for ln in f if ln.startswith("CapBnd:"))
    assert status["CapEff"] == bounding
    p = berth_rt.run("--rm", "--security-opt", "seccomp=unconfined", "busybox", "sh", "-c",
                     script)
    assert "Seccomp:\t0" in p.stdout


def test_masked_and_readonly_paths(berth):
    masked = next(f for f in ("/proc/keys", "/proc/timer_list", "/proc/interrupts", "/proc/kcore")
              if os.path.exists(f))
    p = berth.run("--rm", "busybox", "sh", "-c",
                  f"wc -c < {masked}; echo 1 > /proc/sys/kernel/domainname; echo rc=$?")
    assert p.stdout.split() == ["0", "rc=1"], p.stdout + p.stderr
    assert "Read-only file system" in p.stderr


def test_read_only_rootfs_and_tmpfs(berth_rt):
    p = berth_rt.run("--rm", "--read-only", "--tmpfs", "/scratch", "busybox", "sh", "-c",
                     "touch /x 2>/dev/null; echo root=$?; touch /scratch/y && echo tmp=ok; "
                     "grep ' /scratch ' /proc/mounts | cut -d' ' -f3")
    assert p.stdout.split() == ["root=1", "tmp=ok", "tmpfs"], p.stderr


def test_volumes_bind_named_tmpfs(berth, workdir):
    host = os.path.join(workdir, "host")
    os.mkdir(host)
    with open(os.path.join(host, "f"), "w") as f:
        f.write("from host\n")
    p = berth.run("--rm", "-v", f"{host}:/h:ro", "-v", "data:/data", "--mount",
                  "type=tmpfs,target=/t,tmpfs-size=1m", "busybox", "sh", "-c",
                  "cat /h/f; touch /h/g 2>/dev/null || echo ro; echo kept > /data/v; "
                  "grep ' /t ' /proc/mounts | grep -o size=1024k")
    assert p.stdout.split("\n")[:3] == ["from host", "ro", "size=1024k"], p.stderr
    p = berth.run("--rm", "-v", "data:/d", "busybox", "cat", "/d/v")
    assert p.stdout == "kept\n"
    assert "data" in berth.out("volume", "ls", "-q").split()


def test_resources_read_back(berth_rt):
    cid = berth_rt.run("-d", "-m", "64m", "--memory-swap", "128m", "--cpus", "0.5",
                       "--cpu-shares", "512", "--pids-limit", "50", "--ulimit",
                       "nofile=512:1024", "busybox", "sh", "-c",
                       "ulimit -n; ulimit -Hn; sleep 100", check=True).stdout.strip()
    cg = f"berth/{cid}"
    mem = "/sys/fs/cgroup/memory" if os.path.isdir("/sys/fs/cgroup/memory") else "/sys/fs/cgroup"
    if mem.endswith("memory"):
        assert _read(f"{mem}/{cg}/memory.limit_in_bytes") == str(64 << 20)
        assert _read(f"{mem}/{cg}/memory.memsw.limit_in_bytes") in (str(128 << 20), None)
        assert _read(f"/sys/fs/cgroup/cpu/{cg}/cpu.cfs_quota_us") == "50000"
        assert _read(f"/sys/fs/cgroup/cpu/{cg}/cpu.shares") == "512"
        assert _read(f"/sys/fs/cgroup/pids/{cg}/pids.max") == "50"
    else:
        assert _read(f"/sys/fs/cgroup/{cg}/memory.max") == str(64 << 20)
        assert _read(f"/sys/fs/cgroup/{cg}/cpu.max") == "50000 100000"
        assert _read(f"/sys/fs/cgroup/{cg}/pids.max") == "50"
    for _ in range(100):
        out = berth_rt.out("logs", cid)
        if len(out.split()) == 2:
            break
        import time

        time.sleep(0.05)
    assert out.split() == ["512", "1024"]
    insp = berth_rt.out("inspect", "-f", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} "
                        "{{.HostConfig.PidsLimit}}", cid)
    assert insp.strip() == f"{64 << 20} 500000000 50"
    berth_rt.out("rm", "-f", cid)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        return None


def test_entrypoint_override(berth):
    p = berth.run("--rm", "--entrypoint", "echo", "busybox", "a", "b")
    assert p.stdout == "a b\n"
    cid = berth.out("create", "--entrypoint", "/bin/echo", "busybox", "x").strip()
    path_args = berth.out("inspect", "-f", "{{.Path}} {{json .Args}} {{json .Config.Entrypoint}}",
                          cid).strip()
    assert path_args == '/bin/echo ["x"] ["/bin/echo"]'


def test_stdin_with_i(berth):
    p = berth.run("--rm", "-i", "busybox", "sh", "-c", "tr a-z A-Z", input=b"shout\n")
    assert p.stdout == "SHOUT\n", p.stderr


def test_network_none_and_host(berth):
    # Docker's default: the default bridge network
    p = berth.run("--rm", "busybox", "ls", "/sys/class/net")
    assert p.stdout.split() == ["eth0", "lo"], p.stderr
    p = berth.run("--rm", "--network", "none", "busybox", "ls", "/sys/class/net")
    assert p.stdout.split() == ["lo"]
    p = berth.run("--rm", "--network", "host", "busybox", "ls", "/sys/class/net")
    assert sorted(p.stdout.split()) == sorted(os.listdir("/sys/class/net"))


def test_oom_kill_recorded(berth):
    p = berth.run("--name", "hog", "-m", "8m", "--memory-swap", "8m", "busybox", "sh", "-c",
                  "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done")
    assert p.returncode == 137, p.stderr
    assert berth.out("inspect", "-f", "{{.State.OOMKilled}} {{.State.ExitCode}}",
                     "hog").strip() == "true 137"
    why = berth.out("why", "hog")
    assert re.search(r"OOM killer: its memory limit of 8388608 bytes was hit", why), why


def test_tty(berth_rt):
    p = berth_rt.run("--rm", "-t", "busybox", "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both; "
                     "exit 3")
    assert p.returncode == 3
    assert p.stdout == "/dev/pts/0\r\nboth\r\n"
    p = berth_rt.run("--rm", "-it", "busybox", "true")
    assert p.returncode == 1 and "the input device is not a TTY" in p.stderr


def test_interactive_tty_through_a_pty(berth):
    """`run -it` from a terminal: keys reach the container's shell, its
    terminal echoes and answers, the exit code comes back."""
    import pty
    import select
    import time

    from tests.integration.engine.conftest import BERTH

    pid, fd = pty.fork()
    if pid == 0:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 111, 0, 0))
        os.environ.update(berth.env)
        os.execv(BERTH, [BERTH, "run", "--rm", "-it", "busybox", "sh"])
    out = b""
    deadline = time.monotonic() + 20
    sent = False
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        if not sent and b"# " in out:
            os.write(fd, b"stty size; echo in-$((6*7)); exit 4\r")
            sent = True
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    assert os.waitstatus_to_exitcode(status) == 4, out
    assert b"in-42" in out
    assert b"\r\n33 111\r\n" in out, out  # the CLI's window size was passed on


def test_namespace_modes(berth_rt):
    b = berth_rt
    p = b.run("--rm", "--pid", "host", "--uts", "host", "busybox", "sh", "-c",
              "cat /proc/1/comm; hostname")
    with open("/proc/1/comm") as f:
        init = f.read().strip()
    assert p.stdout.split() == [init, os.uname().nodename], p.stderr
    b.run("-d", "--name", "shared", "busybox", "sleep", "100", check=True)
    pid = b.out("inspect", "-f", "{{.State.Pid}}", "shared").strip()
    p = b.run("--rm", "--network", "container:shared", "--pid", "container:shared", "--ipc",
              "container:shared", "busybox", "sh", "-c",
              "readlink /proc/self/ns/net; readlink /proc/self/ns/ipc; cat /proc/1/cmdline")
    lines = p.stdout.split("\n")
    assert lines[:2] == [os.readlink(f"/proc/{pid}/ns/net"), os.readlink(f"/proc/{pid}/ns/ipc")]
    assert lines[2].replace("\0", " ").strip() == "sleep 100"
    p = b.run("--rm", "--pid", "container:nosuch", "busybox", "true")
    assert p.returncode == 125 and "No such container: nosuch" in p.stderr
    p = b.run("--rm", "--uts", "container:shared", "busybox", "true")
    assert p.returncode == 125 and "invalid --uts: container:shared" in p.stderr


def test_init_reaps_and_forwards_signals(berth_rt):
    b = berth_rt
    # an orphan's zombie is reaped by the init; the command is its child
    p = b.run("--rm", "--init", "busybox", "sh", "-c",
              "sh -c 'sleep 0.1 &' ; sleep 0.5; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
              "ps -o stat,comm | grep -c '^Z' ; exit 6")
    assert p.returncode == 6, p.stderr
    lines = p.stdout.split("\n")
    assert lines[0].startswith("/sbin/docker-init -- sh -c")
    assert lines[1] == "0"
    # SIGTERM reaches the command (sleep as pid 1 would ignore it)
    b.run("-d", "--init", "--name", "ti", "busybox", "sleep", "100", check=True)
    assert b.out("stop", "-t", "30", "ti") == "ti\n"
    assert b.out("inspect", "-f", "{{.State.ExitCode}}", "ti") == "143\n"


def test_device_and_sysctl(berth_rt):
    # /dev/loop-control (10:237) is not among the default devices: --device
    # makes the node and allows it in the device cgroup
    if not os.path.exists("/dev/loop-control"):
        import pytest

        pytest.skip("no /dev/loop-control on this host")
    p = berth_rt.run("--rm", "busybox", "sh", "-c", "ls /dev/loop-control")
    assert p.returncode != 0
    p = berth_rt.run("--rm", "--device", "/dev/loop-control:/dev/lc", "busybox", "sh", "-c",
                     "ls -l /dev/lc | cut -c1,36-43")
    assert p.stdout.split() == ["c", "10,", "237"], p.stdout + p.stderr
    p = berth_rt.run("--rm", "--device", "/dev/nonexist", "busybox", "true")
    assert p.returncode == 125 and 'custom device "/dev/nonexist"' in p.stderr
    p = berth_rt.run("--rm", "--sysctl", "net.ipv4.ip_forward=1", "busybox", "cat",
                     "/proc/sys/net/ipv4/ip_forward")
    assert p.stdout == "1\n", p.stderr
