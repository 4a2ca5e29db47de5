"""Namespaces made new or joined from a path, compared through /proc/<pid>/ns."""

import json
import os
import time

import pytest

from tests.integration.conftest import unique

NS_FILES = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt", "cgroup": "cgroup"}


def ns_links(pid: int | str) -> dict[str, str]:
    return {t: os.readlink(f"/proc/{pid}/ns/{f}") for t, f in NS_FILES.items()}


def running(runtime, make_bundle, *args, config=None):
    b = make_bundle(*args)
    if config:
        config(b.config)
    cid = unique()
    runtime.run("run", "-d", "--bundle", b.write(), cid, check=True)
    state = json.loads(runtime.run("state", cid, check=True).stdout)
    return cid, state["pid"]


def test_new_namespaces_differ_from_the_host(runtime, make_bundle):
    cid, pid = running(runtime, make_bundle, "sleep", "100")
    try:
        mine, theirs = ns_links("self"), ns_links(pid)
        for t in NS_FILES:
            assert mine[t] != theirs[t], t
    finally:
        runtime.run("delete", "-f", cid, check=True)


def test_joined_namespaces_are_the_same(runtime, make_bundle):
    cid, pid = running(runtime, make_bundle, "sleep", "100")
    try:
        def join(cfg):
            cfg["linux"]["namespaces"] = [
                {"type": "network", "path": f"/proc/{pid}/ns/net"},
                {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"},
                {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
                {"type": "pid"}, {"type": "mount"},
            ]
            cfg.pop("hostname", None)

        cid2, pid2 = running(runtime, make_bundle, "sleep", "100", config=join)
        try:
            a, b = ns_links(pid), ns_links(pid2)
            for t in ("network", "ipc", "uts"):
                assert a[t] == b[t], t
            for t in ("pid", "mount"):
                assert a[t] != b[t], t
            # the joined uts namespace carries the first container's hostname
            with open(f"/proc/{pid2}/root/etc/hostname") as f:
                assert f.read()
        finally:
            runtime.run("delete", "-f", cid2, check=True)
    finally:
        runtime.run("delete", "-f", cid, check=True)


def test_host_network_namespace_when_not_listed(runtime, make_bundle):
    def host_net(cfg):
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]

    cid, pid = running(runtime, make_bundle, "sleep", "100", config=host_net)
    try:
        assert ns_links(pid)["network"] == ns_links("self")["network"]
    finally:
        runtime.run("delete", "-f", cid, check=True)


def test_loopback_is_up_in_a_new_network_namespace(runtime, make_bundle):
    b = make_bundle("cat", "/sys/class/net/lo/operstate", "/sys/class/net/lo/flags")
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode == 0, p.stderr
    flags = int(p.stdout.split()[1], 16)
    assert flags & 1  # IFF_UP


def test_sysctl(runtime, make_bundle):
    b = make_bundle("cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmni")
    b.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmni": "1234"}
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1", "1234"]
    with open("/proc/sys/kernel/shmmni") as f:
        assert f.read().strip() != "1234"


def test_sysctl_not_namespaced_is_refused(runtime, make_bundle):
    b = make_bundle("true")
    b.config["linux"]["sysctl"] = {"kernel.panic": "1"}
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode != 0


def test_user_namespace_mapping(runtime, make_bundle):
    b = make_bundle("sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; stat -c '%u' /bin/busybox")
    b.config["linux"]["namespaces"].append({"type": "user"})
    b.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    b.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    # files owned by the mapped root, as an image unpacked for that mapping is
    os.system(f"chown -R 100000:100000 {b.rootfs}")
    # the mapped root must be able to reach the rootfs: pytest's temp dirs are 0700
    d = b.path
    while d != "/":
        os.chmod(d, os.stat(d).st_mode | 0o011)
        d = os.path.dirname(d)
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
    b.config["mounts"].append({"destination": "/sys", "type": "none", "source": "/sys",
                               "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]})
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode == 0, p.stderr
    lines = [line.split() for line in p.stdout.splitlines()]
    assert lines[0] == ["0", "100000", "65536"]
    assert lines[1] == ["0", "100000", "65536"]
    assert lines[2] == ["0"] and lines[3] == ["0"]


def test_cgroup_namespace_root(runtime, make_bundle):
    b = make_bundle("cat", "/proc/self/cgroup")
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode == 0, p.stderr
    # in its own cgroup namespace the container sees its cgroup as the root
    for line in p.stdout.splitlines():
        assert line.rsplit(":", 1)[1] == "/", line


@pytest.mark.parametrize("ns", ["time"])
def test_time_namespace_offsets(runtime, make_bundle, ns):
    if runtime.name == "runc":
        pytest.skip("runc 1.1.5 does not know the time namespace")
    b = make_bundle("cat", "/proc/uptime")
    b.config["linux"]["namespaces"].append({"type": "time"})
    b.config["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0}}
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode == 0, p.stderr
    inside = float(p.stdout.split()[0])
    with open("/proc/uptime") as f:
        outside = float(f.read().split()[0])
    assert inside - outside > 86400 * 364
    time.sleep(0)
