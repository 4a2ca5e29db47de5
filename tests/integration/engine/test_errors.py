"""Bad input: Docker's messages and exit codes, and nothing created."""

import os

import pytest


def _nothing_created(b):
    assert b.out("ps", "-aq") == ""
    d = os.path.join(b.root, "containers")
    assert not os.path.isdir(d) or os.listdir(d) == []


def test_unknown_flag(berth):
    p = berth("run", "--bogus", "busybox", "true")
    assert p.returncode == 125
    assert "unknown flag: --bogus" in p.stderr
    assert "See 'berth run --help'." in p.stderr
    _nothing_created(berth)


@pytest.mark.parametrize("args, message", [
    (["-m", "12q"], 'invalid argument "12q" for "-m, --memory" flag: invalid size: \'12q\''),
    (["--cpus", "x"], 'invalid argument "x" for "--cpus" flag'),
    (["--ulimit", "nofile=10:5"], "ulimit soft limit must be less than or equal to hard limit"),
    (["--restart", "sometimes"], "invalid restart policy format: sometimes"),
    (["--cap-add", "NOT_A_CAP"], 'unknown capability: "CAP_NOT_A_CAP"'),
    (["--mount", "type=bind,source=/no/such/dir,target=/x"],
     "bind source path does not exist: /no/such/dir"),
    (["--name", "x y"], "Invalid container name (x y)"),
    (["-m", "1m"], "Minimum memory limit allowed is 6MB"),
    (["--runtime", "no-such-runtime"], "unknown or invalid runtime name: no-such-runtime"),
])
def test_bad_values_exit_125(berth, args, message):
    p = berth("run", "--rm", *args, "busybox", "true")
    assert p.returncode == 125, p.stderr
    assert message in p.stderr
    assert p.stderr.startswith("berth: Error response from daemon: ")
    _nothing_created(berth)


def test_missing_image(berth):
    p = berth("run", "--pull", "never", "no-such-image", "true")
    assert p.returncode == 125
    assert "No such image: no-such-image" in p.stderr
    p = berth("run", "127.0.0.1:1/nothing:here", "true", timeout=60)
    assert p.returncode == 125
    assert "Unable to find image '127.0.0.1:1/nothing:here' locally" in p.stderr
    _nothing_created(berth)


def test_name_conflict(berth):
    cid = berth.out("create", "--name", "taken", "busybox", "true").strip()
    p = berth("run", "--name", "taken", "busybox", "true")
    assert p.returncode == 125
    assert (f'Conflict. The container name "/taken" is already in use by container "{cid}". '
            "You have to remove (or rename) that container to be able to reuse that name."
            ) in p.stderr
    assert berth.out("ps", "-aq", "--no-trunc") == cid + "\n"
    assert os.listdir(os.path.join(berth.root, "containers")) == [cid]


def test_no_such_container(berth):
    for cmd in (["stop"], ["start"], ["rm"], ["kill"], ["logs"], ["wait"], ["pause"], ["top"],
                ["inspect"]):
        p = berth(*cmd, "ghost")
        assert p.returncode == 1, cmd
        assert "No such container: ghost" in p.stderr or "No such object: ghost" in p.stderr


def test_ambiguous_prefix_and_stopped_container_errors(berth):
    berth.out("create", "--name", "s1", "busybox", "true")
    p = berth("pause", "s1")
    assert p.returncode == 1 and "is not running" in p.stderr
    p = berth("unpause", "s1")
    assert p.returncode == 1 and "is not paused" in p.stderr


def test_no_command(bare_berth):
    p = bare_berth("run", "--rm", "busybox")  # bootstrapped on first use: Cmd is sh
    assert p.returncode == 0, p.stderr
    assert "Unable to find image 'busybox:latest' locally" in p.stderr
    p = bare_berth("run", "--rm", "--entrypoint", "", "busybox")
    assert p.returncode == 125
    assert "no command specified" in p.stderr.lower()
