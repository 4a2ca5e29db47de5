"""`volume create -o/--opt` of the local driver: real tmpfs and bind mounts on
the volume's _data, made by the first start that uses it and removed with
the volume; bad options refused at create with Docker's messages."""

import json
import os
import subprocess

import pytest

TMPFS = ["-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=100m,uid=1000"]


def _data(berth, name):
    return os.path.join(berth.root, "volumes", name, "_data")


def _mounts_at(path):
    """The mountinfo lines whose mount point is `path`."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return [ln.split() for ln in f if ln.split()[4] == real]


def _mounts_under(root):
    real = os.path.realpath(root)
    with open("/proc/self/mountinfo") as f:
        return [ln.split()[4] for ln in f if ln.split()[4].startswith(real + "/")]


def test_tmpfs_volume_size_and_owner_seen_inside(berth):
    assert berth.out("volume", "create", *TMPFS, "tv") == "tv\n"
    info = json.loads(berth.out("volume", "inspect", "tv"))[0]
    assert list(info["Options"].items()) == [
        ("device", "tmpfs"), ("o", "size=100m,uid=1000"), ("type", "tmpfs")]
    assert _mounts_at(_data(berth, "tv")) == []  # mounted by a start, not by create
    out = berth.run("--rm", "--network", "none", "-v", "tv:/data", "busybox", "sh", "-c",
                    "df -k /data | tail -n 1; stat -c '%u %g' /data; stat -f -c %T /data",
                    check=True).stdout.splitlines()
    assert out[0].split()[:2] == ["tmpfs", "102400"], out
    assert out[1:] == ["1000 0", "tmpfs"]
    (line,) = _mounts_at(_data(berth, "tv"))
    assert line[line.index("-") + 1] == "tmpfs"
    assert berth.out("volume", "rm", "tv") == "tv\n"
    assert _mounts_at(_data(berth, "tv")) == []
    assert not os.path.exists(os.path.join(berth.root, "volumes", "tv"))


def test_two_containers_share_one_tmpfs_volume(berth):
    berth.out("volume", "create", *TMPFS, "shared")
    # both started at once: the volume's lock lets one of them mount it
    starts = [berth.popen("run", "-d", "--network", "none", "--name", n, "-v", "shared:/data",
                          "busybox", "sleep", "100", stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
              for n in ("c1", "c2")]
    errors = [p.communicate(timeout=60)[1] for p in starts]
    assert [p.returncode for p in starts] == [0, 0], errors
    assert len(_mounts_at(_data(berth, "shared"))) == 1
    berth.out("exec", "c1", "sh", "-c", "echo from-c1 > /data/f")
    assert berth.out("exec", "c2", "cat", "/data/f") == "from-c1\n"
    p = berth("volume", "rm", "shared")
    assert p.returncode == 1 and "volume is in use" in p.stderr
    assert len(_mounts_at(_data(berth, "shared"))) == 1
    berth.out("rm", "-f", "c1", "c2")
    # berth keeps it mounted while the volume exists (dockerd would unmount)
    assert berth.run("--rm", "--network", "none", "-v", "shared:/data", "busybox",
                     "cat", "/data/f", check=True).stdout == "from-c1\n"
    assert len(_mounts_at(_data(berth, "shared"))) == 1
    berth.out("volume", "rm", "shared")
    assert _mounts_at(_data(berth, "shared")) == []


def test_bind_volume(berth, workdir):
    host = os.path.join(workdir, "host")
    os.mkdir(host)
    with open(os.path.join(host, "hostfile"), "w") as f:
        f.write("from-host\n")
    berth.out("volume", "create", "--opt", "type=none", "--opt", "o=bind",
              "--opt", f"device={host}", "bv")
    berth.out("volume", "create", "--opt", "type=none", "--opt", "o=bind,ro",
              "--opt", f"device={host}", "robv")
    out = berth.run("--rm", "--network", "none", "-v", "bv:/d", "busybox", "sh", "-c",
                    "cat /d/hostfile; echo from-container > /d/back", check=True).stdout
    assert out == "from-host\n"
    with open(os.path.join(host, "back")) as f:
        assert f.read() == "from-container\n"
    p = berth.run("--rm", "--network", "none", "-v", "robv:/d", "busybox", "sh", "-c",
                  "cat /d/back; touch /d/x")
    assert p.returncode == 1 and p.stdout == "from-container\n"
    assert "Read-only file system" in p.stderr
    (line,) = _mounts_at(_data(berth, "robv"))
    assert "ro" in line[5].split(",")
    assert berth.out("volume", "rm", "bv", "robv") == "bv\nrobv\n"
    assert _mounts_under(berth.root) == []
    # removing the volume never deletes the bound directory's files
    assert sorted(os.listdir(host)) == ["back", "hostfile"]


@pytest.mark.parametrize("opts, message", [
    (["-o", "foo=bar"], 'invalid option: "foo"'),
    (["--opt", "type=tmpfs", "--opt", "foo=bar"], 'invalid option: "foo"'),
    (["-o", "type=tmpfs"], 'missing required option: "device"'),
    (["-o", "device=tmpfs"], 'missing required option: "type"'),
    (["-o", "o=size=1m"], 'missing required option: "device"'),
    (["-o", "o=bind", "-o", "device=/tmp"], 'missing required option: "type"'),
    (["-o", "o=bind", "-o", "type=none"], 'missing required option: "device"'),
    (["-o", "size=1g"], "quota size requested but no quota support"),
    (["-o", "size=lots"], "invalid size: 'lots'"),
])
def test_bad_options_refused_nothing_created(berth, opts, message):
    berth.out("volume", "create", "keep")
    p = berth("volume", "create", *opts, "v")
    assert p.returncode == 1
    assert p.stderr == f"Error response from daemon: create v: {message}\n"
    assert berth.out("volume", "ls", "-q") == "keep\n"
    assert os.listdir(os.path.join(berth.root, "volumes")) == ["keep"]
    berth.out("volume", "rm", "keep")


def test_missing_bind_device_fails_the_run(berth, workdir):
    device = os.path.join(workdir, "no-such-dir")
    berth.out("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={device}",
              "nb")
    data = _data(berth, "nb")
    p = berth.run("--rm", "--network", "none", "-v", "nb:/d", "busybox", "true")
    assert p.returncode == 125, p.stderr
    assert p.stderr == (
        f"berth: Error response from daemon: error while mounting volume '{data}': failed to "
        f"mount local volume: mount {device}:{data}, flags: 0x1000: no such file or directory\n")
    assert berth.out("ps", "-aq") == ""
    assert os.listdir(os.path.join(berth.root, "containers")) == []
    assert _mounts_under(berth.root) == []
    # without --rm the container stays created (as Docker's) and starts once
    # the device exists
    p = berth.run("--name", "later", "--network", "none", "-v", "nb:/d", "busybox", "cat",
                  "/d/f")
    assert p.returncode == 125 and "flags: 0x1000: no such file or directory" in p.stderr
    assert berth.out("ps", "-a", "--format", "{{.Names}} {{.Status}}") == "later Created\n"
    assert _mounts_under(berth.root) == []
    os.mkdir(device)
    with open(os.path.join(device, "f"), "w") as f:
        f.write("there\n")
    assert berth.out("start", "-a", "later") == "there\n"
    berth.out("rm", "later")
    assert berth.out("volume", "rm", "nb") == "nb\n"
    assert os.listdir(device) == ["f"]


def test_volume_prune_unmounts(berth):
    berth.out("volume", "create", *TMPFS, "pv")
    berth.run("--rm", "--network", "none", "-v", "pv:/data", "busybox", "sh", "-c",
              "echo x > /data/f", check=True)
    assert len(_mounts_at(_data(berth, "pv"))) == 1
    assert "pv\n" in berth.out("volume", "prune", "-a", "-f")
    assert berth.out("volume", "ls", "-q") == ""
    assert _mounts_under(berth.root) == []
