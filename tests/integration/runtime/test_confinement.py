"""Confinement as the process sees it (a probe inside the container),
compared with the config: capabilities, seccomp, no_new_privs, user
namespace maps, masked and read-only paths; seccomp rules and actions; the
LSM, I/O priority and scheduler fields. Against berth-runtime and runc."""

import array
import json
import os
import socket
import threading

import pytest

from berth.runtime.confinement import (
    DEFAULT_CAPABILITIES,
    DEFAULT_READONLY_PATHS,
    default_seccomp_profile,
    masked_paths,
)
from tests.integration.conftest import unique
from tests.integration.runtime.probe import check_against_config, install_probe, parse


def docker_defaults(b, nnp: bool = True) -> None:
    """Docker's default confinement on a bundle."""
    caps = list(DEFAULT_CAPABILITIES)
    b.config["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
    b.config["process"]["noNewPrivileges"] = nnp
    b.config["linux"]["maskedPaths"] = masked_paths()
    b.config["linux"]["readonlyPaths"] = list(DEFAULT_READONLY_PATHS)
    b.config["linux"]["seccomp"] = default_seccomp_profile(caps)


def run_ok(runtime, b) -> str:
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode == 0, f"{runtime.name}: {p.stderr}"
    return p.stdout


def probe_run(runtime, b) -> dict:
    b.set_args(install_probe(b.rootfs), *b.config["linux"].get("maskedPaths", []))
    return parse(run_ok(runtime, b))


def test_probe_docker_defaults(runtime, make_bundle):
    b = make_bundle()
    docker_defaults(b)
    r = probe_run(runtime, b)
    check_against_config(r, b.config)
    assert r["Seccomp"] == 2 and r["NoNewPrivs"] == 1
    # /proc/keys is masked by the null device, /sys/firmware by an empty ro tmpfs
    assert r["paths"]["/proc/keys"] == "character special file 1:3"
    assert r["mounts"]["/sys/firmware"][0] == "tmpfs"
    assert r["mounts"]["/proc/sys"][1] >= {"ro"}


def test_probe_no_confinement_is_seen_as_such(runtime, make_bundle):
    # the probe itself can tell the difference: nothing masked, no filter, full caps
    b = make_bundle()
    b.config["process"]["noNewPrivileges"] = False
    b.config["linux"]["maskedPaths"] = []
    r = probe_run(runtime, b)
    check_against_config(r, b.config)
    assert r["Seccomp"] == 0 and r["NoNewPrivs"] == 0


def test_seccomp_without_no_new_privs_as_a_user(runtime, make_bundle):
    # without no_new_privs the filter needs CAP_SYS_ADMIN: loaded before the
    # capabilities are dropped, and it must not stop the rest of the setup
    b = make_bundle()
    docker_defaults(b, nnp=False)
    b.config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5]}
    r = probe_run(runtime, b)
    check_against_config(r, b.config)
    assert r["Seccomp"] == 2 and r["NoNewPrivs"] == 0


