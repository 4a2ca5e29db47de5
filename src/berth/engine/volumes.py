"""Named volumes (the local driver) and the translation of a container's
mounts (bind, volume, tmpfs) to OCI mounts."""

from __future__ import annotations

import os
import stat
import time

from berth import jsonio
from berth.engine.store import Store
from berth.errors import ConflictError, InvalidArgumentError, NotFoundError

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from typing import Any


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Volumes:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.paths.volumes

    def path(self, name: str) -> str:
        return os.path.join(self.root, name, "_data")

    def create(self, name: str = "", driver: str = "local", labels: dict[str, str] | None = None,
               options: dict[str, str] | None = None, anonymous: bool = False) -> dict[str, Any]:
        if driver != "local":
            raise NotFoundError(f"plugin \"{driver}\" not found")
        if options:
            raise InvalidArgumentError("options of the local driver are not supported yet")
        if not name:
            name = os.urandom(32).hex()
            anonymous = True
        from berth.engine.options import _is_volume_name

        if not _is_volume_name(name):
            raise InvalidArgumentError(
                f'create {name}: "{name}" includes invalid characters for a local volume name, '
                'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                "directory, use absolute path")
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        self.store.volume_insert(name, driver, _now(), labels or {}, options or {}, anonymous)
        os.makedirs(self.path(name), mode=0o755, exist_ok=True)
        return self.inspect(name)

    def get(self, name: str) -> dict[str, Any]:
        row = self.store.volume_get(name)
        if row is None:
            raise NotFoundError(f"get {name}: no such volume", volume=name)
        return dict(row)

    def inspect(self, name: str) -> dict[str, Any]:
        row = self.get(name)
        return {
            "CreatedAt": row["created"],
            "Driver": row["driver"],
            "Labels": jsonio.loads(row["labels"]) or None,
            "Mountpoint": self.path(name),
            "Name": name,
            "Options": jsonio.loads(row["options"]) or None,
            "Scope": "local",
        }

    def list(self) -> list[dict[str, Any]]:
        return [self.inspect(r["name"]) for r in self.store.volume_list()]

    def users(self, name: str) -> list[str]:
        out = []
        for rec in self.store.list():
            for m in rec.host_config.get("Mounts") or []:
                if m.get("Type") == "volume" and m.get("Source") == name:
                    out.append(rec.id)
        return out

    def remove(self, name: str, force: bool = False) -> None:
        self.get(name)
        users = self.users(name)
        if users:
            raise ConflictError(f"remove {name}: volume is in use - [{', '.join(users)}]",
                                volume=name)
        self.store.volume_delete(name)
        import shutil  # not on a container start's path

        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def prune(self, all_volumes: bool = False) -> tuple[list[str], int]:
        """Remove unused volumes (anonymous ones only unless `all_volumes`,
        as Docker 23+)."""
        removed, space = [], 0
        for row in self.store.volume_list():
            if not all_volumes and not row["anonymous"]:
                continue
            if self.users(row["name"]):
                continue
            space += _du(os.path.join(self.root, row["name"]))
            self.remove(row["name"])
            removed.append(row["name"])
        return removed, space


def _du(path: str) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def oci_mounts(volumes: Volumes, mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """HostConfig.Mounts -> OCI mounts. A missing named volume is created;
    a missing bind source is created for `-v` and an error for `--mount`
    (Docker's rules)."""
    out = []
    for m in mounts:
        kind, target = m["Type"], m["Target"]
        ro = ["ro"] if m.get("ReadOnly") else ["rw"]
        if kind == "bind":
            src = m["Source"]
            if not os.path.exists(src):
                if m.get("CreateHostPath"):
                    os.makedirs(src, exist_ok=True)
                else:
                    raise InvalidArgumentError(
                        f"invalid mount config for type \"bind\": bind source path does not "
                        f"exist: {src}")
            out.append({"destination": target, "type": "bind", "source": src,
                        "options": ["rbind", "rprivate", *ro]})
        elif kind == "volume":
            name = m["Source"]
            if volumes.store.volume_get(name) is None:
                volumes.create(name)
            out.append({"destination": target, "type": "bind", "source": volumes.path(name),
                        "options": ["rbind", "rprivate", *ro]})
        elif kind == "tmpfs":
            opts = ["nosuid", "nodev", "noexec", *ro]
            t = m.get("TmpfsOptions") or {}
            if t.get("SizeBytes"):
                opts.append(f"size={t['SizeBytes']}")
            if t.get("Mode"):
                opts.append(f"mode={t['Mode']:o}")
            out.append({"destination": target, "type": "tmpfs", "source": "tmpfs",
                        "options": opts})
    return out


def copy_up(rootfs: str, target: str, data: str) -> None:
    """Docker fills a new, empty named volume with what the image has at its
    mount point, keeping owners, modes, times and xattrs, the mount point's
    own included (so `-v db:/var/lib/postgresql/data` is owned by postgres,
    as images rely on)."""
    try:
        if os.listdir(data):
            return
    except OSError:
        return
    src = os.path.join(rootfs, target.lstrip("/"))
    if os.path.islink(src) or not os.path.isdir(src):
        return
    if not os.path.realpath(src).startswith(os.path.realpath(rootfs) + "/"):
        return
    _copy_dir(src, data)


def _copy_dir(src: str, dst: str) -> None:
    """The contents of directory src into the existing directory dst, then
    src's metadata onto dst. Symlinks are copied, never followed."""
    st = os.lstat(src)
    for entry in os.scandir(src):
        s, d = entry.path, os.path.join(dst, entry.name)
        est = entry.stat(follow_symlinks=False)
        mode = est.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(d, 0o700)
            _copy_dir(s, d)
            continue
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(s), d)
        elif stat.S_ISREG(mode):
            import shutil  # not on a container start's path

            shutil.copyfile(s, d, follow_symlinks=False)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(d, mode, est.st_rdev)
        else:
            continue  # a socket means nothing without its listener
        _copy_meta(s, d, est)
    _copy_meta(src, dst, st)


def _copy_meta(src: str, dst: str, st: os.stat_result) -> None:
    os.lchown(dst, st.st_uid, st.st_gid)
    link = stat.S_ISLNK(st.st_mode)
    for name in _listxattr(src):
        try:
            os.setxattr(dst, name, os.getxattr(src, name, follow_symlinks=False),
                        follow_symlinks=False)
        except OSError:
            pass  # a namespace the volume's filesystem does not take
    if not link:
        # after the chown, which clears set-user-ID and set-group-ID
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _listxattr(path: str) -> list[str]:
    try:
        return os.listxattr(path, follow_symlinks=False)
    except OSError:
        return []
