"""Cgroup limits and commands of the runtime, proven by their effect inside
containers: against berth-runtime and runc where runc 1.1.5 behaves the same
(the `runtime` fixture), berth alone where it says more than runc.

Containers here write their progress into their rootfs (the bundle's
rootfs directory, readable from the host), since `exec` is not available
to every test."""

import json
import os
import subprocess
import time

import pytest

from tests.integration.conftest import unique

CGROUP_ROOT = "/sys/fs/cgroup"
IS_V2 = os.path.exists(f"{CGROUP_ROOT}/cgroup.controllers")
MiB = 1 << 20


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_rootfs(bundle, name):
    try:
        with open(os.path.join(bundle.rootfs, name)) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def create_and_start(runtime, bundle):
    cid = unique()
    runtime.run("create", "--bundle", bundle.write(), cid, check=True)
    runtime.run("start", cid, check=True)
    return cid


def status(runtime, cid):
    return json.loads(runtime.run("state", cid, check=True).stdout)["status"]


def wait_status(runtime, cid, want, timeout=10.0):
    wait_for(lambda: status(runtime, cid) == want, timeout, f"status {want}")


def stats(runtime, cid):
    p = runtime.run("events", "--stats", cid, check=True)
    lines = p.stdout.splitlines()
    assert len(lines) == 1, p.stdout
    ev = json.loads(lines[0])
    assert ev["type"] == "stats" and ev["id"] == cid
    return ev["data"]


def ps_pids(runtime, cid):
    return json.loads(runtime.run("ps", "--format", "json", cid, check=True).stdout) or []


def cgroup_dirs(bundle):
    """The container's cgroup directories that exist on the host."""
    rel = bundle.config["linux"]["cgroupsPath"].lstrip("/")
    if IS_V2:
        tops = [CGROUP_ROOT]
    else:
        tops = [
            os.path.join(CGROUP_ROOT, n)
            for n in os.listdir(CGROUP_ROOT)
            if not os.path.islink(os.path.join(CGROUP_ROOT, n))
        ]
    return sorted(p for p in (os.path.join(t, rel) for t in tops) if os.path.isdir(p))


def test_memory_limit_oom_kills_and_events_reports_it(runtime, make_bundle, workdir):
    b = make_bundle(
        "sh",
        "-c",
        # dd's 64 MiB buffer is touched whole by the read from /dev/zero
        "while :; do dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; "
        "echo $? >> /dd-status; usleep 100000; done",
    )
    b.config["linux"]["resources"] = {"memory": {"limit": 32 * MiB, "swap": 32 * MiB}}
    cid = create_and_start(runtime, b)
    out_path = os.path.join(workdir, "events.out")
    with open(out_path, "w") as out:
        events = subprocess.Popen(
            runtime.cmd("events", "--interval", "1s", cid), stdout=out, stderr=subprocess.DEVNULL
        )
    try:

        def lines():
            with open(out_path) as f:
                return [json.loads(line) for line in f if line.strip()]

        got = wait_for(
            lambda: [e for e in lines() if e["type"] == "oom"]
            and [e for e in lines() if e["type"] == "stats"],
            10,
            "an oom event and a stats event",
        )
        assert got
        evs = lines()
        assert {"type": "oom", "id": cid} in evs
        st = next(e for e in evs if e["type"] == "stats")
        assert st["id"] == cid
        assert st["data"]["memory"]["usage"]["limit"] == 32 * MiB
        # the allocating process was killed by SIGKILL (128 + 9); the container lives
        assert "137" in read_rootfs(b, "dd-status").split()
        assert status(runtime, cid) == "running"
        if runtime.name == "berth":
            # berth's stream ends when the container stops; runc 1.1.5's
            # only when its cgroup is removed (by delete), tested below
            runtime.run("kill", cid, "KILL", check=True)
            assert events.wait(timeout=10) == 0
        runtime.run("delete", "--force", cid, check=True)
        assert events.wait(timeout=10) == 0
    finally:
        events.kill()
        events.wait()


