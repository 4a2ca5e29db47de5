"""Named volumes (the local driver) and the translation of a container's
mounts (bind, volume, tmpfs) to OCI mounts.

Options of the local driver (`volume create -o/--opt`), as Docker's on Linux
(moby volume/local/local_unix.go): `type`, `o` and `device` say what to
mount on the volume's `_data` directory, e.g. `type=tmpfs device=tmpfs
o=size=100m,uid=1000`, or `type=none o=bind device=/host/dir`; `size` is a
project quota on the volume's directory, where the filesystem under the
volumes has project quotas (XFS or ext4 mounted with `prjquota`; see
berth.linux.quota), else refused as Docker does ("quota size requested but
no quota support").
Checked at create (unknown key, `device` and `type` each needing the other,
`o` needing both), with Docker's messages. `o` is parsed as moby's
mount.Mount does: the words of mount(8)'s flag table (ro, bind, nosuid,
noatime, private, ...) become MS_* flags, the rest is the filesystem's data.

Lifecycle (daemonless): the volume is mounted by the first container start
that uses it when `_data` is not a mount point yet (/proc/self/mountinfo),
under a per-volume flock (on the volume's directory) so concurrent starts do
not mount it twice; a mount error fails that start (Docker's "error while
mounting volume ..."). It is unmounted when the volume is removed (`volume
rm`, `volume prune`, `system prune --volumes`, `rm -v`), before its
directory is deleted, and the removal is refused if it cannot be. Unlike
dockerd, which unmounts once no running container uses the volume, berth
keeps it mounted while it exists, so while a stopped container still
references it too: a tmpfs volume keeps its files across container
restarts until `volume rm`.
"""

from __future__ import annotations

import os
import stat
import time