def test_probe_user_namespace_and_rootless_spec(runtime, workdir, busybox_rootfs):
    # `spec --rootless` maps the caller's uid to root: as root here, 0 -> 0 (size 1)
    import subprocess

    bundle = os.path.join(workdir, "rootless")
    os.mkdir(bundle)
    subprocess.run(["cp", "-a", busybox_rootfs, os.path.join(bundle, "rootfs")], check=True)
    runtime.run("spec", "--rootless", "--bundle", bundle, check=True)
    with open(os.path.join(bundle, "config.json")) as f:
        cfg = json.load(f)
    assert cfg["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.getuid(), "size": 1}]
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = [install_probe(os.path.join(bundle, "rootfs"))]
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    p = runtime.run("run", "--bundle", bundle, unique())
    assert p.returncode == 0, p.stderr
    r = parse(p.stdout)
    check_against_config(r, cfg)
    assert r["uid_map"] == [(0, os.getuid(), 1)]


def test_blocked_syscalls_get_eperm(runtime, make_bundle):
    script = ("unshare -U true 2>&1; echo userns=$?; mkdir -p /m; mount -t tmpfs none /m 2>&1; echo mount=$?;"
              " nice -n -5 true 2>&1; echo nice=$?")
    b = make_bundle("sh", "-c", script)
    docker_defaults(b)
    out = run_ok(runtime, b)
    assert "userns=1" in out and "unshare(0x10000000): Operation not permitted" in out
    assert "mount=" in out and "mount=0" not in out
    # the same container without the filter: the user namespace is allowed,
    # so the EPERM above came from the seccomp profile
    b.config["linux"].pop("seccomp")
    out = run_ok(runtime, b)
    assert "userns=0" in out


def test_seccomp_rules_errno_and_argument_comparisons(runtime, make_bundle):
    b = make_bundle("sh", "-c", "mkdir /x 2>&1; echo mkdir=$?; kill -0 $$; echo kill0=$?; "
                                "kill -USR2 $$ 2>&1; echo usr2=$?")
    b.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            # kill(pid, SIGUSR2 = 12) only
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 12, "op": "SCMP_CMP_EQ"}]},
        ],
    }
    out = run_ok(runtime, b)
    assert "Permission denied" in out and "mkdir=1" in out
    assert "kill0=0" in out
    assert "usr2=1" in out and "Operation not permitted" in out


def test_seccomp_kill_action_kills_the_process(runtime, make_bundle):
    b = make_bundle("sh", "-c", "exec mkdir /x; echo survived")
    b.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                    "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}]}
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode == 128 + 31  # SIGSYS
    assert "survived" not in p.stdout


def test_unknown_seccomp_action_fails_cleanly(runtime, make_bundle):
    b = make_bundle("true")
    b.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_NOPE"}
    cid = unique()
    p = runtime.run("run", "--bundle", b.write(), cid)
    assert p.returncode == 1
    if runtime.name == "berth":
        assert "unknown seccomp action 'SCMP_ACT_NOPE'" in p.stderr
    assert not os.path.isdir(os.path.join(runtime.root, cid))


def _serve_listener(path: str, got: dict) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def serve() -> None:
        srv.settimeout(20)
        try:
            conn, _ = srv.accept()
            fds = array.array("i")
            msg, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4 * fds.itemsize))
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(data[: len(data) - len(data) % fds.itemsize])
            got["msg"] = json.loads(msg)
            got["fds"] = list(fds)
            # no one answers: closing the listener fails the pending call with ENOSYS
            for fd in fds:
                os.close(fd)
            conn.close()
        finally:
            srv.close()

    t = threading.Thread(target=serve)
    t.start()
    return t


def test_seccomp_notify_sends_the_listener(runtime, make_bundle, workdir):
    b = make_bundle("sh", "-c", "mkdir /x 2>&1; echo mkdir=$?")
    sock = os.path.join(workdir, "listener.sock")
    b.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": sock, "listenerMetadata": "meta-42",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    }
    got: dict = {}
    t = _serve_listener(sock, got)
    cid = unique()
    p = runtime.run("run", "--bundle", b.write(), cid)
    t.join()
    assert p.returncode == 0, p.stderr
    assert "mkdir=1" in p.stdout
    msg = got["msg"]
    assert len(got["fds"]) == 1
    assert msg["fds"] == ["seccompFd"]
    assert msg["metadata"] == "meta-42"
    assert msg["state"]["id"] == cid
    assert msg["pid"] > 1 and msg["state"]["pid"] == msg["pid"]


def test_apparmor_and_selinux_requested_on_a_host_without_them(runtime, make_bundle):
    # no LSM is enabled here: a requested profile is an error, never ignored
    if os.path.exists("/sys/module/apparmor") or os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("this host has an LSM enabled")
    for field, value in (("apparmorProfile", "docker-default"), ("selinuxLabel", "system_u:system_r:container_t:s0")):
        b = make_bundle("true")
        b.config["process"][field] = value
        cid = unique()
        p = runtime.run("run", "--bundle", b.write(), cid)
        assert p.returncode == 1, (field, p.stdout)
        if runtime.name == "berth":
            assert "not enabled on this host" in p.stderr
        assert runtime.run("state", cid).returncode == 1


