"""Integration fixtures: privileged gate, leak check, runtimes under test.

Every integration test runs with `leak_check`: mounts, cgroups, network links,
named netns, nftables tables (and their rules) and processes are listed before
and after the test, and anything new afterwards fails the test (and is cleaned
up, so one leak does not fail the tests after it).
"""

import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from tests.conftest import REPO, require_privileged

BERTH_RUNTIME = os.path.join(REPO, ".venv", "bin", "berth-runtime")
CGROUP_ROOT = "/sys/fs/cgroup"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.privileged)


def _mounts() -> set[tuple[str, str]]:
    out = set()
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            out.add((parts[4], parts[2]))
    return out


def _cgroups() -> set[str]:
    out = set()
    for top in os.listdir(CGROUP_ROOT):
        base = os.path.join(CGROUP_ROOT, top)
        if not os.path.isdir(base) or os.path.islink(base):
            continue
        for dirpath, dirnames, _ in os.walk(base):
            depth = dirpath[len(base) :].count("/")
            if depth >= 4:
                dirnames[:] = []
            for d in dirnames:
                out.add(os.path.join(dirpath, d))
    return out


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _netns() -> set[str]:
    try:
        return set(os.listdir("/run/netns"))
    except FileNotFoundError:
        return set()


def _nft_tables() -> dict[str, str]:
    """Every nftables table (`family name`) and its rules (berth keeps its
    rules in tables of its own, so a rule left behind shows as a new table
    or a changed one)."""
    nft = shutil.which("nft") or "/usr/sbin/nft"
    if not os.path.exists(nft):
        return {}
    p = subprocess.run([nft, "-s", "list", "ruleset"], capture_output=True, text=True)
    out: dict[str, str] = {}
    name = ""
    for line in p.stdout.splitlines():
        if line.startswith("table "):
            name = line.split(None, 1)[1].rstrip(" {").strip()
            out[name] = ""
        elif name:
            out[name] += line + "\n"
    return out


def _processes_under(marker: str) -> dict[int, str]:
    """Processes whose root, cwd or command line lies under `marker`."""
    found = {}
    me = os.getpid()
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == me:
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            root = os.readlink(f"/proc/{pid}/root")
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                cwd = ""
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if state in ("Z", "X"):
            continue
        if marker in cmd or root.startswith(marker) or cwd.startswith(marker):
            found[pid] = cmd or root
    return found


