"""Fixtures for engine tests: a `berth` CLI with its own --root/--state
under the test's workdir (BERTH_ROOT/BERTH_STATE) and the busybox image
bootstrapped there."""

import os
import shutil
import subprocess
import tempfile

import pytest

from tests.integration.conftest import REPO

BERTH = os.path.join(REPO, ".venv", "bin", "berth")


class Berth:
    def __init__(self, root: str, state: str, runtime: str = "berth") -> None:
        self.root = root
        self.state = state
        self.runtime = runtime
        # the monitor zygote leaves 0.1 s after its last monitor (1 s by
        # default): the leak check after each test waits for it
        self.env = {**os.environ, "BERTH_ROOT": root, "BERTH_STATE": state,
                    "BERTH_ZYGOTE_IDLE": "0.1"}

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
