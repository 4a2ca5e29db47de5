"""One suite, run against every Snapshotter."""

import errno
import io
import os

import pytest

from berth.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError
from berth.image.layers import apply_layer
from berth.image.snapshots import (
    FS_IOC_GETFLAGS,
    FS_TOPDIR_FL,
    CopySnapshotter,
    OverlaySnapshotter,
    mark_topdir,
    mount_all,
    overlay_supported,
    unmount_all,
)
from tests.unit.image.test_layers import make_tar


@pytest.fixture(params=["overlay", "copy"])
def sn(request, workdir):
    if request.param == "overlay" and not overlay_supported():
        pytest.skip("no overlayfs")
    cls = OverlaySnapshotter if request.param == "overlay" else CopySnapshotter
    s = cls(os.path.join(workdir, "snapshots"), os.path.join(workdir, "berth.db"))
    yield s
    s.close()


@pytest.fixture
def mounted(workdir):
    targets = []

    def mount(mounts, name):
        target = os.path.join(workdir, name)
        os.makedirs(target, exist_ok=True)
        mount_all(mounts, target)
        targets.append(target)
        return target

    yield mount
    for t in reversed(targets):
        unmount_all(t)


def read(path):
    with open(path) as f:
        return f.read()


def layer(sn, key, parent, name, entries):
    sn.prepare(key, parent)
    target, mode = sn.apply_target(key)
    data, _ = make_tar(entries)
    apply_layer(target, io.BytesIO(data), mode=mode)
    sn.commit(name, key)


def build_two_layers(sn):
    layer(
        sn,
        "x1",
        "",
        "L1",
        [("etc/a", "file", {"data": b"a1"}), ("etc/b", "file"), ("opq/old", "file")],
    )
    layer(
        sn,
        "x2",
        "L1",
        "L2",
        [
            ("etc/a", "file", {"data": b"a2"}),
            ("etc/.wh.b", "file"),
            ("opq/.wh..wh..opq", "file"),
            ("opq/new", "file"),
        ],
    )


def test_layers_container_and_view(sn, mounted):
    build_two_layers(sn)
    assert [i.key for i in sn.walk()] == ["L1", "L2"]
    assert sn.stat("L2").parent == "L1" and sn.stat("L2").kind == "committed"

    root = mounted(sn.prepare("c1", "L2"), "rootfs")
    assert read(f"{root}/etc/a") == "a2"
    assert not os.path.exists(f"{root}/etc/b")
    assert os.listdir(f"{root}/opq") == ["new"]
    with open(f"{root}/etc/a", "w") as f:
        f.write("changed")
    os.unlink(f"{root}/opq/new")

    # a second container on the same image does not see the first one's changes
    root2 = mounted(sn.prepare("c2", "L2"), "rootfs2")
    assert read(f"{root2}/etc/a") == "a2"
    assert os.listdir(f"{root2}/opq") == ["new"]

    view = mounted(sn.view("v1", "L2"), "view")
    assert read(f"{view}/etc/a") == "a2"
    with pytest.raises(OSError) as exc:
        os.open(f"{view}/etc/new", os.O_WRONLY | os.O_CREAT)
    assert exc.value.errno == errno.EROFS

    view1 = mounted(sn.view("v2", "L1"), "view1")
    assert read(f"{view1}/etc/a") == "a1" and os.path.exists(f"{view1}/etc/b")

    with pytest.raises(InvalidArgumentError):
        sn.mounts("L1")
    assert sn.mounts("c1")[0].type in ("overlay", "bind")


def test_rules(sn):
    build_two_layers(sn)
    with pytest.raises(ConflictError, match="depends on it"):
        sn.remove("L1")
    with pytest.raises(AlreadyExistsError):
        sn.prepare("L2", "L1")
    sn.prepare("a", "L2")
    with pytest.raises(InvalidArgumentError, match="not committed"):
        sn.prepare("b", "a")
    with pytest.raises(AlreadyExistsError):
        sn.commit("L1", "a")
    with pytest.raises(NotFoundError):
        sn.prepare("c", "nope")
    sn.remove("a")
    sn.remove("L2")
    sn.remove("L1")
    assert sn.walk() == []
    assert os.listdir(sn.root) == []


def test_cleanup_orphans(sn):
    sn.prepare("a", "")
    os.makedirs(os.path.join(sn.root, "999", "fs"))
    assert sn.cleanup() == ["999"]
    assert sn.exists("a")


