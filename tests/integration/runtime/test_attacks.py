"""Containers trying known escapes, against berth-runtime and runc.

Each test is the attack, done from inside a container (or by a hostile
image/config), and what the host must still see afterwards. Where Debian's
runc 1.1.5 is vulnerable (the 2025 CVEs), the runc case is an expected
failure (strict xfail): the test catches runc and passes berth.

Covered elsewhere: blocked syscalls get EPERM under the default profile
(test_confinement.test_blocked_syscalls_get_eperm), CapInh/CapAmb are 0 in
run and exec, `exec --cap` included (test_confinement probes,
test_exec.test_exec_cap_never_reaches_inheritable_or_ambient).
"""

import array
import hashlib
import json
import os
import shutil
import socket
import subprocess
import time

import pytest

from berth.linux.capabilities import CAPS
from tests.integration.conftest import unique


def runtime_binary(runtime) -> str:
    """The file the runtime process executes: the interpreter for berth."""
    if runtime.name == "berth":
        from tests.integration.conftest import REPO

        return os.path.realpath(os.path.join(REPO, ".venv", "bin", "python3"))
    return os.path.realpath(shutil.which("runc"))


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def state_pid(runtime, cid: str) -> int:
    return json.loads(runtime.run("state", cid, check=True).stdout)["pid"]


def vulnerable_runc(runtime, request, cve: str) -> None:
    if runtime.name == "runc":
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"runc 1.1.5 is vulnerable to {cve}"))


# CVE-2019-5736 ---------------------------------------------------------------


def test_runtime_executable_never_runs_in_the_container(runtime, make_bundle):
    """The original attack: the container's process is the runtime itself
    (/proc/self/exe, or a script whose #! line names it); once it runs in the
    container, the container holds /proc/<pid>/exe to the host's binary."""
    binary = runtime_binary(runtime)
    before = sha256(binary)
    b = make_bundle("/proc/self/exe", "-c", "pass")
    with open(os.path.join(b.rootfs, "evil.sh"), "w") as f:
        f.write("#!/proc/self/exe\nprint(1)\n")
    os.chmod(os.path.join(b.rootfs, "evil.sh"), 0o755)
    p = runtime.run("run", "--bundle", b.write(), unique())
    if runtime.name == "berth":
        assert p.returncode == 1 and "CVE-2019-5736" in p.stderr, p.stderr
    b.set_args("sleep", "100")
    cid = unique()
    runtime.run("run", "-d", "--bundle", b.write(), cid, check=True)
    for args in (["/proc/self/exe", "-c", "pass"], ["/evil.sh"]):
        p = runtime.run("exec", cid, *args)
        if runtime.name == "berth":
            assert p.returncode == 1 and "CVE-2019-5736" in p.stderr, p.stderr
    runtime.run("delete", "--force", cid, check=True)
    # runc 1.1.5 runs a sealed memfd copy of itself instead; either way the
    # host's binary is what it was
    assert sha256(binary) == before


ATTACKER = r"""
i=0
while [ ! -e /stop ] && [ $i -lt 400 ]; do
  for d in /proc/[0-9]*; do
    n=${d#/proc/}
    [ "$n" = "$$" ] && continue
    r=$(stat -L -c '%d:%i' $d/exe 2>/dev/null) && echo "exe $n $r" >> /out.tmp
    dd if=$d/mem of=/dev/null bs=1 count=0 2>/dev/null && echo "mem $n" >> /out.tmp
  done
  sort -u /out.tmp > /out 2>/dev/null
  i=$((i+1))
  sleep 0.05
done
"""