from berth import jsonio
from berth.engine.store import Store
from berth.errors import ConflictError, InvalidArgumentError, NotFoundError
from berth.fsutil import is_mountpoint

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
        """`volume create`: a volume of that name that exists already is
        returned as it is, its options and labels not compared (Docker's
        volume store does the same)."""
        name, _ = self._create(name, driver, labels, options, anonymous)
        return self.inspect(name)

    def create_for_mount(self, mount: dict[str, Any], anonymous: bool = False) -> bool:
        """The volume of a container's volume mount (HostConfig.Mounts), made
        when the container is created, as moby's registerMountPoints: with
        the mount's VolumeOptions (--mount volume-driver, volume-opt,
        volume-label) if it does not exist, used as it is if it does.
        Whether it was made (the caller removes it if the create fails)."""
        vo = mount.get("VolumeOptions") or {}
        dc = vo.get("DriverConfig") or {}
        return self._create(mount["Source"], dc.get("Name") or "local", vo.get("Labels"),
                            dc.get("Options"), anonymous)[1]

    def _create(self, name: str, driver: str, labels: dict[str, str] | None,
                options: dict[str, str] | None, anonymous: bool) -> tuple[str, bool]:
        if driver != "local":
            raise NotFoundError(f"plugin \"{driver}\" not found")
        if not name:
            name = os.urandom(32).hex()
            anonymous = True
        from berth.engine.options import _is_volume_name

        if not _is_volume_name(name):
            raise InvalidArgumentError(
                f'create {name}: "{name}" includes invalid characters for a local volume name, '
                'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                "directory, use absolute path")
        if self.store.volume_get(name) is not None:
            return name, False
        os.makedirs(self.root, mode=0o701, exist_ok=True)
        size = _validate_options(name, options, self.root) if options else 0
        if not self.store.volume_insert(name, driver, _now(), labels or {}, options or {},
                                        anonymous):
            return name, False  # made meanwhile by another berth process
        try:
            os.makedirs(self.path(name), mode=0o755, exist_ok=True)
            if size:
                self._set_quota(name, size)
        except BaseException:
            self._delete(name)
            raise
        return name, True

    def _set_quota(self, name: str, size: int) -> None:
        """A project quota of `size` bytes on the volume's _data, as moby's
        quota.Control.SetQuota: a project id of its own (one more than the
        highest in use under the volumes' root, or than the root's own,
        which an administrator may have set to keep berth's ids above
        theirs), inherited by everything made in it. Ids are handed out
        under a flock on the root, so concurrent creates get distinct ones."""
        from berth.errors import InternalError
        from berth.linux import quota

        data = self.path(name)
        try:
            with _DirLock(self.root):
                projid = _next_project_id(self.root)
                quota.set_project_id(data, projid)
                quota.set_project_limit(data, projid, size)
        except OSError as exc:
            raise InternalError(f"create {name}: {exc.strerror}", volume=name) from None

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
            # Go's encoding/json writes a map's keys sorted
            "Options": dict(sorted((jsonio.loads(row["options"]) or {}).items())) or None,
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
        row = self.get(name)
        users = self.users(name)
        if users:
            raise ConflictError(f"remove {name}: volume is in use - [{', '.join(users)}]",
                                volume=name)
        if _mount_options(row) and os.path.isdir(self.path(name)):
            # unmounted, forgotten and deleted under the lock: a start that
            # waits for it finds no volume to mount, never a directory being
            # deleted (a bind's files with it)
            with self._locked(name):
                _unmount_all(self.path(name), name)
                self._delete(name)
        else:
            self._delete(name)

    def _delete(self, name: str) -> None:
        row = self.store.volume_get(name)
        if row is not None and _quota_size(row):
            _lift_quota(self.path(name), name)
        self.store.volume_delete(name)
        import shutil  # not on a container start's path

        shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)

    def mount(self, name: str, opts: dict[str, str]) -> None:
        """Mount a volume that has mount options on its `_data`, unless it is
        a mount point already (see the module's docstring)."""
        try:
            lock = self._locked(name)
        except FileNotFoundError:
            lock = None
        if lock is None or self.store.volume_get(name) is None:  # removed meanwhile
            if lock is not None:
                lock.close()
            raise NotFoundError(f"get {name}: no such volume", volume=name)
        with lock:
            data = self.path(name)
            if is_mountpoint(os.path.realpath(data)):
                return
            try:
                _mount_local(opts, data)
            except OSError as exc:
                from berth.errors import InternalError

                raise InternalError(f"error while mounting volume '{data}': {exc.strerror}",
                                    volume=name) from None

    def _locked(self, name: str) -> _DirLock:
        """An exclusive flock on the volume's directory (its mount and unmount
        are serialised across berth processes)."""
        return _DirLock(os.path.join(self.root, name))

    def prune(self, all_volumes: bool = False) -> tuple[list[str], int]:
        """Remove unused volumes (anonymous ones only unless `all_volumes`,
        as Docker 23+)."""
        removed, space = [], 0
        for row in self.store.volume_list():
            if not all_volumes and not row["anonymous"]:
                continue
            if self.users(row["name"]):
                continue
            if not _is_bind(_mount_options(row)):  # a bind's files are not reclaimed
                space += _du(os.path.join(self.root, row["name"]))
            self.remove(row["name"])
            removed.append(row["name"])
        return removed, space


class _DirLock:
    def __init__(self, path: str) -> None:
        import fcntl

        self.fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise

    def __enter__(self) -> _DirLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


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
            row = volumes.store.volume_get(name)
            if row is None:
                volumes.create(name)
            else:
                opts = _mount_options(row)
                if opts:
                    volumes.mount(name, opts)
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


# local driver options ---------------------------------------------------------------------

VALID_OPTIONS = ("type", "o", "device", "size")
# option -> the options it needs, in moby's order (mandatoryOpts)
REQUIRED_OPTIONS = (("device", ("type",)), ("type", ("device",)), ("o", ("device", "type")))


