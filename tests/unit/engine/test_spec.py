"""Image config + options -> OCI config, users from the image's files."""

import os

import pytest

from berth.engine import names, spec
from berth.errors import InvalidArgumentError, NotFoundError
from berth.runtime.confinement import DEFAULT_CAPABILITIES


@pytest.fixture
def rootfs(tmp_path):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                "app:x:1000:1001:app:/home/app:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\napp:x:1001:\nextra:x:2000:app,other\n")
    return str(tmp_path)


def test_resolve_user(rootfs):
    assert spec.resolve_user(rootfs, "") == {"uid": 0, "gid": 0}
    assert spec.resolve_user(rootfs, "app") == {"uid": 1000, "gid": 1001,
                                                "additionalGids": [2000]}
    # a named group replaces the supplementary groups too, as runc's GetExecUser
    assert spec.resolve_user(rootfs, "app:extra") == {"uid": 1000, "gid": 2000}
    assert spec.resolve_user(rootfs, "app:app") == {"uid": 1000, "gid": 1001}
    assert spec.resolve_user(rootfs, "1000") == {"uid": 1000, "gid": 1001,
                                                 "additionalGids": [2000]}
    assert spec.resolve_user(rootfs, "7:8") == {"uid": 7, "gid": 8}
    with pytest.raises(NotFoundError, match="unable to find user nobody"):
        spec.resolve_user(rootfs, "nobody")
    with pytest.raises(NotFoundError, match="unable to find group nogroup"):
        spec.resolve_user(rootfs, "app:nogroup")


def test_passwd_symlink_cannot_leave_the_rootfs(tmp_path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    outside = tmp_path / "outside-passwd"
    outside.write_text("evil:x:0:0::/:/bin/sh\n")
    os.symlink(str(outside), root / "etc" / "passwd")
    with pytest.raises(NotFoundError):
        spec.resolve_user(str(root), "evil")


def test_capabilities():
    assert spec.capabilities([], [], False) == DEFAULT_CAPABILITIES
    caps = spec.capabilities(["sys_admin"], ["NET_RAW", "CAP_KILL"], False)
    assert "CAP_SYS_ADMIN" in caps and "CAP_NET_RAW" not in caps and "CAP_KILL" not in caps
    assert spec.capabilities(["NET_ADMIN"], ["ALL"], False) == ["CAP_NET_ADMIN"]
    with pytest.raises(InvalidArgumentError):
        spec.capabilities(["NOPE"], [], False)


def test_build(rootfs):
    cid = names.new_id()
    config = {"Hostname": "h", "User": "app", "Env": ["A=1"], "Cmd": ["sh"],
              "Entrypoint": ["/init"], "WorkingDir": "/w", "Tty": False}
    hc = {"Memory": 64 << 20, "NanoCpus": 1_500_000_000, "PidsLimit": 10,
          "Ulimits": [{"Name": "nofile", "Soft": 10, "Hard": 20}], "ReadonlyRootfs": True,
          "Tmpfs": {"/run": "size=1m"}, "NetworkMode": "none"}
    etc = {k: f"/b/{k}" for k in ("hostname", "hosts", "resolv.conf")}
    cfg = spec.build(cid, config, hc, rootfs, etc, [], seccomp_profile={"defaultAction": "x"})
    p = cfg["process"]
    assert p["args"] == ["/init", "sh"] and p["cwd"] == "/w"
    assert p["env"][:3] == ["HOSTNAME=h", f"PATH={spec.DEFAULT_PATH}", "A=1"]
    assert p["user"]["uid"] == 1000 and p["capabilities"]["effective"] == []
    assert p["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]
    assert cfg["root"] == {"path": "rootfs", "readonly": True}
    res = cfg["linux"]["resources"]
    assert res["memory"] == {"limit": 64 << 20, "swap": 128 << 20}
    assert res["cpu"] == {"period": 100000, "quota": 150000}
    assert res["pids"] == {"limit": 10}
    assert cfg["linux"]["seccomp"] == {"defaultAction": "x"}
    assert cfg["linux"]["cgroupsPath"] == f"/berth/{cid}"
    dests = [m["destination"] for m in cfg["mounts"]]
    assert {"/proc", "/dev", "/sys", "/etc/hosts", "/etc/hostname", "/etc/resolv.conf",
            "/run"} <= set(dests)
    assert {"type": "network"} in cfg["linux"]["namespaces"]
    priv = spec.build(cid, config, {**hc, "Privileged": True, "NetworkMode": "host"}, rootfs,
                      etc, [])
    assert "seccomp" not in priv["linux"] and "maskedPaths" not in priv["linux"]
    assert {"type": "network"} not in priv["linux"]["namespaces"]


def test_names():
    cid = names.new_id()
    assert len(cid) == 64 and int(cid, 16) >= 0
    n = names.random_name()
    assert "_" in n and names.is_valid_name(n)
    assert not names.is_valid_name("a") and not names.is_valid_name("bad name")
    assert names.is_valid_name("/ok-name.1")