def test_runtime_process_cannot_be_opened_from_inside(runtime, make_bundle):
    """A container sharing its pid namespace with a container being created
    (a pod) tries to open the runtime's process: its executable through
    /proc/<pid>/exe, and its memory through /proc/<pid>/mem (the access check
    ptrace attach makes). The attacker has every capability but
    CAP_SYS_PTRACE. A control process (the host's Python with the same
    capabilities, dumpable) shows the attacker would see a process left open.
    The kernel refuses for two reasons here, either enough: the init is
    non-dumpable, and it still holds capabilities the attacker lacks."""
    with open("/proc/self/status") as f:
        bnd = int(next(line.split()[1] for line in f if line.startswith("CapBnd:")), 16)
    caps = sorted(c for c, n in CAPS.items() if c != "CAP_SYS_PTRACE" and bnd >> n & 1)
    a = make_bundle("sh", "-c", ATTACKER)
    a.config["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    a.config["process"]["noNewPrivileges"] = False
    acid = unique("a")
    runtime.run("run", "-d", "--bundle", a.write(), acid, check=True)
    apid = state_pid(runtime, acid)
    b = make_bundle("sleep", "100")
    for ns in b.config["linux"]["namespaces"]:
        if ns["type"] == "pid":
            ns["path"] = f"/proc/{apid}/ns/pid"
    bcid = unique("b")
    control = None
    try:
        runtime.run("create", "--bundle", b.write(), bcid, check=True)
        init = state_pid(runtime, bcid)
        drop = ",".join(f"-{c[4:].lower()}" for c in CAPS if c not in caps)
        control = subprocess.Popen(
            ["nsenter", "-t", str(apid), "-p", "--", "setpriv", f"--bounding-set={drop}",
             os.path.realpath("/usr/bin/python3"), "-c", "import time; time.sleep(30)"])
        with open(f"/proc/{init}/status") as f:
            nspid = next(line.split()[-1] for line in f if line.startswith("NSpid:"))
        deadline = time.monotonic() + 15
        out = ""
        py = os.stat(os.path.realpath("/usr/bin/python3"))
        seen_control = False
        while time.monotonic() < deadline and not seen_control:
            time.sleep(0.1)
            try:
                with open(os.path.join(a.rootfs, "out")) as f:
                    out = f.read()
            except FileNotFoundError:
                continue
            seen_control = f"{py.st_dev}:{py.st_ino}" in out
        assert seen_control, f"control never seen: {out}"
        time.sleep(0.3)  # a few more rounds with the init in place
        with open(os.path.join(a.rootfs, "out")) as f:
            out = f.read()
    finally:
        open(os.path.join(a.rootfs, "stop"), "w").close()
        if control is not None:
            control.kill()
            control.wait()
        runtime.run("delete", "--force", bcid)
        runtime.run("delete", "--force", acid)
    target = os.stat(runtime_binary(runtime))
    lines = out.splitlines()
    assert f"exe {nspid} {target.st_dev}:{target.st_ino}" not in lines, out
    assert not any(line.startswith(f"exe {nspid} ") for line in lines if runtime.name == "berth"), out
    assert f"mem {nspid}" not in lines, out


# CVE-2024-21626 --------------------------------------------------------------


def _outside(out: str) -> bool:
    return "(unreachable)" in out or not out.startswith("/")


def test_cwd_through_a_leaked_fd(runtime, make_bundle):
    """process.cwd and exec --cwd = /proc/self/fd/N: a runtime fd left open
    (a host directory) would give the container a cwd outside its root."""
    b = make_bundle("sh", "-c", "readlink /proc/self/cwd")
    for n in range(3, 33):
        b.config["process"]["cwd"] = f"/proc/self/fd/{n}"
        p = runtime.run("run", "--bundle", b.write(), unique())
        assert p.returncode != 0 or not _outside(p.stdout), (n, p.stdout)
    b.config["process"]["cwd"] = "/"
    b.set_args("sleep", "100")
    cid = unique()
    runtime.run("run", "-d", "--bundle", b.write(), cid, check=True)
    for n in range(3, 33):
        p = runtime.run("exec", "--cwd", f"/proc/self/fd/{n}", cid, "readlink", "/proc/self/cwd")
        assert p.returncode != 0 or not _outside(p.stdout), (n, p.stdout)
    runtime.run("delete", "--force", cid, check=True)


def test_created_init_holds_only_its_own_fds(runtime, make_bundle, workdir):
    """In the created state (what a process exec'd into the container, or
    sharing its pid namespace, can reach) the init holds stdio, the exec FIFO
    and its sync channel; nothing of the host. Our own inheritable fds, a
    directory among them, must not get there."""
    b = make_bundle("true")
    cid = unique()
    d = os.open(workdir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        runtime.run("create", "--bundle", b.write(), cid, check=True, pass_fds=(d,))
    finally:
        os.close(d)
    pid = state_pid(runtime, cid)
    fds = {int(n): os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")}
    runtime.run("delete", "--force", cid, check=True)
    extra = {n: t for n, t in fds.items() if n > 2}
    fifo = [t for t in extra.values() if t.endswith("/exec.fifo")]
    assert len(fifo) == 1, fds
    others = [t for t in extra.values() if not t.endswith("/exec.fifo")]
    # anything else is a socket or pipe (runc: its sync pipes and Go's epoll), never a path
    assert all(t.startswith(("socket:", "pipe:", "anon_inode:")) for t in others), fds
    if runtime.name == "berth":
        assert len(others) == 1 and others[0].startswith("socket:"), fds


# CVE-2021-30465 class: mounts through symlinks -------------------------------


def test_symlink_in_the_image_cannot_point_a_bind_mount_at_the_host(runtime, make_bundle, workdir):
    src = os.path.join(workdir, "volume")
    os.mkdir(src)
    b = make_bundle("sh", "-c", "echo x > /mnt/abs/written-abs; echo y > /mnt/rel/written-rel; cat /etc/marker-*")
    os.makedirs(os.path.join(b.rootfs, "mnt"), exist_ok=True)
    os.symlink("/etc", os.path.join(b.rootfs, "mnt", "abs"))
    os.symlink("../../../../../../../../etc", os.path.join(b.rootfs, "mnt", "rel"))
    with open(os.path.join(src, "marker-volume"), "w") as f:
        f.write("from the volume\n")
    b.config["mounts"].append({"destination": "/mnt/abs", "type": "bind", "source": src, "options": ["rbind"]})
    b.config["mounts"].append({"destination": "/mnt/rel", "type": "bind", "source": src, "options": ["rbind"]})
    p = runtime.run("run", "--bundle", b.write(), unique())
    for name in ("written-abs", "written-rel", "marker-volume"):
        assert not os.path.exists(f"/etc/{name}")
    if p.returncode == 0:
        # resolved inside the root: the volume is the container's /etc
        assert p.stdout == "from the volume\n"
        assert sorted(os.listdir(src)) == ["marker-volume", "written-abs", "written-rel"]


@pytest.mark.parametrize("name", ["proc", "sys", "dev"])
def test_proc_sys_dev_planted_as_symlinks(runtime, make_bundle, name):
    """CVE-2019-19921 / CVE-2023-27561: /proc, /sys or /dev in the image is a
    symlink. It is refused, or the mount goes to a real directory: never
    where the link points."""
    b = make_bundle("sh", "-c", f"ls -A /evil{name}")
    root = b.rootfs
    os.mkdir(os.path.join(root, f"evil{name}"))
    shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    if os.path.lexists(os.path.join(root, name)):
        os.unlink(os.path.join(root, name))
    os.symlink(f"/evil{name}", os.path.join(root, name))
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode != 0 or p.stdout == "", p.stdout
    if runtime.name == "berth":
        assert p.returncode == 1 and "symlink" in p.stderr, p.stderr


def _no_dev_mount(b) -> None:
    """/dev from the image itself: no tmpfs over it (as with a rootfs that
    brings its own /dev), the setting the 2025 attacks need."""
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] != "/dev"]
    os.makedirs(os.path.join(b.rootfs, "dev", "pts"), exist_ok=True)


def test_dev_null_planted_as_a_symlink(runtime, make_bundle, request):
    """CVE-2025-31133: masking binds /dev/null over a masked path; if /dev/null
    is a symlink, a runtime that follows it binds the link's target there."""
    vulnerable_runc(runtime, request, "CVE-2025-31133")
    b = make_bundle("sh", "-c", "stat -c '%F %t:%T' /proc/keys; timeout 2 head -c 64 /proc/keys")
    _no_dev_mount(b)
    with open(os.path.join(b.rootfs, "etc", "target"), "w") as f:
        f.write("planted\n")
    null = os.path.join(b.rootfs, "dev", "null")
    if os.path.lexists(null):
        os.unlink(null)
    os.symlink("/etc/target", null)
    b.config["linux"]["maskedPaths"] = ["/proc/keys"]
    p = runtime.run("run", "--bundle", b.write(), unique())
    with open(os.path.join(b.rootfs, "etc", "target")) as f:
        assert f.read() == "planted\n", "the runtime wrote through the planted /dev/null"
    assert "planted" not in p.stdout
    assert p.returncode != 0 or p.stdout.startswith("character special file 1:3"), p.stdout
    if runtime.name == "berth":
        assert p.returncode == 1 and "/dev/null" in p.stderr, p.stderr


def test_dev_console_planted_as_a_symlink(runtime, make_bundle, request, workdir):
    """CVE-2025-52565: with a terminal, the runtime binds the pty over
    /dev/console; a planted symlink must not send that bind elsewhere."""
    vulnerable_runc(runtime, request, "CVE-2025-52565")
    b = make_bundle("sh", "-c", "stat -c %F /etc/target; stat -c %F /dev/console")
    _no_dev_mount(b)
    b.config["process"]["terminal"] = True
    b.config["linux"]["maskedPaths"] = []  # no /dev/null in this /dev
    dev = os.path.join(b.rootfs, "dev")
    for name, target in (("console", "/etc/target"), ("ptmx", "pts/ptmx")):
        if os.path.lexists(os.path.join(dev, name)):
            os.unlink(os.path.join(dev, name))
        os.symlink(target, os.path.join(dev, name))
    with open(os.path.join(b.rootfs, "etc", "target"), "w") as f:
        f.write("planted\n")
    path = os.path.join(workdir, "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(20)
    cid = unique()
    try:
        runtime.run("create", "--console-socket", path, "--bundle", b.write(), cid, check=True)
        conn, _ = server.accept()
        fds = array.array("i")
        _, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(data[: len(data) - len(data) % 4])
        conn.close()
        runtime.run("start", cid, check=True)
        out = b""
        while True:
            try:
                chunk = os.read(fds[0], 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        os.close(fds[0])
    finally:
        server.close()
        runtime.run("delete", "--force", cid)
    lines = out.decode().replace("\r", "").split("\n")
    assert lines[0] == "regular file", lines


# CVE-2019-16884 --------------------------------------------------------------


@pytest.mark.parametrize("mount", ["bind", "tmpfs"])
def test_mount_over_proc_from_a_non_procfs_source(runtime, make_bundle, workdir, mount):
    fake = os.path.join(workdir, "fakeproc")
    os.makedirs(os.path.join(fake, "self", "attr"))
    b = make_bundle("cat", "/proc/self/attr/exec")
    if mount == "bind":
        b.config["mounts"].append({"destination": "/proc", "type": "bind", "source": fake, "options": ["rbind"]})
    else:
        b.config["mounts"].append({"destination": "/proc/self/attr", "type": "tmpfs", "source": "tmpfs"})
    cid = unique()
    p = runtime.run("run", "--bundle", b.write(), cid)
    assert p.returncode != 0
    if runtime.name == "berth":
        assert "CVE-2019-16884" in p.stderr, p.stderr
    assert runtime.run("state", cid).returncode != 0