def test_io_priority_and_scheduler(runtime, make_bundle):
    from berth.linux import libc

    b = make_bundle("sleep", "100")
    b.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    b.config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    cid = unique()
    runtime.run("run", "-d", "--bundle", b.write(), cid, check=True)
    pid = json.loads(runtime.run("state", cid, check=True).stdout)["pid"]
    klass, _ = libc.ioprio_get(pid)
    policy = os.sched_getscheduler(pid)
    nice = os.getpriority(os.PRIO_PROCESS, pid)
    runtime.run("delete", "--force", cid, check=True)
    if runtime.name == "runc":
        # runc 1.1.5 predates both fields (runc 1.2 applies them)
        assert (klass, policy) != (3, os.SCHED_BATCH)
        return
    assert klass == 3
    assert policy == os.SCHED_BATCH
    assert nice == 7


def _userns(b, uid_maps: list[dict]) -> None:
    b.config["linux"]["namespaces"].append({"type": "user"})
    b.config["linux"]["uidMappings"] = uid_maps
    b.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.mark.parametrize("maps", [
    [{"containerID": 0, "hostID": 100000, "size": 1000}, {"containerID": 500, "hostID": 300000, "size": 10}],
    [{"containerID": 0, "hostID": 100000, "size": 1000}, {"containerID": 2000, "hostID": 100500, "size": 10}],
    [{"containerID": 0, "hostID": 4294967000, "size": 65536}],
], ids=["inside-overlap", "outside-overlap", "exceeds"])
def test_bad_id_mappings_fail_cleanly(runtime, make_bundle, maps):
    b = make_bundle("true")
    _userns(b, maps)
    cid = unique()
    p = runtime.run("run", "--bundle", b.write(), cid)
    assert p.returncode != 0
    if runtime.name == "berth":
        assert "uidMappings" in p.stderr and ("overlaps" in p.stderr or "exceeds" in p.stderr), p.stderr
    assert not os.path.isdir(os.path.join(runtime.root, cid))


def _seccomp_filters(status: str) -> int:
    return int(next(x for x in status.splitlines() if x.startswith("Seccomp_filters:")).split()[1])


def test_default_profile_is_one_cacheable_filter_in_run_and_exec(runtime, make_bundle):
    # one filter, not a stack: the kernel's action cache answers for the
    # newest filter only, and a second one (a NOTIFY helper, exec loading
    # again on top of an inherited filter) would run on every uncached call
    b = make_bundle("sleep", "1000")
    docker_defaults(b)
    cid = unique()
    runtime.run("run", "-d", "--bundle", b.write(), cid, check=True)
    try:
        pid = json.loads(runtime.run("state", cid, check=True).stdout)["pid"]
        with open(f"/proc/{pid}/status") as f:
            assert _seccomp_filters(f.read()) == 1
        p = runtime.run("exec", cid, "cat", "/proc/self/status")
        assert p.returncode == 0, p.stderr
        assert _seccomp_filters(p.stdout) == 1
        # with CONFIG_SECCOMP_CACHE_DEBUG the kernel shows its cache: every
        # syscall berth's emulator says is cached must be ALLOW there
        # ("x86_64 39 ALLOW" / "ia32 20 FILTER" lines)
        cache_file = f"/proc/{pid}/seccomp_cache"
        if os.path.exists(cache_file) and os.uname().machine == "x86_64":
            from berth.linux import seccomp

            flt = seccomp.compile(b.config["linux"]["seccomp"])
            with open(cache_file) as f:
                rows = [line.split() for line in f]
            kernel = {int(nr) for arch, nr, what in rows if arch == "x86_64" and what == "ALLOW"}
            listed = [int(nr) for arch, nr, _ in rows if arch == "x86_64"]
            assert flt.kernel_cached(listed, 0xC000003E) == kernel
            assert seccomp.resolve_syscall("getpid") in kernel
    finally:
        runtime.run("delete", "--force", cid)
