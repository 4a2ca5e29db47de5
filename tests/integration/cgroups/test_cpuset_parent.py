"""v1 cpuset: a new cgroup is empty (it takes no process) until its cpus and
mems are set; berth copies them down from the parent. The parent may itself
have been made a moment ago by another container's create, which fills it
in just after: a child made meanwhile must still get the host's values."""

import glob
import os

import pytest

from berth.cgroups import fs, open_manager
from tests.integration.cgroups.helpers import Child
from tests.integration.conftest import unique

CPUSET = "/sys/fs/cgroup/cpuset"


def test_a_child_under_a_parent_not_yet_filled_in(privileged):
    if not os.path.isfile(f"{CPUSET}/cpuset.cpus"):
        pytest.skip("no v1 cpuset hierarchy")
    top = "/" + unique("berthit-")
    os.mkdir(CPUSET + top)  # as another create has just made it: empty
    assert fs.read(CPUSET + top, "cpuset.cpus") == ""
    mgr = open_manager(f"{top}/child", "x", mode="v1")
    try:
        mgr.create()
        for d in (CPUSET + top, f"{CPUSET}{top}/child"):
            for name in ("cpuset.cpus", "cpuset.mems"):
                assert fs.read(d, name) == fs.read(CPUSET, name), (d, name)
        child = Child("print('in', flush=True)", mgr)  # ENOSPC with an empty cpuset
        child.go()
        assert child.line() == "in"
        child.p.wait(10)
    finally:
        if mgr.exists():
            mgr.kill_all(9)
            mgr.destroy()
        for d in glob.glob(f"/sys/fs/cgroup/*{top}"):
            os.rmdir(d)
