"""Fixtures shared by unit and integration tests."""

import os
import shutil
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.environ.get("BERTH_TEST_CACHE", os.path.join(REPO, ".cache"))


def require_privileged(reason: str = "needs root") -> None:
    """Skip the test when not root, or fail it when BERTH_REQUIRE_PRIVILEGED=1."""
    if os.geteuid() == 0:
        return
    if os.environ.get("BERTH_REQUIRE_PRIVILEGED") == "1":
        pytest.fail(f"{reason}, and BERTH_REQUIRE_PRIVILEGED=1")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def busybox_rootfs() -> str:
    """A busybox root filesystem made once per machine from Debian's busybox-static
    (cached under .cache/). Tests must not write into it: copy it, or mount it
    read-only, or use `busybox_bundle`."""
    from berth.image.busybox import make_busybox_rootfs

    path = os.path.join(CACHE, "busybox-rootfs")
    if not os.path.isfile(os.path.join(path, "bin", "busybox")):
        shutil.rmtree(path, ignore_errors=True)
        make_busybox_rootfs(path)
    return path


@pytest.fixture
def python() -> str:
    return sys.executable
