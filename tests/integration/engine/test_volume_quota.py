"""Volume `size` quotas (`volume create -o size=4m`, `--mount ...,volume-opt=size=4m`)
on a filesystem with project quotas: a loop-mounted XFS or ext4
(`-O quota,project`) mounted with `prjquota`, made by the test, holding the
engine's --root. A container writing past the size gets EDQUOT on ext4 and
ENOSPC on XFS, which reports a project's hard limit as a full filesystem
(xfs_trans_dqresv), as it does under Docker. The kernel
must have XFS quota support (CONFIG_XFS_QUOTA) or, for ext4, the quota
format (CONFIG_QFMT_V2): where it cannot mount such a filesystem the test is
skipped, with the kernel's reason; `scripts/kernel-vm` runs this file in a
VM on Debian's kernel, which has both. On a filesystem without project quotas
the option is refused with Docker's message (test_volume_options.py)."""

import json
import os
import shutil
import subprocess

import pytest

from tests.integration.engine.conftest import Berth

MKFS = {
    # XFS wants 300 MB at least; sparse files, so only what is written is used
    "xfs": (["mkfs.xfs", "-q", "-f"], 320 << 20),
    "ext4": (["mkfs.ext4", "-q", "-F", "-O", "quota,project", "-I", "256"], 96 << 20),
}
# what a write past a project's hard limit gets
OVER_QUOTA = {"xfs": "No space left on device", "ext4": "Disk quota exceeded"}


def _dmesg_tail() -> str:
    p = subprocess.run(["dmesg"], capture_output=True, text=True)
    return " / ".join(p.stdout.strip().splitlines()[-2:])


@pytest.fixture(params=sorted(MKFS))
def quota_fs(request, workdir):
    """A filesystem with project quotas enforced, mounted under the test's
    workdir: (its mount point, the error of a write over quota). Unmounted,
    and its loop device detached, at the end, whatever happened."""
    kind = request.param
    mkfs, size = MKFS[kind]
    if not shutil.which(mkfs[0]):
        pytest.fail(f"{mkfs[0]} missing (scripts/install.sh installs it)")
    image, mnt = os.path.join(workdir, f"{kind}.img"), os.path.join(workdir, f"{kind}-mnt")
    with open(image, "wb") as f:
        f.truncate(size)
    subprocess.run([*mkfs, image], check=True, capture_output=True)
    os.mkdir(mnt)
    dev = subprocess.run(["losetup", "--find", "--show", image], check=True,
                         capture_output=True, text=True).stdout.strip()
    try:
        p = subprocess.run(["mount", "-t", kind, "-o", "prjquota", dev, mnt],
                           capture_output=True, text=True)
        if p.returncode != 0:
            pytest.skip(f"this kernel cannot mount {kind} with prjquota: {_dmesg_tail()}")
        try:
            yield mnt, OVER_QUOTA[kind]
        finally:
            if subprocess.run(["umount", mnt]).returncode != 0:
                # something berth left mounted under it (the leak check names
                # it): detach the whole tree so the loop device still goes
                subprocess.run(["umount", "-R", "-l", mnt], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)


@pytest.fixture
def quota_berth(quota_fs, workdir, busybox_template):
    mnt, over_quota = quota_fs
    root = os.path.join(mnt, "root")
    subprocess.run(["cp", "-a", busybox_template, root], check=True)
    b = Berth(root, os.path.join(workdir, "state"))
    b.over_quota = over_quota
    yield b
    b.cleanup()
    for name in b("volume", "ls", "-q").stdout.split():
        b("volume", "rm", "-f", name)


def _write_8m(b, *mount_args):
    return b.run("--rm", "--network", "none", *mount_args, "busybox", "sh", "-c",
                 "dd if=/dev/zero of=/data/f bs=1M count=8 && sync; r=$?; "
                 "stat -c %s /data/f; exit $r")


def test_volume_size_quota_stops_a_container_write(quota_berth):
    b = quota_berth
    assert b.out("volume", "create", "-o", "size=4m", "qv") == "qv\n"
    info = json.loads(b.out("volume", "inspect", "qv"))[0]
    assert info["Options"] == {"size": "4m"}
    p = _write_8m(b, "-v", "qv:/data")
    assert p.returncode != 0
    assert f"dd: error writing '/data/f': {b.over_quota}" in p.stderr, p.stderr
    assert int(p.stdout.split()[-1]) <= 4 << 20
    # the same through --mount's volume-opt, a volume of its own (its own project)
    p = _write_8m(b, "--mount", "type=volume,source=mq,target=/data,volume-opt=size=4m")
    assert p.returncode != 0 and b.over_quota in p.stderr, p.stderr
    assert json.loads(b.out("volume", "inspect", "mq"))[0]["Options"] == {"size": "4m"}
    # a volume without a size is not limited
    p = _write_8m(b, "-v", "free:/data")
    assert p.returncode == 0 and p.stdout.split()[-1] == str(8 << 20), p.stderr
    assert b.out("volume", "rm", "qv", "mq", "free") == "qv\nmq\nfree\n"


def test_volume_size_quota_ids_are_distinct(quota_berth):
    from berth.linux import quota

    b = quota_berth
    b.out("volume", "create", "-o", "size=4m", "a")
    b.out("volume", "create", "-o", "size=2m", "b")
    ids = {}
    for name, size in (("a", 4 << 20), ("b", 2 << 20)):
        data = os.path.join(b.root, "volumes", name, "_data")
        ids[name] = quota.project_id(data)
        assert quota.project_limit(data, ids[name])[0] == size
    assert ids["a"] and ids["b"] and ids["a"] != ids["b"]
    b.out("volume", "rm", "a")
    # the removed volume's project has no limit left
    assert quota.project_limit(os.path.join(b.root, "volumes"), ids["a"])[0] == 0
    b.out("volume", "rm", "b")
