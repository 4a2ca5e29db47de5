"""Fixtures for engine tests: a `berth` CLI with its own --root/--state
under the test's workdir (BERTH_ROOT/BERTH_STATE) and the busybox image
bootstrapped there."""

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.integration.conftest import REPO, unique

BERTH = os.path.join(REPO, ".venv", "bin", "berth")


def free_subnet() -> str:
    """A 10.124.N.0/24 that no host route covers (10.123.x is the network tests')."""
    import ipaddress
    import random

    from berth.network.netlink import host_routes

    routes = host_routes()
    for _ in range(500):
        net = ipaddress.IPv4Network(f"10.124.{random.randrange(1, 255)}.0/24")
        if not any(r.overlaps(net) for r in routes):
            return str(net)
    raise RuntimeError("no free 10.124.x.0/24")


class Berth:
    def __init__(self, root: str, state: str, runtime: str = "berth") -> None:
        self.root = root
        self.state = state
        self.runtime = runtime
        # the monitor zygote leaves 0.1 s after its last monitor (1 s by
        # default): the leak check after each test waits for it. Containers
        # join the default bridge network unless told otherwise: each test's
        # engine gets its own bridge name and subnet
        self.env = {**os.environ, "BERTH_ROOT": root, "BERTH_STATE": state,
                    "BERTH_ZYGOTE_IDLE": "0.1", "BERTH_BRIDGE": unique("brt-d")[:13],
                    "BERTH_BRIDGE_SUBNET": free_subnet()}

    def __call__(self, *args: str, timeout: float = 60, input: bytes | None = None,
                 check: bool = False) -> subprocess.CompletedProcess:
        """Run `berth ARGS`; stdout/stderr through files (a container may hold
        a pipe open longer than the CLI lives)."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run([BERTH, *args], env=self.env, timeout=timeout, stdout=out,
                               stderr=err, input=input,
                               stdin=None if input is not None else subprocess.DEVNULL)
            out.seek(0)
            err.seek(0)
            res = subprocess.CompletedProcess(args, p.returncode,
                                              out.read().decode(errors="replace"),
                                              err.read().decode(errors="replace"))
        if check and res.returncode != 0:
            raise AssertionError(f"berth {' '.join(args)} exited {res.returncode}: "
                                 f"{res.stderr}{res.stdout}")
        return res

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        """`berth run` with this fixture's --runtime."""
        return self("run", "--runtime", self.runtime, *args, **kw)

    def out(self, *args: str, **kw) -> str:
        return self(*args, check=True, **kw).stdout

    def popen(self, *args: str, **kw) -> subprocess.Popen:
        return subprocess.Popen([BERTH, *args], env=self.env, **kw)

    def cleanup(self) -> None:
        ids = self("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            self("rm", "-f", *ids)


@pytest.fixture(scope="session")
def busybox_template(tmp_path_factory):
    """A root with busybox:latest bootstrapped once; each test copies it."""
    if os.geteuid() != 0:
        pytest.skip("engine tests need root")
    d = str(tmp_path_factory.mktemp("berth-template"))
    env = {**os.environ, "BERTH_ROOT": f"{d}/root", "BERTH_STATE": f"{d}/state"}
    subprocess.run([BERTH, "image", "bootstrap", "busybox"], env=env, check=True,
                   capture_output=True)
    # a consistent copy needs the WAL folded into the database file
    import sqlite3

    conn = sqlite3.connect(f"{d}/root/berth.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return f"{d}/root"


@pytest.fixture(scope="session")
def debian_template(tmp_path_factory):
    """A root holding debian:bookworm, imported once per session from a
    `debootstrap --variant=minbase bookworm` tarball made once per machine
    (tests/debian.py caches it under /var/cache/berth-tests)."""
    if os.geteuid() != 0:
        pytest.skip("engine tests need root")
    from tests.debian import debian_rootfs_tar

    try:
        tar = debian_rootfs_tar("bookworm", "minbase")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    d = str(tmp_path_factory.mktemp("berth-debian"))
    env = {**os.environ, "BERTH_ROOT": f"{d}/root", "BERTH_STATE": f"{d}/state"}
    subprocess.run([BERTH, "import", tar, "debian:bookworm"], env=env, check=True,
                   capture_output=True)
    import sqlite3

    conn = sqlite3.connect(f"{d}/root/berth.db")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return f"{d}/root"


@pytest.fixture
def debian(workdir, debian_template):
    """`berth` with a root holding debian:bookworm (no busybox)."""
    b = _make(workdir, debian_template, "berth")
    yield b
    b.cleanup()


@pytest.fixture(params=["berth", "runc"])
def debian_rt(request, workdir, debian_template):
    """`debian` whose `run` uses --runtime berth (in-process) and runc."""
    if request.param == "runc" and not shutil.which("runc"):
        pytest.skip("runc not installed")
    b = _make(workdir, debian_template, request.param)
    yield b
    b.cleanup()


def _make(workdir: str, template: str, runtime: str) -> Berth:
    root, state = f"{workdir}/root", f"{workdir}/state"
    # cp -a keeps the busybox image's ~270 hardlinks (copytree would make
    # each applet a 2 MB copy: half a gigabyte per test)
    subprocess.run(["cp", "-a", template, root], check=True)
    return Berth(root, state, runtime)


@pytest.fixture
def berth(workdir, busybox_template):
    b = _make(workdir, busybox_template, "berth")
    yield b
    b.cleanup()


@pytest.fixture(params=["berth", "runc"])
def berth_rt(request, workdir, busybox_template):
    """`berth` whose `run` uses --runtime berth (in-process) and runc."""
    if request.param == "runc" and not shutil.which("runc"):
        pytest.skip("runc not installed")
    b = _make(workdir, busybox_template, request.param)
    yield b
    b.cleanup()


@pytest.fixture
def bare_berth(workdir, privileged):
    """A root with no image at all."""
    b = Berth(f"{workdir}/root", f"{workdir}/state")
    yield b
    b.cleanup()
