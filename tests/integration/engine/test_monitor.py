"""The monitor: a container outlives the CLI, its log and exit code are
kept, kill -9 of the CLI mid `run -d` leaves a consistent state, restart
policies with Docker's back-off."""

import os
import signal
import subprocess
import time

from tests.integration.conftest import live_processes


def _wait_for(fn, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def _monitors(root: str) -> list[int]:
    """Monitors of the engine whose --root is `root` (its --state is beside
    it): forked by the zygote or started on their own, named berth-monitor."""
    base = os.path.dirname(root).encode()
    return live_processes(lambda argv, comm: comm == b"berth-monitor"
                          and any(base in a for a in argv))


def _mounted(root: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return root in f.read()


def test_logs_and_exit_code_survive_the_cli(berth_rt):
    b = berth_rt
    b.run("-d", "--name", "bg", "busybox", "sh", "-c",
          "echo one; sleep 0.5; echo two >&2; sleep 0.5; exit 7", check=True)
    # the CLI is gone; the monitor is the container's parent and records the end
    assert len(_monitors(b.root)) == 1
    assert b.out("wait", "bg") == "7\n"
    p = b("logs", "bg")
    assert (p.stdout, p.stderr) == ("one\n", "two\n")
    assert b.out("inspect", "-f", "{{.State.ExitCode}} {{.State.Status}}", "bg") == "7 exited\n"
    assert _wait_for(lambda: not _monitors(b.root))
    assert not _mounted(b.root)


def test_kill_9_of_the_cli_during_run_d(berth):
    """Whenever the CLI dies, the next commands see a consistent state and
    clean up everything."""
    for delay in (0.05, 0.15, 0.3):
        proc = berth.popen("run", "-d", "--name", "victim", "busybox", "sleep", "100",
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        ps = berth.out("ps", "-a", "--format", "{{.Names}} {{.State}}")
        assert ps in ("", "victim created\n", "victim running\n"), ps
        if ps:
            assert berth.out("rm", "-f", "victim") == "victim\n"
        assert berth.out("ps", "-aq") == ""
        assert _wait_for(lambda: not _monitors(berth.root))
    assert not _mounted(berth.root)


def test_killed_monitor_is_noticed(berth):
    cid = berth.run("-d", "--name", "orphan", "busybox", "sleep", "100",
                    check=True).stdout.strip()
    pid = int(berth.out("inspect", "-f", "{{.State.Pid}}", cid))
    (mon,) = _monitors(berth.root)
    os.kill(mon, signal.SIGKILL)
    # the container runs on without its monitor
    assert berth.out("inspect", "-f", "{{.State.Running}}", cid) == "true\n"
    os.kill(pid, signal.SIGKILL)
    assert _wait_for(lambda: berth.out("inspect", "-f", "{{.State.Status}}", cid) ==
                     "exited\n")
    assert "lost its monitor" in berth.out("why", cid)
    assert not _mounted(berth.root)


def test_restart_on_failure_with_limit(berth):
    berth.run("-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c",
              "echo try; exit 3", check=True)
    assert _wait_for(lambda: berth.out("inspect", "-f", "{{.State.Status}}", "flaky") ==
                     "exited\n" and not _monitors(berth.root))
    out = berth.out("inspect", "-f", "{{.RestartCount}} {{.State.ExitCode}}", "flaky")
    assert out == "2 3\n"
    assert berth.out("logs", "flaky") == "try\ntry\ntry\n"


def test_restart_always_until_stopped(berth):
    berth.run("-d", "--name", "ever", "--restart", "always", "busybox", "sh", "-c",
              "echo run; exit 0", check=True)
    assert _wait_for(lambda: int(berth.out("inspect", "-f", "{{.RestartCount}}", "ever")) >= 2)
    assert berth.out("stop", "ever") == "ever\n"
    assert _wait_for(lambda: not _monitors(berth.root))
    n = berth.out("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "ever")
    time.sleep(0.5)
    assert berth.out("inspect", "-f", "{{.RestartCount}} {{.State.Status}}", "ever") == n
    assert n.endswith(" exited\n")


def test_rm_f_while_running_leaves_nothing(berth_rt):
    b = berth_rt
    cid = b.run("-d", "busybox", "sleep", "100", check=True).stdout.strip()
    assert b.out("rm", "-f", cid[:12]) == cid[:12] + "\n"
    assert b.out("ps", "-aq") == ""
    assert not os.path.exists(os.path.join(b.root, "containers", cid))
    assert _wait_for(lambda: not _monitors(b.root))


def test_healthcheck_states_and_on_failure(berth_rt):
    b = berth_rt
    b.run("-d", "--name", "hc", "--health-cmd", "test -f /tmp/ready && echo fine",
          "--health-interval", "200ms", "--health-retries", "2", "busybox", "sh", "-c",
          "sleep 2; touch /tmp/ready; sleep 100", check=True)
    assert _wait_for(lambda: b.out("inspect", "-f", "{{.State.Health.Status}}", "hc") ==
                     "unhealthy\n")
    assert b.out("ps", "--format", "{{.Status}}").strip().endswith("(unhealthy)")
    assert _wait_for(lambda: b.out("inspect", "-f", "{{.State.Health.Status}}", "hc") ==
                     "healthy\n")
    import json

    health = json.loads(b.out("inspect", "-f", "{{json .State.Health}}", "hc"))
    assert health["FailingStreak"] == 0 and health["Log"][-1]["Output"] == "fine\n"
    assert health["Log"][-1]["ExitCode"] == 0 and len(health["Log"]) <= 5
    b.run("-d", "--name", "sick", "--health-cmd", "echo broken; exit 1", "--health-interval",
          "100ms", "--health-retries", "3", "--health-on-failure", "kill", "busybox",
          "sleep", "100", check=True)
    assert b.out("wait", "sick") == "137\n"
    why = b.out("why", "sick")
    assert "failed its health check 3 times in a row" in why and "broken" in why
    assert "--health-on-failure=kill" in why


def test_boot_restarts_always_and_unless_stopped(berth):
    """A reboot, simulated: monitors and containers killed, the boot id
    changed; the next command starts `always` and `unless-stopped`
    containers again, but not one a user stopped or one without a policy."""
    for name, policy in (("al", "always"), ("us", "unless-stopped"), ("st", "unless-stopped"),
                         ("no", "no")):
        berth.run("-d", "--name", name, "--restart", policy, "busybox", "sleep", "100",
                  check=True)
    berth.out("stop", "-t", "0", "st")
    pids = [int(berth.out("inspect", "-f", "{{.State.Pid}}", n)) for n in ("al", "us", "no")]
    for pid in _monitors(berth.root) + pids:
        os.kill(pid, signal.SIGKILL)
    with open(os.path.join(berth.state, "boot_id"), "w") as f:
        f.write("a-previous-boot\n")
    ps = berth.out("ps", "-a", "--format", "{{.Names}} {{.State}}")
    assert sorted(ps.split("\n")[:-1]) == ["al running", "no exited", "st exited",
                                           "us running"]
    assert "lost its monitor" in berth.out("why", "no")


def test_kill_9_of_the_cli_during_stop_and_rm(berth):
    # stop: the container ignores SIGTERM; the CLI dies during the grace period
    berth.run("-d", "--name", "stubborn", "busybox", "sh", "-c",
              "trap '' TERM; while true; do sleep 0.1; done", check=True)
    proc = berth.popen("stop", "-t", "30", "stubborn", stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert berth.out("inspect", "-f", "{{.State.Status}}", "stubborn") == "running\n"
    assert berth.out("stop", "-t", "0", "stubborn") == "stubborn\n"
    assert berth.out("inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "stubborn") == \
        "exited 137\n"
    # rm -f: whenever the CLI dies, `rm` again finishes the job
    for delay in (0.05, 0.2, 0.4):
        berth.run("-d", "--name", "doomed", "busybox", "sleep", "100", check=True)
        proc = berth.popen("rm", "-f", "doomed", stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = berth.out("ps", "-a", "--filter", "name=doomed", "--format", "{{.State}}")
        assert state in ("", "running\n", "removing\n", "exited\n"), state
        if state:
            assert berth.out("rm", "-f", "doomed") == "doomed\n"
        assert berth.out("ps", "-aq", "--filter", "name=doomed") == ""
    assert _wait_for(lambda: not _monitors(berth.root))
    assert not _mounted(berth.root)


def test_detached_rm_is_removed_by_the_monitor(berth_rt):
    b = berth_rt
    cid = b.run("-d", "--rm", "busybox", "sh", "-c", "sleep 0.3", check=True).stdout.strip()
    assert _wait_for(lambda: b.out("ps", "-aq") == "")
    assert not os.path.exists(os.path.join(b.root, "containers", cid))
    assert _wait_for(lambda: not _monitors(b.root))
    assert not _mounted(b.root)


def test_a_start_that_fails_before_the_monitor_starts_leaves_none(berth):
    """The zygote forks the monitor while the bundle is written
    (spawn.begin); a start that fails meanwhile lets it go unstarted."""
    berth.run("--name", "gone", "--network", "none", "busybox", "true", check=True)
    before = set(_monitors(berth.root))
    p = berth.run("--rm", "--network", "none", "--pid", "container:gone", "busybox", "true")
    assert p.returncode == 125
    assert "cannot join pid namespace of a non running container" in p.stderr
    assert _wait_for(lambda: set(_monitors(berth.root)) <= before)
    # and the next start is not disturbed by it
    assert berth.out("run", "--rm", "--network", "none", "busybox", "echo", "ok") == "ok\n"
