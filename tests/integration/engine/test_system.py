"""volume create/ls/inspect/rm/prune, container prune, info, version, port."""

import json
import os
import re


def test_volume_commands(berth):
    assert berth.out("volume", "create", "v1") == "v1\n"
    anon = berth.out("volume", "create").strip()
    assert re.fullmatch(r"[0-9a-f]{64}", anon)
    ls = berth.out("volume", "ls").splitlines()
    assert re.split(r"\s{2,}", ls[0]) == ["DRIVER", "VOLUME NAME"]
    assert sorted(re.split(r"\s+", ln)[1] for ln in ls[1:]) == sorted(["v1", anon])
    info = json.loads(berth.out("volume", "inspect", "v1"))[0]
    assert info["Name"] == "v1" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Mountpoint"] == os.path.join(berth.root, "volumes", "v1", "_data")
    berth.run("--name", "user", "-v", "v1:/v", "busybox", "sh", "-c", "echo x > /v/f",
              check=True)
    with open(os.path.join(info["Mountpoint"], "f")) as f:
        assert f.read() == "x\n"
    p = berth("volume", "rm", "v1")
    assert p.returncode == 1 and "volume is in use" in p.stderr
    assert berth.out("container", "prune", "-f").startswith("Deleted Containers:\n")
    prune = berth.out("volume", "prune", "-f")
    assert anon in prune and "v1" not in prune
    assert berth.out("volume", "rm", "v1") == "v1\n"
    assert berth.out("volume", "ls", "-q") == ""
    p = berth("volume", "inspect", "v1")
    assert p.returncode == 1 and "no such volume" in p.stderr


def test_anonymous_volume_removed_with_rm_v(berth):
    cid = berth.out("create", "-v", "/data", "busybox", "true").strip()
    mounts = json.loads(berth.out("inspect", "-f", "{{json .Mounts}}", cid))
    assert len(mounts) == 1 and mounts[0]["Type"] == "volume"
    assert mounts[0]["Destination"] == "/data"
    name = mounts[0]["Name"]
    assert berth.out("volume", "ls", "-q") == name + "\n"
    berth.out("rm", "-v", cid)
    assert berth.out("volume", "ls", "-q") == ""


def test_info_version_port(berth):
    berth.run("-d", "--name", "up", "busybox", "sleep", "100", check=True)
    assert berth.out("info", "--format", "{{.ContainersRunning}} {{.Images}}") == "1 1\n"
    info = berth.out("info")
    assert " Containers: 1\n  Running: 1\n" in info and "Cgroup Version:" in info
    assert re.fullmatch(r"\d+\.\d+\.\d+\n", berth.out("version", "--format",
                                                      "{{.Client.Version}}"))
    assert berth.out("port", "up") == ""


def test_roots_not_traversable_by_others(berth):
    """CVE-2021-41091: an unprivileged host user must not reach a container's
    rootfs (a setuid binary in it) through the data root."""
    berth.run("-d", "--name", "perm", "busybox", "sleep", "100", check=True)
    for d in (berth.root, berth.state):
        assert os.stat(d).st_mode & 0o077 == 0, oct(os.stat(d).st_mode)
    # the zygote's socket sits in a 0700 directory (never an abstract socket)
    monitor_dir = os.path.join(berth.state, "monitor")
    assert os.stat(monitor_dir).st_mode & 0o077 == 0
    with open("/proc/net/unix") as f:
        assert "@" + berth.state not in f.read()


def test_events(berth):
    import subprocess
    import time

    follower = berth.popen("events", "--filter", "event=die", "--format",
                           "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}",
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        berth.run("--name", "evt", "-l", "team=a", "busybox", "sh", "-c", "exit 4")
        berth.out("rm", "evt")
        deadline = time.monotonic() + 10
        line = b""
        os.set_blocking(follower.stdout.fileno(), False)
        while time.monotonic() < deadline and not line.endswith(b"\n"):
            line += follower.stdout.read() or b""
            time.sleep(0.05)
        assert line == b"die evt 4\n"
    finally:
        follower.kill()
        follower.wait()
    out = berth.out("events", "--since", "1m", "--until", "0s", "--filter", "container=evt",
                    "--format", "{{.Action}}")
    assert out.split() == ["create", "start", "die", "destroy"]
    out = berth.out("events", "--since", "1m", "--until", "0s", "--filter", "label=team=a")
    assert re.search(r"^\d{4}-\d\d-\d\dT[\d:.]+Z container create [0-9a-f]{64} \(image=busybox, "
                     r"name=evt, team=a\)$", out.splitlines()[0]), out


def test_system_df_and_prune(berth):
    berth.run("--name", "gone", "busybox", "true", check=True)
    berth.run("-d", "--name", "kept", "busybox", "sleep", "100", check=True)
    df = berth.out("system", "df").splitlines()
    assert re.split(r"\s{2,}", df[0]) == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert re.split(r"\s{2,}", df[1])[:3] == ["Images", "1", "1"]
    assert re.split(r"\s{2,}", df[2])[:3] == ["Containers", "2", "1"]
    out = berth.out("system", "prune", "-f", "-a")
    gone = berth.out("inspect", "-f", "{{.Id}}", "kept")
    assert out.startswith("Deleted Containers:\n") and gone.strip() not in out
    # the image is used by a container: kept even with -a
    assert berth.out("ps", "-a", "--format", "{{.Names}}") == "kept\n"
    assert "busybox" in berth.out("images")