def test_pids_limit_stops_a_fork_loop(runtime, make_bundle, workdir):
    b = make_bundle(
        "sh",
        "-c",
        "while [ ! -e /go ]; do usleep 10000; done; "
        "sh -c 'while :; do sleep 60 & done' 2>/dev/null; echo $? > /forkloop; exec sleep 60",
    )
    b.config["linux"]["resources"] = {"pids": {"limit": 16}}
    cid = create_and_start(runtime, b)
    events = None
    if runtime.name == "berth":
        # berth reports forks refused at the limit as events; runc does not
        out_path = os.path.join(workdir, "events.out")
        with open(out_path, "w") as out:
            events = subprocess.Popen(
                runtime.cmd("events", "--interval", "60s", cid),
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
        time.sleep(0.3)  # let it set up its watch before the loop starts
    try:
        open(os.path.join(b.rootfs, "go"), "w").close()
        # the looping shell dies on its first refused fork
        wait_for(lambda: read_rootfs(b, "forkloop").strip(), 10, "the fork loop to end")
        pids = ps_pids(runtime, cid)
        assert 8 <= len(pids) <= 16, pids
        data = stats(runtime, cid)
        assert data["pids"]["limit"] == 16
        assert data["pids"]["current"] <= 16
        if events is not None:
            assert data["pids"]["events"]["max"] >= 1  # berth only: runc has no pids.events

            def limit_hits():
                with open(out_path) as f:
                    evs = [json.loads(line) for line in f if line.strip()]
                return [e for e in evs if e["type"] == "pids.max"]

            # v1 pids.events wakes no poll: the stream re-reads it 4 times a second
            hits = wait_for(limit_hits, 5, "a pids.max event")
            assert hits[0]["id"] == cid
            assert hits[0]["data"]["count"] >= 1
        runtime.run("delete", "--force", cid, check=True)
        if events is not None:
            assert events.wait(timeout=10) == 0
    finally:
        if events is not None:
            events.kill()
            events.wait()


def test_cpu_quota_of_half_a_cpu(runtime, make_bundle):
    # two busy loops would use two CPUs; the quota allows half of one
    b = make_bundle("sh", "-c", "while :; do :; done & while :; do :; done")
    b.config["linux"]["resources"] = {"cpu": {"quota": 50000, "period": 100000}}
    cid = create_and_start(runtime, b)
    time.sleep(0.3)
    t0, u0 = time.monotonic(), stats(runtime, cid)["cpu"]["usage"]["total"]
    time.sleep(2.0)
    t1, u1 = time.monotonic(), stats(runtime, cid)["cpu"]["usage"]["total"]
    cpus = (u1 - u0) / 1e9 / (t1 - t0)
    assert 0.2 < cpus < 0.7, f"{cpus:.2f} CPUs used under a 0.5 CPU quota"
    runtime.run("delete", "--force", cid, check=True)


def test_pause_stops_progress_and_resume_continues(runtime, make_bundle):
    b = make_bundle("sh", "-c", "while :; do echo x >> /progress; usleep 10000; done")
    cid = create_and_start(runtime, b)
    size = lambda: os.path.getsize(os.path.join(b.rootfs, "progress"))  # noqa: E731
    wait_for(lambda: os.path.exists(os.path.join(b.rootfs, "progress")) and size() > 10, 10, "progress")
    assert runtime.run("resume", cid).returncode == 1  # not paused
    runtime.run("pause", cid, check=True)
    assert status(runtime, cid) == "paused"
    assert runtime.run("pause", cid).returncode == 1  # already paused
    before = size()
    time.sleep(0.5)
    assert size() == before, "a paused container made progress"
    # a paused container can be looked at and updated
    pid = json.loads(runtime.run("state", cid, check=True).stdout)["pid"]
    assert pid in ps_pids(runtime, cid)
    runtime.run("update", "--pids-limit", "30", cid, check=True)
    assert stats(runtime, cid)["pids"]["limit"] == 30
    assert status(runtime, cid) == "paused"
    runtime.run("resume", cid, check=True)
    assert status(runtime, cid) == "running"
    wait_for(lambda: size() > before + 10, 5, "progress after resume")
    # a paused container can be killed and deleted
    runtime.run("pause", cid, check=True)
    runtime.run("delete", "--force", cid, check=True)


def test_update_changes_a_live_limit_and_a_refused_value_keeps_the_old(runtime, make_bundle, workdir):
    b = make_bundle(
        "sh",
        "-c",
        "while :; do if dd if=/dev/zero of=/dev/null bs=48M count=1 2>/dev/null; "
        "then echo ok >> /dd; else echo failed >> /dd; fi; usleep 50000; done",
    )
    b.config["linux"]["resources"] = {"memory": {"limit": 32 * MiB}, "pids": {"limit": 50}}
    cid = create_and_start(runtime, b)
    wait_for(lambda: "failed" in read_rootfs(b, "dd"), 10, "an allocation to fail")
    assert "ok" not in read_rootfs(b, "dd")
    runtime.run("update", "--memory", "128m", cid, check=True)
    wait_for(lambda: "ok" in read_rootfs(b, "dd"), 10, "an allocation to succeed after update")
    assert stats(runtime, cid)["memory"]["usage"]["limit"] == 128 * MiB
    # a cpuset outside the host's CPUs is refused; the memory limit given
    # with it is not applied (berth rolls it back; runc writes cpuset first)
    bad_cpu = str((os.cpu_count() or 1) + 100)
    p = runtime.run("update", "--memory", "256m", "--cpuset-cpus", bad_cpu, cid)
    assert p.returncode == 1
    data = stats(runtime, cid)
    assert data["memory"]["usage"]["limit"] == 128 * MiB
    assert bad_cpu not in [str(c) for c in data["cpuset"]["cpus"]]
    if runtime.name == "berth":
        # berth's message names the file and the value (runc's too, in its
        # own words)
        assert f"cpuset.cpus={bad_cpu}" in p.stderr, p.stderr
    # --resources from a file, and from stdin
    res_path = os.path.join(workdir, "resources.json")
    with open(res_path, "w") as f:
        json.dump({"pids": {"limit": 40}}, f)
    runtime.run("update", "--resources", res_path, cid, check=True)
    assert stats(runtime, cid)["pids"]["limit"] == 40
    with open(res_path, "w") as f:
        json.dump({"pids": {"limit": 45}}, f)
    with open(res_path) as f:
        runtime.run("update", "-r", "-", cid, check=True, stdin=f)
    assert stats(runtime, cid)["pids"]["limit"] == 45
    assert stats(runtime, cid)["memory"]["usage"]["limit"] == 128 * MiB
    if runtime.name == "berth":
        # the config in berth's state.json follows (runc's state.json differs)
        with open(os.path.join(runtime.root, cid, "state.json")) as f:
            res = json.load(f)["config"]["linux"]["resources"]
        assert res["memory"]["limit"] == 128 * MiB
        assert res["pids"]["limit"] == 45
    runtime.run("delete", "--force", cid, check=True)


def test_update_refused_by_the_kernel_keeps_the_old_limits(runtime, make_bundle):
    # dd holds its 20 MiB buffer while its write to the pipe blocks; there
    # is no swap to push it to, so the kernel cannot go below it
    b = make_bundle("sh", "-c", "dd if=/dev/zero bs=20M count=1 2>/dev/null | sleep 100")
    b.config["linux"]["resources"] = {"memory": {"limit": 64 * MiB}}
    cid = create_and_start(runtime, b)
    wait_for(lambda: stats(runtime, cid)["memory"]["usage"]["usage"] > 20 * MiB, 10, "20 MiB in use")
    pids = ps_pids(runtime, cid)
    p = runtime.run("update", "--memory", "4m", cid)
    assert p.returncode == 1
    if runtime.name == "berth":
        limit_file = "memory.max" if IS_V2 else "memory.limit_in_bytes"
        assert f"{limit_file}={4 * MiB}" in p.stderr, p.stderr
    assert stats(runtime, cid)["memory"]["usage"]["limit"] == 64 * MiB
    assert ps_pids(runtime, cid) == pids  # and nothing was killed
    # an unknown key of the unified map is refused too
    with _file_with(b, '{"unified": {"bogus.key": "1"}}') as f:
        p = runtime.run("update", "-r", "-", cid, stdin=f)
    assert p.returncode == 1
    if runtime.name == "berth":
        # runc 1.1.5 refuses any unified key on a v1 or hybrid host, without naming it
        assert "bogus.key=1" in p.stderr, p.stderr
    assert stats(runtime, cid)["memory"]["usage"]["limit"] == 64 * MiB
    runtime.run("delete", "--force", cid, check=True)


def _file_with(bundle, text):
    path = os.path.join(bundle.path, "input")
    with open(path, "w") as f:
        f.write(text)
    return open(path)


@pytest.mark.parametrize("readonly", [True, False])
def test_sys_fs_cgroup_shows_the_containers_own_cgroup(runtime, make_bundle, readonly):
    if IS_V2:
        pids_max, mem_limit = "pids.max", "memory.max"
    else:
        pids_max, mem_limit = "pids/pids.max", "memory/memory.limit_in_bytes"
    b = make_bundle(
        "sh",
        "-c",
        f"cat /sys/fs/cgroup/{pids_max} /sys/fs/cgroup/{mem_limit}; "
        "grep -E '^0::|:pids:' /proc/self/cgroup; "
        f"if echo 20 > /sys/fs/cgroup/{pids_max}; then echo WROTE; else echo REFUSED; fi; "
        f"cat /sys/fs/cgroup/{pids_max}",
    )
    b.config["linux"]["resources"] = {"memory": {"limit": 48 * MiB}, "pids": {"limit": 33}}
    (mount,) = [m for m in b.config["mounts"] if m["destination"] == "/sys/fs/cgroup"]
    if readonly:
        assert "ro" in mount["options"]  # the default spec's
    else:
        mount["options"] = [o for o in mount["options"] if o != "ro"] + ["rw"]
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split()
    assert lines[:2] == ["33", str(48 * MiB)], p.stdout
    # the cgroup namespace: its own cgroup is the root
    assert all(line.endswith(":/") for line in lines[2:-2]), p.stdout
    if readonly:
        assert lines[-2:] == ["REFUSED", "33"], p.stdout
    else:
        assert lines[-2:] == ["WROTE", "20"], p.stdout


def test_ps_lists_the_containers_processes(runtime, make_bundle):
    b = make_bundle("sh", "-c", "sleep 100 & sleep 100 & wait")
    cid = create_and_start(runtime, b)
    pid = json.loads(runtime.run("state", cid, check=True).stdout)["pid"]
    pids = wait_for(lambda: len(ps_pids(runtime, cid)) == 3 and ps_pids(runtime, cid), 10, "3 pids")
    assert pid in pids
    for p in pids:
        with open(f"/proc/{p}/cmdline", "rb") as f:
            assert f.read().split(b"\0")[0] in (b"sh", b"sleep")
    # the table: ps -ef's header and the container's lines only
    out = runtime.run("ps", cid, check=True).stdout.splitlines()
    header = out[0].split()
    assert "PID" in header
    assert sorted(int(line.split()[header.index("PID")]) for line in out[1:]) == sorted(pids)
    runtime.run("delete", "--force", cid, check=True)


def test_kill_all_signals_every_process(runtime, make_bundle):
    # the init (a shell without a TERM handler) ignores SIGTERM, as a pid
    # namespace's init does; its children do not
    b = make_bundle("sh", "-c", "sleep 100 & sleep 100 & wait")
    cid = create_and_start(runtime, b)
    wait_for(lambda: len(ps_pids(runtime, cid)) == 3, 10, "3 pids")
    runtime.run("kill", cid, "TERM", check=True)
    time.sleep(0.3)
    assert len(ps_pids(runtime, cid)) == 3
    runtime.run("kill", "--all", cid, "TERM", check=True)
    # the sleeps die, the shell's wait returns and it exits
    wait_status(runtime, cid, "stopped")
    runtime.run("delete", cid, check=True)


def test_delete_removes_the_cgroup(runtime, make_bundle):
    b = make_bundle("sleep", "100")
    b.config["linux"]["resources"] = {"memory": {"limit": 64 * MiB}, "pids": {"limit": 20}}
    cid = create_and_start(runtime, b)
    dirs = cgroup_dirs(b)
    assert any(d.startswith(f"{CGROUP_ROOT}/memory/") or IS_V2 for d in dirs), dirs
    runtime.run("kill", cid, "KILL", check=True)
    wait_status(runtime, cid, "stopped")
    assert cgroup_dirs(b) == dirs  # kept until delete
    runtime.run("delete", cid, check=True)
    assert cgroup_dirs(b) == []


def test_cgroup_commands_on_a_stopped_container(runtime, make_bundle):
    b = make_bundle("true")
    cid = create_and_start(runtime, b)
    wait_status(runtime, cid, "stopped")
    for args in (("update", "--pids-limit", "10"), ("pause",), ("resume",), ("events", "--stats")):
        p = runtime.run(*args, cid)
        assert p.returncode == 1, (args, p.stdout)
        assert "not running" in p.stderr or "not paused" in p.stderr, (args, p.stderr)
    # ps lists the (now empty) cgroup rather than refusing, as runc
    assert runtime.run("ps", "--format", "json", cid, check=True).stdout.strip() == "null"
    assert runtime.run("events", "--interval", "0s", cid).returncode == 1
    runtime.run("delete", cid, check=True)


def test_concurrent_updates_all_land_in_the_state(berth_runtime, make_bundle):
    # berth only: runc 1.1.5 keeps no lock across processes, and its
    # state.json has another shape. Each update re-reads state.json under the
    # container's lock, so none overwrites another's change.
    b = make_bundle("sleep", "100")
    b.config["linux"]["resources"] = {"memory": {"limit": 64 * MiB}, "pids": {"limit": 50}}
    cid = create_and_start(berth_runtime, b)
    flags = [
        ("--pids-limit", "41"), ("--cpu-share", "300"), ("--memory-reservation", "16m"),
        ("--cpu-period", "200000"), ("--cpu-quota", "150000"), ("--blkio-weight", "300"),
    ]
    procs = [
        subprocess.Popen(berth_runtime.cmd("update", flag, value, cid), stderr=subprocess.PIPE)
        for flag, value in flags
    ]
    for p in procs:
        _, err = p.communicate(timeout=30)
        assert p.returncode == 0, err
    with open(os.path.join(berth_runtime.root, cid, "state.json")) as f:
        res = json.load(f)["config"]["linux"]["resources"]
    assert res["pids"] == {"limit": 41}
    assert res["memory"] == {"limit": 64 * MiB, "reservation": 16 * MiB}
    assert res["cpu"] == {"shares": 300, "period": 200000, "quota": 150000}
    assert res["blockIO"] == {"weight": 300}
    data = stats(berth_runtime, cid)
    assert data["pids"]["limit"] == 41
    berth_runtime.run("delete", "--force", cid, check=True)