def _mount_options(row: Any) -> dict[str, str] | None:
    """The options of a volume's row when they ask for a mount (a `type` or a
    `device`), else None. No JSON decoding for a volume without options."""
    text = row["options"]
    if not text or text in ("{}", "null"):
        return None
    opts = jsonio.loads(text) or {}
    return opts if opts.get("type") or opts.get("device") else None


def _is_bind(opts: dict[str, str] | None) -> bool:
    if not opts:
        return False
    from berth.linux.libc import MS_BIND

    return bool(parse_mount_options(opts.get("o") or "")[0] & MS_BIND)


def _quota_size(row: Any) -> int:
    """The `size` option of a volume's row, in bytes (0: none)."""
    text = row["options"]
    if not text or '"size"' not in text:
        return 0
    from berth.engine.options import parse_size

    try:
        return parse_size(str((jsonio.loads(text) or {}).get("size") or "0"))
    except InvalidArgumentError:
        return 0


def _next_project_id(root: str) -> int:
    """moby's findNextProjectID: past the root's own project id and every
    id on the root's directories and their _data."""
    from berth.linux import quota

    ids = [quota.project_id(root)]
    for entry in os.scandir(root):
        if entry.is_dir(follow_symlinks=False):
            for path in (entry.path, os.path.join(entry.path, "_data")):
                try:
                    ids.append(quota.project_id(path))
                except OSError:
                    pass  # gone meanwhile, or a mount of a filesystem without project ids
    return max(ids) + 1


def _lift_quota(data: str, name: str) -> None:
    """Lift the limit of a volume's project before its directory goes, so
    the id (reused once no directory has it) carries no stale limit. A
    failure is logged: the volume is removed all the same."""
    from berth.linux import quota

    try:
        projid = quota.project_id(data)
        if projid:
            quota.set_project_limit(data, projid, 0)
    except OSError as exc:
        import logging

        logging.getLogger(__name__).warning("remove %s: lift quota: %s", name, exc.strerror)


def _validate_options(name: str, opts: dict[str, str], root: str | None = None) -> int:
    """moby's Root.validateOpts, its messages prefixed as its volume store's
    ("create NAME: ..."); the quota size asked for, in bytes. A size needs
    project quotas on the filesystem of the volumes' `root`
    (berth.linux.quota), which moby's quota.NewControl checks at start (no
    `root`: no quota support)."""
    def bad(msg: str) -> InvalidArgumentError:
        return InvalidArgumentError(f"create {name}: {msg}", volume=name)

    for key in opts:
        if key not in VALID_OPTIONS:
            raise bad(f'invalid option: "{key}"')
    if opts.get("type") == "cifs" and opts.get("device"):
        from urllib.parse import urlsplit

        try:
            port = urlsplit(opts["device"]).port
        except ValueError as exc:
            raise bad(f"error parsing mount device url: {exc}") from None
        if port is not None:
            raise bad("port not allowed in CIFS device URL, include 'port' in 'o='")
    if "size" in opts:
        from berth.engine.options import parse_size

        try:
            size = parse_size(opts["size"])
        except InvalidArgumentError:
            raise bad(f"invalid size: '{opts['size']}'") from None
        if size > 0:
            from berth.linux.quota import has_project_quota

            if root is None or not has_project_quota(root):
                raise bad("quota size requested but no quota support")
    else:
        size = 0
    for key, needs in REQUIRED_OPTIONS:
        if key in opts:
            for need in needs:
                if need not in opts:
                    raise bad(f'missing required option: "{need}"')
    return size


def parse_mount_options(options: str) -> tuple[int, str]:
    """fstab-style options -> (MS_* flags, filesystem data), as moby's
    mount.parseOptions: a flag word sets or clears its flag, anything else
    (size=100m, uid=1000, addr=...) is passed as data. `defaults` and empty
    words are dropped, and the words mount(8) knows as flags beyond moby's
    table (acl, lazytime, iversion, nosymfollow, silent) are flags too, as
    mount(8) does; moby would pass them to the filesystem, which refuses them."""
    from berth.runtime.rootfs import FLAGS, PROPAGATION  # the runtime's mount(8) words

    flags, data = 0, []
    for word in options.split(","):
        if not word or word == "defaults":
            continue
        if word in FLAGS:
            clear, flag = FLAGS[word]
            flags = flags & ~flag if clear else flags | flag
        elif word in PROPAGATION:
            flags |= PROPAGATION[word]
        else:
            data.append(word)
    return flags, ",".join(data)


