"""`cp`, `export`, `diff` and `commit`: a container's filesystem seen from the host.

Safety (CVE-2018-15664, CVE-2019-14271): every path inside the container is
resolved with openat2(RESOLVE_IN_ROOT) from an fd of its rootfs, and the
trees are walked and written through fds (O_NOFOLLOW, dir_fd), never through
re-resolved strings; no code from the container is run or loaded.
A stopped container's rootfs is mounted in a private mount namespace of
this process (gone when it exits: nothing to leak).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from typing import IO, Any, BinaryIO

from berth.errors import BerthError, InvalidArgumentError, NotFoundError
from berth.linux import libc

_NOFOLLOW_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# no RESOLVE_NO_XDEV: for cp, the container's volumes are mounted below the
# root (rootfs_fd with_mounts), in this process's private mount namespace
_RESOLVE = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS


class PathNotFound(NotFoundError):
    pass


@contextlib.contextmanager
def rootfs_fd(engine: Any, rec: Any, with_mounts: bool = False) -> Iterator[int]:
    """A directory fd of the container's rootfs (mounted if it is not).

    `with_mounts` (cp): the container's volumes, bind mounts and its
    /etc/hostname, /etc/hosts and /etc/resolv.conf are bind-mounted on it
    too, as dockerd mounts them for an archive request, so a path under a
    volume is the volume's. They are mounted in a private mount namespace of
    this process, each target resolved inside the rootfs (RESOLVE_IN_ROOT:
    a target the container swapped for a symlink cannot lead out), and
    unmounted at the end."""
    from berth.fsutil import is_mountpoint
    from berth.image.snapshots import mount_all, unmount_all

    rootfs = engine.rootfs(rec.id)
    binds = _cp_mounts(engine, rec) if with_mounts else []
    with contextlib.ExitStack() as stack:
        if not is_mountpoint(rootfs):
            stack.enter_context(engine.lock(rec.id))
        need_rootfs = not is_mountpoint(rootfs)
        if need_rootfs or binds:
            libc.unshare(libc.CLONE_NEWNS)
            libc.mount(None, "/", None, libc.MS_REC | libc.MS_PRIVATE)
        if need_rootfs:
            os.makedirs(rootfs, exist_ok=True)
            mount_all(engine.images.snapshots.mounts(rec.id), rootfs)
            stack.callback(unmount_all, rootfs)
        fd = os.open(rootfs, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        stack.callback(os.close, fd)
        for source, target, readonly in binds:
            _bind_in_root(stack, fd, source, target, readonly)
        yield fd


def _cp_mounts(engine: Any, rec: Any) -> list[tuple[str, str, bool]]:
    """(host source, container target, read-only) of what `cp` sees mounted,
    shortest target first (a mount inside another goes on top of it)."""
    out = []
    bundle = engine.bundle(rec.id)
    for name in ("hostname", "hosts", "resolv.conf"):
        if os.path.isfile(os.path.join(bundle, name)):
            out.append((os.path.join(bundle, name), f"/etc/{name}", False))
    for m in rec.host_config.get("Mounts") or []:
        if m.get("Type") == "volume":
            source = engine.volumes.path(m["Source"])
        elif m.get("Type") == "bind":
            source = m["Source"]
        else:
            continue  # tmpfs: only the running container has its content
        if os.path.exists(source):
            out.append((source, m["Target"], bool(m.get("ReadOnly"))))
    return sorted(out, key=lambda b: len(os.path.normpath(b[1])))


def _bind_in_root(stack: contextlib.ExitStack, root: int, source: str, target: str,
                  readonly: bool) -> None:
    how = libc.RESOLVE_IN_ROOT | libc.RESOLVE_NO_MAGICLINKS
    try:
        tfd = libc.openat2(root, target, os.O_PATH | os.O_CLOEXEC, 0, how)
    except OSError:
        return  # not made yet (the container never started): nothing to see there
    try:
        if stat.S_ISDIR(os.fstat(tfd).st_mode) != os.path.isdir(source):
            return
        libc.mount(source, f"/proc/self/fd/{tfd}", None, libc.MS_BIND | libc.MS_REC)
    except OSError as exc:
        raise BerthError(f"mount {source} on {target} for cp: {exc.strerror}") from exc
    finally:
        os.close(tfd)
    # the mount made, as an fd of its root: resolved again from the rootfs
    # (an fd taken before it names the directory underneath)
    mfd = libc.openat2(root, target, os.O_PATH | os.O_CLOEXEC, 0, how)
    stack.callback(_detach, mfd, target)
    if readonly:
        try:
            libc.mount(None, f"/proc/self/fd/{mfd}", None,
                       libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY)
        except OSError as exc:
            raise BerthError(f"remount {target} read-only for cp: {exc.strerror}") from exc


def _detach(mfd: int, target: str) -> None:
    try:
        libc.umount2(f"/proc/self/fd/{mfd}", libc.MNT_DETACH)
    except OSError as exc:
        raise BerthError(f"unmount {target} after cp: {exc.strerror}") from exc
    finally:
        os.close(mfd)


def _split(path: str) -> tuple[str, str]:
    """(parent, name) of a container path; name '' for the root or a path
    ending in '/', '.' or '..' (the path itself is then the directory)."""
    path = "/" + path.lstrip("/")
    parent, name = os.path.split(path)
    if name in ("", ".", ".."):
        return path, ""
    return parent or "/", name


def _open_dir(root: int, path: str, cname: str) -> int:
    try:
        return libc.openat2(root, path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, _RESOLVE)
    except OSError as exc:
        raise PathNotFound(f"Could not find the file {path} in container {cname}") from exc


def _lstat(dfd: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


# tar out of a container ---------------------------------------------------------------

class _TarWriter:
    def __init__(self, tf: tarfile.TarFile, owner: tuple[int, int] | None = None) -> None:
        self.tf = tf
        self.owner = owner
        self.links: dict[tuple[int, int], str] = {}

    def _info(self, arc: str, st: os.stat_result) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(arc)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = self.owner or (st.st_uid, st.st_gid)
        ti.mtime = int(st.st_mtime)
        return ti

    def add(self, dfd: int, name: str, arc: str, opened: int = -1) -> None:
        """Add entry `name` of directory `dfd` (and what is below it) as `arc`
        (`opened`: an O_PATH fd of the entry already resolved, not a link)."""
        flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW
        try:
            fd = os.dup(opened) if opened >= 0 else os.open(name, flags | os.O_PATH,
                                                                dir_fd=dfd)
        except OSError as exc:
            if exc.errno != 40:  # ELOOP: a symlink, not followed
                raise
            st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
            ti = self._info(arc, st)
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(name, dir_fd=dfd)
            self.tf.addfile(ti)
            return
        try:
            st = os.fstat(fd)
            ti = self._info(arc, st)
            if stat.S_ISDIR(st.st_mode):
                ti.type = tarfile.DIRTYPE
                self.tf.addfile(ti)
                d = os.open(".", _NOFOLLOW_DIR, dir_fd=fd)
                try:
                    for child in sorted(os.listdir(d)):
                        self.add(d, child, f"{arc.rstrip('/')}/{child}" if arc else child)
                finally:
                    os.close(d)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in self.links:
                    ti.type = tarfile.LNKTYPE
                    ti.linkname = self.links[key]
                    self.tf.addfile(ti)
                    return
                self.links[key] = arc
                ti.size = st.st_size
                # reopen our own O_PATH fd (a regular file: no device open)
                rfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
                with os.fdopen(rfd, "rb") as f:
                    self.tf.addfile(ti, f)
            elif stat.S_ISLNK(st.st_mode):  # O_PATH|O_NOFOLLOW gives the link itself
                ti.type = tarfile.SYMTYPE
                ti.linkname = os.readlink(name, dir_fd=dfd)
                self.tf.addfile(ti)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                ti.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
                self.tf.addfile(ti)
            elif stat.S_ISFIFO(st.st_mode):
                ti.type = tarfile.FIFOTYPE
                self.tf.addfile(ti)
            # sockets are skipped, as Docker does
        finally:
            os.close(fd)


def tar_from_container(engine: Any, ref: str, path: str, out: BinaryIO, follow: bool = False,
                       rename: str | None = None, owner: tuple[int, int] | None = None) -> None:
    """Write a tar of `path` in container `ref` to `out`; the top entry named
    `rename` (default: the path's base name)."""
    rec = engine.get(ref)
    with rootfs_fd(engine, rec, with_mounts=True) as root:
        parent, name = _split(path)
        if not name:
            dfd = _open_dir(root, parent, ref)
            try:
                base = rename if rename is not None else (os.path.basename(
                    parent.rstrip("/")) or ".")
                with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                    _TarWriter(tf, owner).add(dfd, ".", base)
            finally:
                os.close(dfd)
            return
        dfd = _open_dir(root, parent, ref)
        try:
            if follow:
                # the final component too, resolved inside the root (from its fd)
                try:
                    full = libc.openat2(root, path, os.O_PATH | os.O_CLOEXEC, 0, _RESOLVE)
                except OSError:
                    raise PathNotFound(
                        f"Could not find the file {path} in container {ref}") from None
                try:
                    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                        _TarWriter(tf, owner).add(-1, "", rename or name, opened=full)
                finally:
                    os.close(full)
                return
            if _lstat(dfd, name) is None:
                raise PathNotFound(f"Could not find the file {path} in container {ref}")
            with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
                _TarWriter(tf, owner).add(dfd, name, rename or name)
        finally:
            os.close(dfd)


def copy_out(engine: Any, ref: str, path: str, dest: str, follow: bool = False,
             archive: bool = False) -> None:
    """Docker's `cp CONTAINER:SRC DEST` to a host path."""
    rec = engine.get(ref)
    dest_exists = os.path.isdir(dest)
    if dest_exists:
        target_dir, rename = dest, None
    else:
        target_dir, rename = os.path.dirname(os.path.abspath(dest)), os.path.basename(dest)
        if dest.endswith("/"):
            raise InvalidArgumentError(f"destination directory {dest} does not exist")
        if not os.path.isdir(target_dir):
            raise InvalidArgumentError(f"destination directory {target_dir} does not exist")
    with tempfile.TemporaryFile() as tmp:
        owner = None if archive else (os.getuid(), os.getgid())
        parent, name = _split(path)
        if rename is None and not name:
            rename = os.path.basename(parent.rstrip("/")) or "rootfs"
        tar_from_container(engine, rec.id if ref == rec.id else ref, path, tmp, follow,
                           rename, owner)
        tmp.seek(0)
        # a tar made above from directory listings: no '..', no entry below a symlink
        with tarfile.open(fileobj=tmp, mode="r:") as tf:
            for m in tf:
                full = os.path.join(target_dir, m.name)
                st = _host_lstat(full)
                if st is not None and stat.S_ISDIR(st.st_mode) != m.isdir():
                    if m.isdir():
                        raise InvalidArgumentError(
                            f"cannot copy a directory to a file: {full}")
                    if stat.S_ISDIR(st.st_mode):
                        raise InvalidArgumentError(f"cannot overwrite directory {full}")
                if st is not None and not m.isdir():
                    os.unlink(full)
                tf.extract(m, target_dir, set_attrs=True, numeric_owner=True)


def _host_lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


# into a container ---------------------------------------------------------------------

def copy_in(engine: Any, ref: str, dest: str, source: IO[bytes] | None = None,
            src: str | None = None, follow: bool = False, archive: bool = False) -> None:
    """Docker's `cp SRC CONTAINER:DEST` (`source`: a tar stream for `-`)."""
    from berth.image.layers import apply_layer

    rec = engine.get(ref)
    if src is not None and not os.path.lexists(src):
        raise NotFoundError(f"lstat {src}: no such file or directory")
    where = os.path.normpath("/" + dest.lstrip("/"))
    for _source, target, readonly in _cp_mounts(engine, rec):
        t = os.path.normpath(target)
        if readonly and (where == t or where.startswith(t.rstrip("/") + "/")):
            raise InvalidArgumentError("mounted volume is marked read-only")
    with rootfs_fd(engine, rec, with_mounts=True) as root:
        parent, name = _split(dest)
        if not name or source is not None:
            dfd = _open_dir(root, dest, ref)
            arc = None
        else:
            try:
                pfd = _open_dir(root, parent, ref)
            except PathNotFound:
                raise PathNotFound(f"Could not find the file {parent} in container {ref}") \
                    from None
            st = _lstat(pfd, name)
            if st is not None and stat.S_ISDIR(st.st_mode):
                dfd = os.open(name, _NOFOLLOW_DIR, dir_fd=pfd)
                os.close(pfd)
                arc = None
            else:
                if dest.endswith("/"):
                    os.close(pfd)
                    raise PathNotFound(f"Could not find the file {dest} in container {ref}")
                if st is not None and src is not None and os.path.isdir(src):
                    os.close(pfd)
                    raise InvalidArgumentError("cannot copy a directory to a file")
                dfd, arc = pfd, name
        try:
            target = f"/proc/self/fd/{dfd}"
            if source is not None:
                apply_layer(target, source)
                return
            assert src is not None
            if arc is None:
                arc = os.path.basename(os.path.normpath(src))
                if src.rstrip("/").endswith("/.") or src in (".", "./"):
                    arc = "."
            with tempfile.TemporaryFile() as tmp:
                with tarfile.open(fileobj=tmp, mode="w", format=tarfile.PAX_FORMAT,
                                  dereference=follow) as tf:
                    def owner(ti: tarfile.TarInfo) -> tarfile.TarInfo:
                        if not archive:
                            ti.uid = ti.gid = 0
                        ti.uname = ti.gname = ""
                        return ti
                    tf.add(src, arcname=arc, filter=owner)
                tmp.seek(0)
                apply_layer(target, tmp)
        finally:
            os.close(dfd)


# export / diff / commit ---------------------------------------------------------------

def export(engine: Any, ref: str, out: BinaryIO) -> None:
    rec = engine.get(ref)
    with rootfs_fd(engine, rec) as root, \
            tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        w = _TarWriter(tf)
        for child in sorted(os.listdir(root)):
            w.add(root, child, child)


def _write_diff(engine: Any, rec: Any, out: BinaryIO) -> tuple[Any, int]:
    from berth.image.diff import write_diff

    return write_diff(engine.images.snapshots, rec.id, out)


def _in_image(sn: Any, parent: str, rel: str) -> bool:
    if not parent:
        return False
    from berth.image.snapshots import OverlaySnapshotter

    chain = sn._chain(sn.stat(parent))
    if not isinstance(sn, OverlaySnapshotter):
        chain = chain[:1]
    for info in chain:
        p = os.path.join(sn.fs(info), rel)
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)
    return False