def tree(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("link", os.readlink(p))
            elif os.path.isdir(p):
                out[rel] = ("dir", st.st_mode, st.st_uid)
            else:
                with open(p, "rb") as f:
                    out[rel] = ("file", st.st_mode, st.st_uid, f.read())
    return out


def test_diff_of_container_reapplies_to_same_tree(sn, mounted, workdir):
    from berth.image.diff import write_diff

    build_two_layers(sn)
    layer(sn, "x3", "L2", "L3", [("gone/a", "file"), ("gone/b/c", "file"),
                                 ("keep/x", "file")])
    root = mounted(sn.prepare("c1", "L3"), "rootfs")
    with open(f"{root}/etc/a", "w") as f:
        f.write("changed in container")
    os.unlink(f"{root}/opq/new")
    import shutil

    shutil.rmtree(f"{root}/gone")
    os.makedirs(f"{root}/new/dir")
    with open(f"{root}/new/dir/file", "wb") as f:
        f.write(b"new")
    os.link(f"{root}/new/dir/file", f"{root}/new/hard")
    os.symlink("/etc/a", f"{root}/new/sym")
    os.chmod(f"{root}/keep/x", 0o600)
    os.chown(f"{root}/keep", 1000, 1000)
    path = os.path.join(workdir, "diff.tar")
    with open(path, "wb") as f:
        diff_id, size = write_diff(sn, "c1", f)
    assert size == os.path.getsize(path)
    sn.prepare("x4", "L3")
    target, mode = sn.apply_target("x4")
    with open(path, "rb") as f:
        assert apply_layer(target, f, mode=mode).diff_id == diff_id
    sn.commit("L4", "x4")
    view = mounted(sn.view("v4", "L4"), "view4")
    assert tree(view) == tree(root)
    assert "gone" not in tree(view) and tree(view)["new/sym"] == ("link", "/etc/a")


def test_long_layer_chain(sn, mounted):
    """More layers than fit in one page of absolute overlay lowerdir paths."""
    parent = ""
    for i in range(120):
        layer(sn, f"x{i}", parent, f"layer-with-a-long-name-{i:03d}",
              [(f"l{i}", "file", {"data": str(i).encode()})])
        parent = f"layer-with-a-long-name-{i:03d}"
    root = mounted(sn.prepare("c", parent), "rootfs")
    assert sorted(os.listdir(root)) == sorted(f"l{i}" for i in range(120))
    assert read(f"{root}/l7") == "7"
    with open(f"{root}/new", "w") as f:
        f.write("rw")
    view = mounted(sn.view("v", parent), "view")
    assert len(os.listdir(view)) == 120


def test_rebase_on_commit(sn, mounted):
    layer(sn, "x1", "", "L1", [("a", "file", {"data": b"1"})])
    sn.prepare("x2", "")
    target, mode = sn.apply_target("x2")
    data, _ = make_tar([("b", "file", {"data": b"2"}), (".wh.a", "file")])
    apply_layer(target, io.BytesIO(data), mode=mode)
    if not sn.can_rebase:
        with pytest.raises(InvalidArgumentError, match="cannot be rebased"):
            sn.commit("L2", "x2", "L1")
        return
    sn.commit("L2", "x2", "L1")
    assert sn.stat("L2").parent == "L1"
    root = mounted(sn.prepare("c", "L2"), "rootfs")
    assert os.listdir(root) == ["b"]


def _inode_flags(path):
    import fcntl

    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        buf = bytearray(4)
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        return int.from_bytes(buf, "little")
    finally:
        os.close(fd)


def test_snapshot_root_is_a_top_directory(sn):
    # snapshot directories are spread over block groups (ext4's Orlov), away
    # from where the last removed layer freed its inodes
    try:
        flags = _inode_flags(sn.root)
    except OSError as exc:
        if exc.errno in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL):
            pytest.skip(f"no inode flags on this filesystem: {exc}")
        raise
    assert flags & FS_TOPDIR_FL
    assert mark_topdir(sn.root)  # idempotent
    assert _inode_flags(sn.root) == flags


def test_mark_topdir_where_there_is_no_flag():
    assert mark_topdir("/proc") is False
    assert mark_topdir("/nonexistent/berth-test") is False


def test_snapshot_directories_renamed_into_place(sn):
    sn.prepare("a", "")
    target, _ = sn.apply_target("a")
    assert os.listdir(target) == []
    assert not [n for n in os.listdir(sn.root) if n.startswith(".new-")]
    os.makedirs(os.path.join(sn.root, ".new-crashed", "fs"))  # a crash before the rename
    assert sn.cleanup() == [".new-crashed"]
    assert sn.exists("a") and os.path.isdir(target)