def _children_of(ppid: int) -> dict[int, str]:
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                stat = f.read()
            rest = stat.rsplit(")", 1)[1].split()
            if int(rest[1]) == ppid and rest[0] not in ("Z", "X"):
                out[int(name)] = stat.split("(", 1)[1].rsplit(")", 1)[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


TEST_LOCK = "/run/berth-integration-tests.lock"


@pytest.fixture(scope="session", autouse=True)
def integration_lock():
    """One integration session at a time on a machine: the leak check lists
    host-wide mounts, cgroups and links, so a second session (or a benchmark
    taking the same lock with `flock -o`) would show up as a leak. (`-o`:
    without it flock(1) leaves the locked fd open in the command, and a
    monitor zygote started by the command would hold the lock after it.)"""
    if os.geteuid() != 0:
        yield
        return
    import fcntl

    fd = os.open(TEST_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.fixture
def privileged():
    require_privileged("integration tests need root (namespaces, mounts, cgroups)")


@pytest.fixture
def workdir(tmp_path_factory, privileged):
    """A private directory for one test, on a path that names the test run so
    the leak check can find anything left under it."""
    d = tmp_path_factory.mktemp("berthit")
    return str(d)


@pytest.fixture(autouse=True)
def leak_check(request):
    if "tests/integration" not in str(request.node.fspath) or os.geteuid() != 0:
        yield
        return
    mounts, cgroups, links, netns = _mounts(), _cgroups(), _links(), _netns()
    tables = _nft_tables()
    children = set(_children_of(os.getpid()))
    base = str(request.config._tmp_path_factory.getbasetemp())
    yield
    # a runtime's init may still be exiting; give the kernel a moment
    problems = []
    for _ in range(50):
        problems = []
        procs = _processes_under(base)
        kids = {p: c for p, c in _children_of(os.getpid()).items() if p not in children}
        if procs or kids:
            problems.append(f"processes: {sorted({**procs, **kids}.items())}")
        new_mounts = sorted(m for m in _mounts() - mounts if m[0] != "/")
        if new_mounts:
            problems.append(f"mounts: {new_mounts}")
        new_cg = sorted(_cgroups() - cgroups)
        if new_cg:
            problems.append(f"cgroups: {new_cg}")
        new_links = sorted(_links() - links)
        if new_links:
            problems.append(f"links: {new_links}")
        new_ns = sorted(_netns() - netns)
        if new_ns:
            problems.append(f"netns: {new_ns}")
        now = _nft_tables()
        new_tables = sorted(set(now) - set(tables))
        if new_tables:
            problems.append(f"nftables tables: {new_tables}")
        changed = sorted(t for t in tables if t in now and now[t] != tables[t])
        if changed:
            problems.append(f"nftables rules changed in: {changed}")
        if not problems:
            return
        time.sleep(0.05)
    _cleanup(base, mounts, cgroups, links, netns, children, tables)
    pytest.fail("leaked after test: " + "; ".join(problems))


def _cleanup(base, mounts, cgroups, links, netns, children, tables=frozenset()):
    for pid in list(_processes_under(base)) + [
        p for p in _children_of(os.getpid()) if p not in children
    ]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for target, _ in sorted(_mounts() - mounts, key=lambda m: -len(m[0])):
        subprocess.run(["umount", "-l", target], capture_output=True)
    time.sleep(0.1)
    for cg in sorted(_cgroups() - cgroups, key=len, reverse=True):
        try:
            os.rmdir(cg)
        except OSError:
            pass
    for link in _links() - links:
        subprocess.run(["ip", "link", "del", link], capture_output=True)
    for ns in _netns() - netns:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for table in set(_nft_tables()) - set(tables):
        subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)


class Runtime:
    """A runc-compatible runtime binary under test, with its own --root."""

    def __init__(self, name: str, argv0: list[str], root: str) -> None:
        self.name = name
        self.argv0 = argv0
        self.root = root

    def cmd(self, *args: str) -> list[str]:
        return [*self.argv0, "--root", self.root, *args]

    def run(self, *args: str, check: bool = False, timeout: float = 30, **kw):
        """Run a command; stdout and stderr are captured through files, not
        pipes, since a container started by create or run -d inherits them
        and would hold a pipe open."""
        import tempfile

        kw.setdefault("stdin", subprocess.DEVNULL)
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            rc = subprocess.run(
                self.cmd(*args), timeout=timeout, stdout=out, stderr=err, **kw
            ).returncode
            out.seek(0)
            err.seek(0)
            p = subprocess.CompletedProcess(
                self.cmd(*args),
                rc,
                out.read().decode(errors="replace"),
                err.read().decode(errors="replace"),
            )
        if check and p.returncode != 0:
            raise AssertionError(
                f"{self.name} {' '.join(args)} exited {p.returncode}: {p.stderr}{p.stdout}"
            )
        return p

    def cleanup(self) -> None:
        """Delete every container this runtime still knows (end of test)."""
        if not os.path.isdir(self.root):
            return
        for cid in os.listdir(self.root):
            self.run("delete", "--force", cid)


RUNTIMES = {
    "berth": lambda: [BERTH_RUNTIME],
    "runc": lambda: ["runc"],
}


@pytest.fixture(params=["berth", "runc"])
def runtime(request, workdir):
    """Each test using this runs against berth-runtime and against runc, holding
    both to one behaviour."""
    name = request.param
    if name == "runc" and not shutil.which("runc"):
        pytest.skip("runc not installed")
    rt = Runtime(name, RUNTIMES[name](), os.path.join(workdir, f"{name}-root"))
    yield rt
    rt.cleanup()


@pytest.fixture
def berth_runtime(workdir):
    rt = Runtime("berth", [BERTH_RUNTIME], os.path.join(workdir, "berth-root"))
    yield rt
    rt.cleanup()


def live_processes(match) -> list[int]:
    """The pids of live (not zombie) processes that `match(argv, comm)`
    accepts (argv a list of bytes, comm the bytes of /proc/PID/comm)."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            with open(f"/proc/{name}/comm", "rb") as f:
                comm = f.read().strip()
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if state != "Z" and match(argv, comm):
            out.append(int(name))
    return out


def until(cond, timeout: float = 10.0) -> None:
    """Wait until cond() is true (checked every 50 ms), or fail."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"
