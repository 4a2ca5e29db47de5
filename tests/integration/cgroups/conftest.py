"""A fresh, uniquely named top-level cgroup per test, removed after it."""

import os

import pytest

from berth.cgroups import detect_mode, open_manager
from berth.errors import UnavailableError
from tests.integration.conftest import unique

UNIFIED = "/sys/fs/cgroup/unified"


def _modes() -> list[str]:
    """The managers this host can run for real: on a hybrid host, also the
    pure v1 manager (the same v1 hierarchies without the unified one)."""
    try:
        host = detect_mode()
    except UnavailableError:
        return ["v1"]
    return ["hybrid", "v1"] if host == "hybrid" else [host]


@pytest.fixture(params=_modes())
def cg(request, privileged):
    """A created cgroup in every hierarchy the manager uses."""
    mgr = open_manager("/" + unique("berthit-"), "x", mode=request.param)
    assert mgr.mode == request.param
    mgr.create()
    yield mgr
    if mgr.exists():
        mgr.kill_all(9)
        mgr.destroy()


@pytest.fixture
def mode(cg):
    return cg.mode


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
