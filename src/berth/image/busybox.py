"""The local default image's root filesystem, made from Debian's busybox-static.

No image can be downloaded on the machines berth is developed and tested on,
so the default `busybox` image is made locally: one static binary, a link per
applet, and the few files of /etc a program expects.
"""

import os
import shutil
import subprocess

from berth.errors import UnavailableError

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""

GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:root
www-data:x:33:
users:x:100:
nogroup:x:65534:
"""


def find_busybox() -> str:
    """Path of a statically linked busybox on the host."""
    for path in BUSYBOX_CANDIDATES:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise UnavailableError(
        "busybox not found: install Debian's busybox-static (apt-get install busybox-static)"
    )


def applets(busybox: str) -> list[str]:
    out = subprocess.run([busybox, "--list-full"], check=True, capture_output=True, text=True)
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def make_busybox_rootfs(dest: str) -> str:
    """Populate `dest` (created if missing, must be empty) with a busybox root
    filesystem and return `dest`. Built in a temporary sibling and renamed, so
    a failure leaves nothing half-made at `dest`."""
    busybox = find_busybox()
    dest = os.path.abspath(dest)
    if os.path.exists(dest) and os.listdir(dest):
        raise FileExistsError(f"make busybox rootfs in {dest}: directory not empty")
    parent = os.path.dirname(dest)
    os.makedirs(parent, exist_ok=True)
    tmp = f"{dest}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        for d in (
            "bin",
            "sbin",
            "usr/bin",
            "usr/sbin",
            "dev",
            "etc",
            "proc",
            "sys",
            "tmp",
            "root",
            "home",
            "var/log",
            "var/www",
            "run",
            "mnt",
        ):
            os.makedirs(f"{tmp}/{d}", exist_ok=True)
        os.chmod(f"{tmp}/tmp", 0o1777)
        os.chmod(f"{tmp}/root", 0o700)
        shutil.copy2(busybox, f"{tmp}/bin/busybox")
        os.chmod(f"{tmp}/bin/busybox", 0o755)
        for full in applets(busybox):
            full = full.lstrip("/")
            name = os.path.basename(full)
            if name == "busybox" or not name:
                continue
            target = f"{tmp}/{full}"
            if os.path.lexists(target):
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.link(f"{tmp}/bin/busybox", target)
        with open(f"{tmp}/etc/passwd", "w") as f:
            f.write(PASSWD)
        with open(f"{tmp}/etc/group", "w") as f:
            f.write(GROUP)
        with open(f"{tmp}/etc/hostname", "w") as f:
            f.write("busybox\n")
        for name in ("hosts", "resolv.conf"):
            open(f"{tmp}/etc/{name}", "w").close()
        if os.path.isdir(dest):
            os.rmdir(dest)
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