def diff(engine: Any, ref: str) -> list[str]:
    """Docker's `diff` lines: `A /path`, `C /path`, `D /path`."""
    from berth.image.layers import WHITEOUT_OPAQUE, WHITEOUT_PREFIX

    rec = engine.get(ref)
    sn = engine.images.snapshots
    parent = sn.stat(rec.id).parent
    lines: dict[str, str] = {}
    with tempfile.TemporaryFile() as tmp:
        _write_diff(engine, rec, tmp)
        tmp.seek(0)
        with tarfile.open(fileobj=tmp, mode="r:") as tf:
            for m in tf:
                name = m.name.rstrip("/")
                d, base = os.path.split(name)
                if base == WHITEOUT_OPAQUE:
                    continue
                if base.startswith(WHITEOUT_PREFIX):
                    p = os.path.join(d, base[len(WHITEOUT_PREFIX):])
                    lines["/" + p] = "D"
                    continue
                lines["/" + name] = "C" if _in_image(sn, parent, name) else "A"
                # a changed entry's directories changed too
                while d:
                    lines.setdefault("/" + d, "C")
                    d = os.path.dirname(d)
    return [f"{k} {p}" for p, k in sorted(lines.items())]


def _apply_changes(cfg: dict[str, Any], changes: list[str]) -> None:
    import json
    import shlex

    for change in changes:
        word, _, rest = change.strip().partition(" ")
        word, rest = word.upper(), rest.strip()

        def cmd_list(rest: str = rest) -> list[str]:
            if rest.startswith("["):
                return list(json.loads(rest))
            return ["/bin/sh", "-c", rest]

        if word == "CMD":
            cfg["Cmd"] = cmd_list()
        elif word == "ENTRYPOINT":
            cfg["Entrypoint"] = cmd_list()
        elif word == "ENV":
            pairs = shlex.split(rest)
            if pairs and "=" not in pairs[0]:
                pairs = [f"{pairs[0]}={rest.split(None, 1)[1] if len(pairs) > 1 else ''}"]
            env = [e for e in cfg.get("Env") or []]
            for p in pairs:
                k = p.split("=", 1)[0]
                env = [e for e in env if e.split("=", 1)[0] != k] + [p]
            cfg["Env"] = env
        elif word == "WORKDIR":
            cfg["WorkingDir"] = rest
        elif word == "USER":
            cfg["User"] = rest
        elif word == "LABEL":
            labels = dict(cfg.get("Labels") or {})
            for p in shlex.split(rest):
                k, _, v = p.partition("=")
                labels[k] = v
            cfg["Labels"] = labels
        elif word == "EXPOSE":
            ports = dict(cfg.get("ExposedPorts") or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            cfg["ExposedPorts"] = ports
        elif word == "VOLUME":
            vols = dict(cfg.get("Volumes") or {})
            for p in (json.loads(rest) if rest.startswith("[") else rest.split()):
                vols[p] = {}
            cfg["Volumes"] = vols
        elif word == "STOPSIGNAL":
            cfg["StopSignal"] = rest
        else:
            raise InvalidArgumentError(f"{word} is not a valid change command")


_CONFIG_KEYS = ("User", "ExposedPorts", "Env", "Entrypoint", "Cmd", "Volumes", "WorkingDir",
                "Labels", "StopSignal", "Healthcheck")


def commit(engine: Any, ref: str, tag: str | None = None, message: str = "",
           author: str = "", changes: list[str] = ()) -> str:  # type: ignore[assignment]
    """A new image: the container's image plus its changes as a layer;
    returns the image ID (sha256:...)."""
    import json

    from berth.oci import image as oi

    rec = engine.get(ref)
    svc = engine.images.service
    base = svc.get(rec.image_id)
    base_cfg = json.loads(svc.config_bytes(base))
    cfg = {k: v for k, v in (rec.config or {}).items() if k in _CONFIG_KEYS and v}
    for k in ("Cmd", "Entrypoint"):
        if k in (rec.config or {}):
            cfg[k] = rec.config[k]
    try:
        _apply_changes(cfg, list(changes))
    except (ValueError, json.JSONDecodeError) as exc:
        raise InvalidArgumentError(f"invalid change: {exc}") from None
    os.makedirs(engine.paths.tmp, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=engine.paths.tmp, suffix=".tar") as tmp:
        _write_diff(engine, rec, tmp)  # type: ignore[arg-type]
        tmp.flush()
        layer = svc.add_layer_tar(tmp.name)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    new = dict(base_cfg)
    new["created"] = now
    new["config"] = {**(base_cfg.get("config") or {}), **cfg}
    new["rootfs"] = {"type": "layers",
                     "diff_ids": [*base_cfg["rootfs"]["diff_ids"], str(layer.diff_id)]}
    hist = {"created": now, "created_by": " ".join(
        (rec.config.get("Entrypoint") or []) + (rec.config.get("Cmd") or []))}
    if author:
        new["author"] = author
        hist["author"] = author
    if message:
        new["comment"] = message
        hist["comment"] = message
    new["history"] = [*(base_cfg.get("history") or []), hist]
    new.pop("container_config", None)
    blobs = [*_base_layers(svc, base), layer]
    data = json.dumps(new, separators=(",", ":")).encode()
    oi.decode_config(data)
    img = svc.create(data, blobs, [tag] if tag else [])
    return str(img.id)


def _base_layers(svc: Any, image: Any) -> list[Any]:
    from berth.image.service import LayerBlob

    manifest = svc.manifest(image)
    cfg = svc.config(image)
    out = []
    for desc, diff_id in zip(manifest.layers, cfg.rootfs.diff_ids, strict=True):
        out.append(LayerBlob(digest=desc.digest, size=desc.size, media_type=desc.media_type,
                             diff_id=diff_id))
    return out


__all__ = ["BerthError", "commit", "copy_in", "copy_out", "diff", "export",
           "tar_from_container"]
