"""The runtime's commands and state machine, against berth-runtime and runc."""

import json
import os
import time

from tests.integration.conftest import unique


def test_run_prints_and_propagates_exit_code(runtime, make_bundle):
    b = make_bundle("sh", "-c", "echo hello from $(hostname); exit 3")
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.stdout == "hello from berthtest\n", p.stderr
    assert p.returncode == 3


def test_run_reports_death_by_signal_as_128_plus_n(runtime, make_bundle):
    import subprocess

    b = make_bundle("sleep", "100")
    cid = unique()
    proc = subprocess.Popen(runtime.cmd("run", "--bundle", b.write(), cid), stderr=subprocess.PIPE)
    try:
        for _ in range(500):
            p = runtime.run("state", cid)
            if p.returncode == 0 and json.loads(p.stdout)["status"] == "running":
                break
            time.sleep(0.01)
        runtime.run("kill", cid, "KILL", check=True)
        assert proc.wait(timeout=20) == 137
    finally:
        proc.kill()
        proc.wait()
    # `run` deletes what it created
    assert runtime.run("state", cid).returncode == 1


def test_create_start_state_kill_delete(runtime, make_bundle, workdir):
    b = make_bundle("sleep", "100")
    cid = unique()
    pidfile = os.path.join(workdir, "pid")
    runtime.run("create", "--bundle", b.write(), "--pid-file", pidfile, cid, check=True)
    state = json.loads(runtime.run("state", cid, check=True).stdout)
    assert state["status"] == "created"
    assert state["id"] == cid
    assert state["bundle"] == b.path
    assert state["pid"] > 0
    with open(pidfile) as f:
        assert int(f.read()) == state["pid"]
    # in the created state the user process has not been exec'd yet
    with open(f"/proc/{state['pid']}/cmdline", "rb") as f:
        assert b"sleep" not in f.read()
    listed = runtime.run("list", "--format", "json", check=True).stdout
    assert [c["id"] for c in json.loads(listed)] == [cid]
    runtime.run("start", cid, check=True)
    state = json.loads(runtime.run("state", cid, check=True).stdout)
    assert state["status"] == "running"
    pid = state["pid"]
    for _ in range(200):
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        if cmdline == b"sleep\x00100\x00":
            break
        time.sleep(0.01)
    else:
        raise AssertionError(f"sleep never exec'd: {cmdline!r}")
    # a second start is refused
    assert runtime.run("start", cid).returncode == 1
    # delete of a running container without --force is refused
    assert runtime.run("delete", cid).returncode == 1
    runtime.run("kill", cid, "KILL", check=True)
    for _ in range(200):
        state = json.loads(runtime.run("state", cid, check=True).stdout)
        if state["status"] == "stopped":
            break
        time.sleep(0.02)
    assert state["status"] == "stopped"
    assert runtime.run("kill", cid, "TERM").returncode == 1
    runtime.run("delete", cid, check=True)
    p = runtime.run("state", cid)
    assert p.returncode == 1
    assert "does not exist" in p.stderr
    assert runtime.run("list", "-q", check=True).stdout == ""


def test_kill_in_created_state_ends_the_init(runtime, make_bundle):
    b = make_bundle("true")
    cid = unique()
    runtime.run("create", "--bundle", b.write(), cid, check=True)
    runtime.run("kill", cid, "TERM", check=True)
    for _ in range(200):
        if json.loads(runtime.run("state", cid, check=True).stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    else:
        raise AssertionError("init survived SIGTERM in the created state")
    runtime.run("delete", cid, check=True)


def test_delete_force_of_running_container(runtime, make_bundle):
    b = make_bundle("sh", "-c", "sleep 100 & sleep 100")
    cid = unique()
    runtime.run("run", "-d", "--bundle", b.write(), cid, check=True)
    state = json.loads(runtime.run("state", cid, check=True).stdout)
    assert state["status"] == "running"
    runtime.run("delete", "--force", cid, check=True)
    assert runtime.run("state", cid).returncode == 1


def test_kill_all_signals_every_process(runtime, make_bundle):
    b = make_bundle("sh", "-c", "trap '' TERM; sleep 100 & sleep 100 & wait")
    cid = unique()
    runtime.run("run", "-d", "--bundle", b.write(), cid, check=True)
    time.sleep(0.2)
    runtime.run("kill", "--all", cid, "KILL", check=True)
    for _ in range(200):
        if json.loads(runtime.run("state", cid, check=True).stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    else:
        raise AssertionError("kill --all left the container running")
    runtime.run("delete", cid, check=True)


def test_duplicate_id_is_refused_and_first_container_untouched(runtime, make_bundle):
    b = make_bundle("sleep", "100")
    cid = unique()
    runtime.run("create", "--bundle", b.write(), cid, check=True)
    p = runtime.run("create", "--bundle", b.path, cid)
    assert p.returncode == 1
    assert "exists" in p.stderr
    assert json.loads(runtime.run("state", cid, check=True).stdout)["status"] == "created"
    runtime.run("delete", "--force", cid, check=True)


def test_bad_signal_name(runtime, make_bundle):
    b = make_bundle("sleep", "100")
    cid = unique()
    runtime.run("create", "--bundle", b.write(), cid, check=True)
    p = runtime.run("kill", cid, "SIGNOPE")
    assert p.returncode == 1
    assert json.loads(runtime.run("state", cid, check=True).stdout)["status"] == "created"
    runtime.run("delete", "--force", cid, check=True)


def test_missing_container(runtime):
    for cmd in (["state", "nope"], ["start", "nope"], ["kill", "nope"], ["delete", "nope"]):
        p = runtime.run(*cmd)
        assert p.returncode == 1, cmd
        assert "does not exist" in p.stderr, (cmd, p.stderr)


def test_spec_writes_a_config_that_runs(runtime, workdir, busybox_rootfs):
    bundle = os.path.join(workdir, "specbundle")
    os.mkdir(bundle)
    runtime.run("spec", "--bundle", bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["process"]["args"] == ["sh"]
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    p = runtime.run("spec", "--bundle", bundle)
    assert p.returncode == 1 and "exists" in p.stderr
    import subprocess

    subprocess.run(["cp", "-a", busybox_rootfs, os.path.join(bundle, "rootfs")], check=True)
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["sh", "-c", "echo ok"]
    cfg["linux"]["cgroupsPath"] = f"/{unique('berthit-')}"
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    p = runtime.run("run", "--bundle", bundle, unique())
    assert p.returncode == 0, p.stderr
    assert p.stdout == "ok\n"


def test_state_carries_annotations(runtime, make_bundle):
    b = make_bundle("sleep", "100")
    b.config["annotations"] = {"org.example.key": "value", "io.berth.test": "1"}
    cid = unique()
    runtime.run("create", "--bundle", b.write(), cid, check=True)
    try:
        state = json.loads(runtime.run("state", cid, check=True).stdout)
        assert state["annotations"] == {"org.example.key": "value", "io.berth.test": "1"}
        assert state["ociVersion"]
        assert state["created"].endswith("Z")
    finally:
        runtime.run("delete", "--force", cid, check=True)


def test_list_table(runtime, make_bundle):
    b = make_bundle("sleep", "100")
    cid = unique()
    runtime.run("create", "--bundle", b.write(), cid, check=True)
    try:
        lines = runtime.run("list", check=True).stdout.splitlines()
        assert lines[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        row = lines[1].split()
        assert row[0] == cid and row[2] == "created" and row[3] == b.path and row[5] == "root"
    finally:
        runtime.run("delete", "--force", cid, check=True)