def _mount_local(opts: dict[str, str], target: str) -> None:
    """moby's localVolume.mount with mount.Mount: the mount with every flag
    but the propagation ones, then the propagation, then a read-only remount
    of a read-only bind. A failed later step undoes the mount. Errors are
    moby's text (its mountError's for the mount) in an OSError's strerror."""
    from berth.linux import libc

    mtype, device = opts.get("type") or "", opts.get("device") or ""
    options = opts.get("o") or ""
    if mtype in ("nfs", "cifs"):
        options = _resolve_addr(options)
    flags, data = parse_mount_options(options)
    ptypes = libc.MS_SHARED | libc.MS_PRIVATE | libc.MS_SLAVE | libc.MS_UNBINDABLE
    oflags = flags & ~ptypes
    mounted = False

    def fail(op: str, source: str, fl: int, dat: str, exc: OSError) -> OSError:
        text = f"{op} {source}:{target}" if source else f"{op} {target}"
        if fl:
            text += f", flags: {fl:#x}"
        if dat:
            text += f", data: {dat}"
        text = f"failed to mount local volume: {text}: {os.strerror(exc.errno or 0).lower()}"
        password = _option_value(opts.get("o") or "", "password")
        if password:
            text = text.replace(f"password={password}", "password=********", 1)
        if mounted:
            try:
                libc.umount2(target, libc.MNT_DETACH)
            except OSError:
                pass
        return OSError(exc.errno, text)

    if not oflags & libc.MS_REMOUNT or data:
        try:
            libc.mount(device, target, mtype, oflags, data or None)
        except OSError as exc:
            raise fail("mount", device, oflags, data, exc) from None
        mounted = True
    if flags & ptypes:
        pflags = flags & (ptypes | libc.MS_REC | libc.MS_SILENT)
        try:
            libc.mount("", target, "", pflags, None)
        except OSError as exc:
            raise fail("remount", "", pflags, "", exc) from None
    broflags = libc.MS_BIND | libc.MS_RDONLY
    if oflags & broflags == broflags:
        try:
            libc.mount("", target, "", oflags | libc.MS_REMOUNT, None)
        except OSError as exc:
            raise fail("remount-ro", "", oflags | libc.MS_REMOUNT, "", exc) from None


def _option_value(options: str, key: str) -> str:
    for word in options.split(","):
        k, sep, v = word.partition("=")
        if sep and k == key:
            return v
    return ""


def _resolve_addr(options: str) -> str:
    """nfs and cifs: an `addr=` that is not an IPv4 address is resolved (the
    kernel takes addresses only), as moby's getMountOptions."""
    import ipaddress
    import socket

    addr = _option_value(options, "addr")
    if not addr:
        return options
    try:
        ipaddress.IPv4Address(addr)
        return options
    except ValueError:
        pass
    try:
        ip = socket.getaddrinfo(addr, None)[0][4][0]
    except OSError as exc:
        raise OSError(exc.errno, f"error resolving passed in network volume address: {exc}") \
            from None
    return options.replace(f"addr={addr}", f"addr={ip}", 1)


def _unmount_all(path: str, name: str) -> None:
    """Unmount every mount stacked on `path` (detached, as moby's
    mount.Unmount); refuse (and so keep the volume's files) if one stays."""
    from berth.errors import InternalError
    from berth.image.snapshots import unmount_all

    unmount_all(path, f"remove {name}: unmount")
    if is_mountpoint(os.path.realpath(path)):
        raise InternalError(f"remove {name}: {path} is still a mount point", volume=name)


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
