"""The container's filesystem: mounts, devices, read-only root, masked paths,
pivot_root and --no-pivot, and mount destinations that try to escape."""

import os

from tests.integration.conftest import unique


def run_ok(runtime, bundle, *extra) -> str:
    p = runtime.run("run", *extra, "--bundle", bundle.write(), unique())
    assert p.returncode == 0, f"{runtime.name}: {p.stderr}"
    return p.stdout


def mounts_of(out: str) -> dict[str, tuple[str, set[str]]]:
    """/proc/mounts text -> destination -> (fstype, options)."""
    res = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 4:
            res[parts[1]] = (parts[2], set(parts[3].split(",")))
    return res


def test_default_mounts(runtime, make_bundle):
    b = make_bundle("cat", "/proc/mounts")
    m = mounts_of(run_ok(runtime, b))
    assert m["/proc"][0] == "proc"
    assert m["/dev"][0] == "tmpfs" and "nosuid" in m["/dev"][1]
    assert m["/dev/pts"][0] == "devpts"
    assert m["/dev/shm"][0] == "tmpfs" and {"nosuid", "noexec", "nodev"} <= m["/dev/shm"][1]
    assert m["/dev/mqueue"][0] == "mqueue"
    assert m["/sys"][0] == "sysfs" and "ro" in m["/sys"][1]
    # the container's own cgroups under /sys/fs/cgroup, read-only
    assert any(k.startswith("/sys/fs/cgroup") and "ro" in v[1] for k, v in m.items())
    # the host's filesystem is gone
    assert "/work" not in m


def test_bind_mounts_ro_rw_and_tmpfs(runtime, make_bundle, workdir):
    src = os.path.join(workdir, "share")
    os.mkdir(src)
    with open(os.path.join(src, "hello"), "w") as f:
        f.write("host file\n")
    b = make_bundle("sh", "-c", "cat /ro/hello; touch /ro/x 2>/dev/null && echo ro-writable; "
                    "echo new > /rw/new; cat /proc/mounts | grep -E ' /(ro|rw|scratch) '")
    b.config["mounts"] += [
        {"destination": "/ro", "type": "bind", "source": src, "options": ["rbind", "ro"]},
        {"destination": "/rw", "type": "none", "source": src, "options": ["bind", "rw", "nosuid"]},
        {"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=1m", "mode=700", "noexec"]},
    ]
    out = run_ok(runtime, b)
    assert out.startswith("host file\n")
    assert "ro-writable" not in out
    with open(os.path.join(src, "new")) as f:
        assert f.read() == "new\n"
    m = mounts_of(out.split("\n", 1)[1])
    assert "ro" in m["/ro"][1]
    assert "rw" in m["/rw"][1] and "nosuid" in m["/rw"][1]
    assert m["/scratch"][0] == "tmpfs" and "size=1024k" in m["/scratch"][1] and "noexec" in m["/scratch"][1]
    assert "mode=700" in m["/scratch"][1]


def test_bind_mount_of_a_file_creates_the_target(runtime, make_bundle, workdir):
    src = os.path.join(workdir, "greeting")
    with open(src, "w") as f:
        f.write("hi\n")
    b = make_bundle("cat", "/etc/deep/greeting")
    b.config["mounts"].append({"destination": "/etc/deep/greeting", "type": "bind", "source": src, "options": ["bind"]})
    assert run_ok(runtime, b) == "hi\n"


def test_default_devices(runtime, make_bundle):
    b = make_bundle("sh", "-c", "for d in null zero full random urandom tty; do stat -c '%n %t:%T %a' /dev/$d; done; "
                    "for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; "
                    "head -c 4 /dev/zero | od -An -tx1")
    out = run_ok(runtime, b).splitlines()
    assert out[:6] == ["/dev/null 1:3 666", "/dev/zero 1:5 666", "/dev/full 1:7 666",
                       "/dev/random 1:8 666", "/dev/urandom 1:9 666", "/dev/tty 5:0 666"]
    assert out[6:11] == ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2", "pts/ptmx"]
    assert out[11].split() == ["00", "00", "00", "00"]


