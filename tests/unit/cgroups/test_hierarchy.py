"""Mode detection and cgroups path rules."""

import os

import pytest

from berth.cgroups import CgroupV1, CgroupV2, detect_mode, hierarchy, open_manager
from berth.errors import InvalidArgumentError, NotImplementedYetError, UnavailableError


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "w").close()


def test_detect_mode(tmp_path):
    root = str(tmp_path)
    with pytest.raises(UnavailableError, match=r"no cgroup hierarchy"):
        detect_mode(root)
    os.mkdir(f"{root}/memory")
    assert detect_mode(root) == "v1"
    touch(f"{root}/unified/cgroup.controllers")
    assert detect_mode(root) == "hybrid"
    touch(f"{root}/cgroup.controllers")
    assert detect_mode(root) == "v2"


@pytest.mark.parametrize(
    ("path", "cid", "want"),
    [
        ("", "abc", "/berth/abc"),
        ("/a/b", "x", "/a/b"),
        ("rel/c", "x", "rel/c"),
    ],
)
def test_check_cgroups_path(path, cid, want):
    assert hierarchy.check_cgroups_path(path, cid) == want


@pytest.mark.parametrize("path", ["/a/../b", "..", "a/..", "/", "//./"])
def test_check_cgroups_path_refuses(path):
    with pytest.raises(InvalidArgumentError):
        hierarchy.check_cgroups_path(path, "x")


def test_systemd_paths_not_supported_yet():
    with pytest.raises(NotImplementedYetError, match=r"systemd"):
        hierarchy.check_cgroups_path("system.slice:berth:abc", "abc")


def test_bad_container_id_for_default_path():
    with pytest.raises(InvalidArgumentError):
        hierarchy.check_cgroups_path("", "../x")


def test_join():
    assert hierarchy.join("/sys/fs/cgroup/memory", "/me", "/a/b") == "/sys/fs/cgroup/memory/a/b"
    assert (
        hierarchy.join("/sys/fs/cgroup/memory", "/me/", "a/./b") == "/sys/fs/cgroup/memory/me/a/b"
    )
    assert hierarchy.join("/sys/fs/cgroup/memory", "/", "a") == "/sys/fs/cgroup/memory/a"


def fake_host(root, monkeypatch, own, v2=False, hybrid=False):
    if v2:
        touch(f"{root}/cgroup.controllers")
    else:
        for key in own:
            if key:
                os.makedirs(f"{root}/{key.removeprefix('name=')}", exist_ok=True)
        if hybrid:
            touch(f"{root}/unified/cgroup.controllers")
    monkeypatch.setattr(hierarchy, "own_cgroups", lambda pid="self": dict(own))


def test_open_manager_hybrid_absolute_and_relative(tmp_path, monkeypatch):
    root = str(tmp_path)
    own = {"cpu,cpuacct": "/", "memory": "/svc/x", "name=systemd": "/", "name=other": "/", "": "/u"}
    fake_host(root, monkeypatch, own, hybrid=True)
    mgr = open_manager("/berth/c1", "c1", root=root)
    assert isinstance(mgr, CgroupV1) and mgr.mode == "hybrid"
    assert mgr.host_paths() == {
        "cpu,cpuacct": f"{root}/cpu,cpuacct/berth/c1",
        "memory": f"{root}/memory/berth/c1",
        "name=systemd": f"{root}/systemd/berth/c1",
        "unified": f"{root}/unified/berth/c1",
    }
    rel = open_manager("sub/c1", "c1", root=root)
    assert rel.paths["memory"] == f"{root}/memory/svc/x/sub/c1"
    assert rel.paths["unified"] == f"{root}/unified/u/sub/c1"
    assert rel.paths["cpu,cpuacct"] == f"{root}/cpu,cpuacct/sub/c1"


def test_open_manager_v1_default_path(tmp_path, monkeypatch):
    root = str(tmp_path)
    fake_host(root, monkeypatch, {"memory": "/", "pids": "/"})
    mgr = open_manager("", "c9", root=root)
    assert mgr.mode == "v1"
    assert mgr.paths == {"memory": f"{root}/memory/berth/c9", "pids": f"{root}/pids/berth/c9"}


def test_open_manager_v2(tmp_path, monkeypatch):
    root = str(tmp_path)
    fake_host(root, monkeypatch, {"": "/user.slice/me"}, v2=True)
    mgr = open_manager("/berth/c1", "c1", root=root)
    assert isinstance(mgr, CgroupV2) and mgr.host_paths() == {"": f"{root}/berth/c1"}
    assert open_manager("c1", "c1", root=root).path == f"{root}/user.slice/me/c1"


def test_v2_create_enables_controllers_down_the_path(tmp_path):
    from tests.unit.cgroups.fakes import populate

    root = str(tmp_path)
    populate(root, {"cgroup.controllers": "cpu memory pids", "cgroup.subtree_control": "memory"})
    mgr = CgroupV2(f"{root}/c1", root)
    mgr.create()
    assert os.path.isdir(f"{root}/c1")
    with open(f"{root}/cgroup.subtree_control") as f:
        assert f.read() == "+cpu +pids"


def test_real_host_detection_is_cheap_and_consistent():
    if not os.path.isdir("/sys/fs/cgroup"):
        pytest.skip("no /sys/fs/cgroup")
    mode = detect_mode()
    assert mode in ("v1", "v2", "hybrid")
    mgr = open_manager("/berth-unit-not-created", "x")
    assert mgr.mode == mode and not mgr.exists()
