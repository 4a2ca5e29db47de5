"""The event watcher's counting, against fake cgroup files (which epoll
cannot watch, so the watcher falls back to re-reading them)."""

import pytest

from berth.cgroups import CgroupV1, CgroupV2
from tests.unit.cgroups.fakes import v1_tree, v2_tree


def rewrite(path, text):
    with open(path, "w") as f:
        f.write(text)


def test_v2_counters_become_events(tmp_path):
    root = str(tmp_path / "cg")
    mgr = CgroupV2(v2_tree(root), root)
    with mgr.watch_events() as w:
        assert w.poll_interval == 0.25
        assert w.wait(0) == []
        rewrite(f"{mgr.path}/memory.events", "low 0\nhigh 0\nmax 9\noom 3\noom_kill 5\n")
        rewrite(f"{mgr.path}/pids.events", "max 8\n")
        assert w.wait(1) == [
            {"type": "oom", "count": 2, "total": 3},
            {"type": "oom_kill", "count": 3, "total": 5},
            {"type": "pids.max", "count": 1, "total": 8},
        ]
        rewrite(f"{mgr.path}/cgroup.events", "populated 0\nfrozen 0\n")
        assert w.wait(1) == [{"type": "empty"}]
        assert w.wait(0) == []


def test_v1_oom_kill_and_pids_counters(tmp_path):
    mgr = CgroupV1(v1_tree(str(tmp_path)))
    with mgr.watch_events() as w:
        # the eventfd was registered through cgroup.event_control
        with open(f"{mgr.paths['memory']}/cgroup.event_control") as f:
            efd, ofd = (int(x) for x in f.read().split())
        assert efd >= 0 and ofd >= 0
        rewrite(
            f"{mgr.paths['memory']}/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
        )
        rewrite(f"{mgr.paths['pids']}/pids.events", "max 9\n")
        assert w.wait(1) == [
            {"type": "oom_kill", "count": 2, "total": 4},
            {"type": "pids.max", "count": 2, "total": 9},
        ]


def test_deleted_cgroup_ends_the_watch(tmp_path):
    import shutil

    root = str(tmp_path / "cg")
    mgr = CgroupV2(v2_tree(root), root)
    w = mgr.watch_events()
    shutil.rmtree(mgr.path)
    assert w.wait(1) == [{"type": "deleted"}]
    assert w.closed and w.wait(0) == []
    w.close()


@pytest.mark.parametrize("timeout", [0, 0.1])
def test_wait_returns_empty_on_timeout(tmp_path, timeout):
    root = str(tmp_path / "cg")
    mgr = CgroupV2(v2_tree(root), root)
    with mgr.watch_events() as w:
        assert w.wait(timeout) == []
