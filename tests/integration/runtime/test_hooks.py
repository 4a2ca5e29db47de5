"""OCI hooks: when each runs, what it gets on stdin, env and args, timeouts,
and what a failing hook does to the container."""

import json
import os
import stat

import pytest

from tests.integration.conftest import unique


def hook_script(workdir: str, name: str, body: str) -> str:
    path = os.path.join(workdir, name)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)
    return path


def test_every_hook_runs_with_state_on_stdin(runtime, make_bundle, workdir):
    log = os.path.join(workdir, "hooks.log")
    hook = hook_script(workdir, "hook", f'echo "$1 $HOOKVAR $(cat)" >> {log}')
    b = make_bundle("sh", "-c", "echo container ran")
    hooks = {}
    for kind in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"):
        hooks[kind] = [{"path": hook, "args": ["hook", kind], "env": ["HOOKVAR=v1"]}]
    # startContainer runs in the container: its path is the container's
    hooks["startContainer"] = [{"path": "/bin/sh", "args": ["sh", "-c", "cat > /dev/null; echo start-in-container > /tmp/started"]}]
    b.config["hooks"] = hooks
    cid = unique()
    p = runtime.run("run", "--bundle", b.write(), cid)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "container ran\n"
    with open(log) as f:
        lines = f.read().splitlines()
    kinds = [line.split(" ", 1)[0] for line in lines]
    assert kinds == ["prestart", "createRuntime", "createContainer", "poststart", "poststop"]
    for line in lines:
        kind, var, state = line.split(" ", 2)
        assert var == "v1"
        state = json.loads(state)
        assert state["id"] == cid
        assert state["bundle"] == b.path
        if kind != "poststop":
            assert state["pid"] > 0
        expected = {"prestart": "creating", "createRuntime": "creating",
                    "createContainer": "creating", "poststart": "running", "poststop": "stopped"}[kind]
        if runtime.name == "runc" and kind == "poststart":
            expected = "created"  # runc 1.1.5 reports the state before the start
        assert state["status"] == expected, kind
    with open(os.path.join(b.rootfs, "tmp", "started")) as f:
        assert f.read() == "start-in-container\n"


def test_failing_prestart_hook_fails_create_and_leaves_nothing(runtime, make_bundle, workdir):
    hook = hook_script(workdir, "fail", "exit 7")
    b = make_bundle("true")
    b.config["hooks"] = {"prestart": [{"path": hook}]}
    cid = unique()
    p = runtime.run("create", "--bundle", b.write(), cid)
    assert p.returncode != 0
    assert runtime.run("state", cid).returncode == 1
    assert os.listdir(runtime.root) == []


def test_hook_timeout(runtime, make_bundle, workdir):
    if runtime.name == "runc":
        pytest.skip("runc 1.1.5 waits for a createRuntime hook past its timeout")
    pidfile = os.path.join(workdir, "sleep.pid")
    hook = hook_script(workdir, "slow", f"sleep 30 & echo $! > {pidfile}; wait")
    b = make_bundle("true")
    b.config["hooks"] = {"createRuntime": [{"path": hook, "timeout": 1}]}
    cid = unique()
    p = runtime.run("create", "--bundle", b.write(), cid, timeout=20)
    assert p.returncode != 0
    if runtime.name == "berth":
        assert "timed out" in p.stderr
    assert os.listdir(runtime.root) == []
    # what the hook started is gone too
    with open(pidfile) as f:
        pid = int(f.read())
    from berth.runtime.state import proc_start_time

    assert proc_start_time(pid) is None  # gone, or a zombie


def test_failing_poststart_hook_is_only_a_warning(runtime, make_bundle, workdir):
    hook = hook_script(workdir, "fail", "exit 1")
    b = make_bundle("echo", "ran")
    b.config["hooks"] = {"poststop": [{"path": hook}]}
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode == 0, p.stderr
    assert p.stdout == "ran\n"
