"""A Debian root filesystem made with `debootstrap` from the machine's own apt
mirror, cached as a tarball so it is made once per machine.

The cache lives under /var/cache/berth-tests (env BERTH_TEST_DEBIAN_CACHE),
outside the work tree, so a fresh clone (CI) on the same machine reuses it.
The file name carries a digest of everything that shapes the result (suite,
variant, architecture, mirror, extra packages), so a change of any of them
makes a new tarball instead of reusing a wrong one. Two sessions asking at once
are serialised by an flock on a lock file beside it; the tarball appears under
its final name only when complete (write to a temporary name, fsync, rename).
"""

import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile

CACHE_DIR = os.environ.get("BERTH_TEST_DEBIAN_CACHE", "/var/cache/berth-tests")
DEFAULT_MIRROR = "http://deb.debian.org/debian"


def apt_mirror() -> str:
    """The first Debian archive URI in the machine's apt sources (deb822
    `.sources` files or one-line `sources.list` entries), not the security one."""
    files = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        files += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    for path in files:
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if words[0] == "URIs:":
                uris = words[1:]
            elif words[0] == "deb":
                uris = [w for w in words[1:] if "://" in w][:1]
            else:
                continue
            for uri in uris:
                if "debian" in uri and "security" not in uri:
                    return uri.rstrip("/")
    return DEFAULT_MIRROR


def _arch() -> str:
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def debian_rootfs_tar(suite: str = "bookworm", variant: str = "minbase",
                      include: tuple[str, ...] = (), mirror: str | None = None) -> str:
    """Path of a tarball of `debootstrap --variant=VARIANT SUITE` (made now if
    not cached). Raises FileNotFoundError when debootstrap is not installed."""
    mirror = mirror or apt_mirror()
    arch = _arch()
    key = hashlib.sha256(
        f"{suite}\0{variant}\0{arch}\0{mirror}\0{','.join(sorted(include))}".encode()
    ).hexdigest()[:12]
    path = os.path.join(CACHE_DIR, f"debian-{suite}-{variant}-{arch}-{key}.tar")
    if os.path.exists(path):
        return path
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None)
    if debootstrap is None:
        raise FileNotFoundError("debootstrap is not installed (scripts/install.sh installs it)")
    os.makedirs(CACHE_DIR, mode=0o755, exist_ok=True)
    fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if os.path.exists(path):  # made by whoever held the lock before us
            return path
        rootfs = tempfile.mkdtemp(dir=CACHE_DIR, prefix=".debootstrap-")
        tmp = f"{path}.{os.getpid()}.tmp"
        try:
            argv = [debootstrap, f"--variant={variant}", f"--arch={arch}"]
            if include:
                argv.append(f"--include={','.join(include)}")
            p = subprocess.run([*argv, suite, rootfs, mirror], capture_output=True, text=True)
            if p.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)} {suite} {rootfs} {mirror} failed "
                                   f"({p.returncode}): {p.stdout[-2000:]}{p.stderr[-2000:]}")
            # the apt lists and .deb files debootstrap leaves are 30+ MB nobody needs
            for sub in ("var/cache/apt/archives", "var/lib/apt/lists"):
                d = os.path.join(rootfs, sub)
                for name in os.listdir(d) if os.path.isdir(d) else ():
                    full = os.path.join(d, name)
                    if os.path.isfile(full) and not os.path.islink(full) and name != "lock":
                        os.unlink(full)
            subprocess.run(["tar", "-C", rootfs, "--numeric-owner", "--xattrs", "-cf", tmp,
                            "."], check=True)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.rename(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
            shutil.rmtree(rootfs, ignore_errors=True)
        return path
    finally:
        os.close(fd)