def test_linux_devices(runtime, make_bundle):
    b = make_bundle("stat", "-c", "%n %F %t:%T %a %u:%g", "/dev/mynull", "/dev/sub/fifo")
    b.config["linux"]["devices"] = [
        {"path": "/dev/mynull", "type": "c", "major": 1, "minor": 3, "fileMode": 0o620, "uid": 7, "gid": 8},
        {"path": "/dev/sub/fifo", "type": "p", "fileMode": 0o600},
    ]
    out = run_ok(runtime, b).splitlines()
    assert out[0] == "/dev/mynull character special file 1:3 620 7:8"
    assert out[1].startswith("/dev/sub/fifo fifo")


def test_readonly_root(runtime, make_bundle):
    b = make_bundle("sh", "-c", "touch /x 2>/dev/null && echo writable || echo readonly; touch /dev/shm/ok && echo shm-ok")
    b.config["root"]["readonly"] = True
    assert run_ok(runtime, b) == "readonly\nshm-ok\n"


def test_masked_and_readonly_paths(runtime, make_bundle):
    b = make_bundle("sh", "-c", "cat /proc/kcore 2>/dev/null | wc -c; ls /sys/firmware | wc -l; "
                    "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo sys-writable || echo sys-ro")
    out = run_ok(runtime, b).split()
    assert out == ["0", "0", "sys-ro"]


def test_no_pivot(runtime, make_bundle):
    b = make_bundle("sh", "-c", "cat /proc/1/mountinfo | awk '$5==\"/\"{print $4}'; ls /")
    out = run_ok(runtime, b, "--no-pivot")
    assert "bin" in out.split()


def test_symlink_in_image_cannot_send_a_mount_to_the_host(runtime, make_bundle, workdir):
    """CVE-2021-30465 class: /evil -> /../../../../etc in the image; a bind
    mount on /evil/x lands inside the rootfs, never on the host's /etc."""
    src = os.path.join(workdir, "payload")
    os.mkdir(src)
    b = make_bundle("sh", "-c", "ls -d /etc/x && echo inside")
    os.symlink("/../../../../../../etc", os.path.join(b.rootfs, "evil"))
    b.config["mounts"].append({"destination": "/evil/x", "type": "bind", "source": src, "options": ["bind"]})
    def mountinfo() -> str:
        with open("/proc/self/mountinfo") as f:
            return f.read()

    before = mountinfo()
    out = run_ok(runtime, b)
    assert out == "/etc/x\ninside\n"
    assert not os.path.exists("/etc/x")
    assert mountinfo().count(" /etc") == before.count(" /etc")


def test_proc_as_a_symlink_is_refused(runtime, make_bundle):
    b = make_bundle("true")
    os.rmdir(os.path.join(b.rootfs, "proc"))
    os.symlink("/tmp", os.path.join(b.rootfs, "proc"))
    p = runtime.run("run", "--bundle", b.write(), unique())
    if runtime.name == "berth":
        assert p.returncode != 0
        assert "symlink" in p.stderr
    # nothing was mounted on the target of the link in either case
    assert not os.listdir(os.path.join(b.rootfs, "tmp"))


def test_rootfs_propagation(runtime, make_bundle):
    # (rslave cannot be told from private here: the host's own / is private)
    for prop, field in (("private", ""), ("rshared", "shared:")):
        b = make_bundle("sh", "-c", "awk '$5==\"/\"' /proc/self/mountinfo")
        b.config["linux"]["rootfsPropagation"] = prop
        out = run_ok(runtime, b)
        if field and runtime.name == "runc":
            continue  # runc 1.1.5 runs it, but leaves the new root private
        if field:
            assert field in out, (prop, out)
        else:
            assert "shared:" not in out and "master:" not in out, (prop, out)


