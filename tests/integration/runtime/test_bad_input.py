"""Bad input: a clear error, exit 1, and nothing left behind (no state
directory, and the autouse leak check: no mount, cgroup or process)."""

import json
import os

import pytest

from tests.integration.conftest import unique


def refused(runtime, bundle_path: str, *extra: str):
    cid = unique()
    p = runtime.run("run", *extra, "--bundle", bundle_path, cid)
    assert p.returncode == 1, (runtime.name, p.returncode, p.stdout, p.stderr)
    assert runtime.run("state", cid).returncode == 1
    assert not os.path.isdir(os.path.join(runtime.root, cid))
    return p.stderr


def test_malformed_json(runtime, make_bundle):
    b = make_bundle("true")
    b.write()
    with open(os.path.join(b.path, "config.json"), "w") as f:
        f.write('{"ociVersion": "1.2.0", "process": ')
    err = refused(runtime, b.path)
    if runtime.name == "berth":
        assert "config.json" in err and "JSON" in err


def test_missing_config(runtime, workdir):
    err = refused(runtime, workdir)
    assert "config.json" in err


def test_unknown_namespace_type(runtime, make_bundle):
    b = make_bundle("true")
    b.config["linux"]["namespaces"].append({"type": "pdi"})
    err = refused(runtime, b.write())
    if runtime.name == "berth":
        assert 'linux.namespaces[6].type: unknown namespace type' in err


def test_rootfs_that_does_not_exist(runtime, make_bundle):
    b = make_bundle("true")
    b.config["root"]["path"] = "no-such-rootfs"
    err = refused(runtime, b.write())
    assert "no-such-rootfs" in err


def test_mount_destination_escaping_the_rootfs(runtime, make_bundle, workdir):
    if runtime.name == "runc":
        pytest.skip("runc cleans the path and mounts inside the rootfs instead of refusing")
    b = make_bundle("true")
    b.config["mounts"].append({"destination": "/../../../../tmp/x", "type": "tmpfs", "source": "tmpfs"})
    err = refused(runtime, b.write())
    assert "escapes" in err


def test_missing_binary(runtime, make_bundle):
    b = make_bundle("/no/such/binary")
    err = refused(runtime, b.write())
    assert "/no/such/binary" in err
    b = make_bundle("nosuchcommand")
    err = refused(runtime, b.write())
    assert "executable file not found" in err


def test_cwd_that_is_a_file(runtime, make_bundle):
    b = make_bundle("true")
    b.config["process"]["cwd"] = "/etc/passwd"
    err = refused(runtime, b.write())
    assert "not a directory" in err


def test_bad_mount_source(runtime, make_bundle, workdir):
    b = make_bundle("true")
    b.config["mounts"].append({"destination": "/data", "type": "bind",
                               "source": os.path.join(workdir, "nope"), "options": ["bind"]})
    err = refused(runtime, b.write())
    assert "nope" in err


def test_bad_mount_type(runtime, make_bundle):
    b = make_bundle("true")
    b.config["mounts"].append({"destination": "/data", "type": "nosuchfs", "source": "x"})
    err = refused(runtime, b.write())
    if runtime.name == "berth":
        assert "/data" in err and "no such device" in err


def test_wrong_types_in_config(runtime, make_bundle):
    b = make_bundle("true")
    b.config["process"]["user"]["uid"] = "root"
    err = refused(runtime, b.write())
    if runtime.name == "berth":
        assert "process.user.uid" in err


def test_unknown_capability(runtime, make_bundle):
    b = make_bundle("true")
    b.config["process"]["capabilities"]["bounding"].append("CAP_NOPE")
    cid = unique()
    p = runtime.run("run", "--bundle", b.write(), cid)
    if runtime.name == "berth":
        assert p.returncode == 1
        assert "CAP_NOPE" in p.stderr
    assert not os.path.isdir(os.path.join(runtime.root, cid))


def test_invalid_container_id(runtime, make_bundle):
    b = make_bundle("true")
    for bad in ("a/b", "..", "a b"):
        p = runtime.run("run", "--bundle", b.write(), bad)
        assert p.returncode == 1, bad
        assert "invalid" in p.stderr.lower() or "format" in p.stderr.lower(), p.stderr
    assert not os.path.exists(runtime.root) or os.listdir(runtime.root) == []


def test_unknown_flag(runtime):
    p = runtime.run("run", "--no-such-flag", "x")
    assert p.returncode != 0
    assert "flag provided but not defined" in p.stderr


def test_log_file_in_json(runtime, workdir):
    log = os.path.join(workdir, "log.json")
    p = runtime.run("--log", log, "--log-format", "json", "state", "nope")
    assert p.returncode == 1
    with open(log) as f:
        entries = [json.loads(line) for line in f if line.strip()]
    assert entries[-1]["level"] == "error"
    assert "does not exist" in entries[-1]["msg"]
    assert "time" in entries[-1]
