"""A fresh, uniquely named top-level cgroup per test, removed after it."""

import os

import pytest

from berth.cgroups import detect_mode, open_manager
from tests.integration.conftest import unique

UNIFIED = "/sys/fs/cgroup/unified"


@pytest.fixture
def mode(privileged):
    return detect_mode()


@pytest.fixture
def cg(privileged):
    """A created cgroup in every hierarchy of the host (v1/hybrid/v2)."""
    mgr = open_manager("/" + unique("berthit-"), "x")
    mgr.create()
    yield mgr
    if mgr.exists():
        mgr.kill_all(9)
        mgr.destroy()


@pytest.fixture
def unified_root_restored(privileged):
    """Put the unified root's cgroup.subtree_control back as it was: tests that
    enable a v2 controller (hugetlb here) must not leave it on."""
    path = f"{UNIFIED}/cgroup.subtree_control"
    if not os.path.exists(path):
        yield
        return
    with open(path) as f:
        before = set(f.read().split())
    yield
    with open(path) as f:
        after = set(f.read().split())
    for c in after - before:
        with open(path, "w") as f:
            f.write("-" + c)