def test_recursive_mount_attributes(runtime, make_bundle, workdir):
    """rro/rnoexec (mount_setattr with AT_RECURSIVE) reach the mounts under
    an rbind; plain ro stops at the top mount."""
    import subprocess

    src = os.path.join(workdir, "tree")
    sub = os.path.join(src, "sub")
    os.makedirs(sub)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "berth-test-sub", sub], check=True)
    try:
        b = make_bundle("sh", "-c", "for d in /rec /rec/sub /plain /plain/sub; do "
                        "touch $d/f 2>/dev/null && echo $d writable || echo $d read-only; done; "
                        "grep -E ' /(rec|plain)(/sub)? ' /proc/mounts")
        b.config["mounts"] += [
            {"destination": "/rec", "type": "bind", "source": src, "options": ["rbind", "rro", "rnoexec"]},
            {"destination": "/plain", "type": "bind", "source": src, "options": ["rbind", "ro"]},
        ]
        out = run_ok(runtime, b)
        lines = out.splitlines()
        assert lines[:4] == ["/rec read-only", "/rec/sub read-only", "/plain read-only", "/plain/sub writable"], out
        m = mounts_of("\n".join(lines[4:]))
        assert {"ro", "noexec"} <= m["/rec/sub"][1]
        assert "rw" in m["/plain/sub"][1]
    finally:
        subprocess.run(["umount", "-l", sub], check=False)


def test_unknown_recursive_option_is_mount_data(runtime, make_bundle):
    # "rfoo" is no recursive attribute: handed to the filesystem, which refuses it
    b = make_bundle("true")
    b.config["mounts"].append({"destination": "/x", "type": "tmpfs", "source": "tmpfs", "options": ["rfoo"]})
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode != 0


def test_id_mapped_bind_mount(runtime, make_bundle, workdir):
    """mounts[].uidMappings/gidMappings (runtime-spec 1.1): files of the
    source appear with the mapped owners; the host's files keep theirs."""
    if runtime.name == "runc":
        import pytest

        pytest.skip("runc 1.1.5 has no id-mapped mounts (runc 1.2 added them)")
    src = os.path.join(workdir, "idmapped")
    os.mkdir(src)
    with open(os.path.join(src, "f"), "w") as f:
        f.write("x")
    os.chown(os.path.join(src, "f"), 0, 0)
    os.chown(src, 7, 7)
    b = make_bundle("sh", "-c", "stat -c '%u:%g %n' /m/f /m; grep ' /m ' /proc/mounts")
    b.config["mounts"].append({
        "destination": "/m", "type": "bind", "source": src, "options": ["bind", "idmap"],
        "uidMappings": [{"containerID": 0, "hostID": 1234, "size": 10}],
        "gidMappings": [{"containerID": 0, "hostID": 4321, "size": 10}],
    })
    out = run_ok(runtime, b)
    lines = out.splitlines()
    assert lines[0] == "1234:4321 /m/f", out
    assert lines[1] == "1241:4328 /m", out
    assert "idmapped" in lines[2]
    st = os.stat(os.path.join(src, "f"))
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_id_mapped_mount_bad_input(runtime, make_bundle, workdir):
    if runtime.name == "runc":
        import pytest

        pytest.skip("runc 1.1.5 ignores mounts[].uidMappings (runc 1.2 added id-mapped mounts)")
    b = make_bundle("true")
    m = {"destination": "/m", "type": "bind", "source": workdir, "options": ["bind", "idmap"],
         "uidMappings": [{"containerID": 0, "hostID": 1234, "size": 1}]}
    b.config["mounts"].append(m)
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode != 0
    assert "uidMappings and gidMappings" in p.stderr, p.stderr
    m["gidMappings"] = m["uidMappings"]
    m["type"], m["options"] = "tmpfs", ["idmap"]
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode != 0
    assert "only supported on bind mounts" in p.stderr, p.stderr
