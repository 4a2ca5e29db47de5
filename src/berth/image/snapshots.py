"""Snapshotters: filesystem trees for layers and containers, in containerd's
vocabulary (core/snapshots/snapshotter.go).

A snapshot is *active* (writable, being changed) or *committed* (immutable,
usable as a parent); a *view* is an active snapshot that is read-only.
Active snapshots are named by a *key*, committed ones by a *name*; both live
in one namespace. Every snapshot but the first has a *parent*, a committed
snapshot whose content it starts from. `mounts(key)` says how to mount an
active snapshot; the caller mounts it where it wants.

Worked example, unpacking an image of two layers and running a container::

    # layer 1: an empty active snapshot, filled, committed as its chain ID
    sn.prepare("extract-1", "")
    apply_layer(*sn.apply_target("extract-1"), layer1)    # (dir, whiteout mode)
    sn.commit(chain1, "extract-1")
    # layer 2 on top of layer 1
    sn.prepare("extract-2", chain1)
    apply_layer(*sn.apply_target("extract-2"), layer2)
    sn.commit(chain2, "extract-2")
    # a container: a writable snapshot on the image's top chain ID
    mounts = sn.prepare("container-abc", chain2)
    mount_all(mounts, "/run/berth/abc/rootfs")
    ...
    unmount_all("/run/berth/abc/rootfs"); sn.remove("container-abc")

`apply_target` is berth's addition: where a layer is written directly (an
overlay upper directory, or a copied tree) without mounting anything.

Implementations: `OverlaySnapshotter` (one directory per layer, shared by
every image with that chain ID; a container gets one upper directory) and
`CopySnapshotter` (each active snapshot is a full copy of its parent, for
hosts without overlayfs).
"""

import _sqlite3 as sqlite3  # the C module alone (see berth/db.py)
import errno
import fcntl
import os
import time
from abc import ABC, abstractmethod

from berth import db
from berth.errors import (
    AlreadyExistsError,
    ConflictError,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from berth.fsutil import rmtree
from berth.structs import dataclass, field


def _shutil():
    import shutil  # not on a container start's path: imported when needed

    return shutil


def _subprocess():
    import subprocess

    return subprocess

OVERLAY_OPTIONS_MAX = 3500  # of the 4096-byte page mount(2) reads its data from
# linux/fs.h: inode flags, as chattr(1) sets them
FS_IOC_GETFLAGS = 0x80086601
FS_IOC_SETFLAGS = 0x40086602
FS_TOPDIR_FL = 0x00020000
KIND_ACTIVE = "active"
KIND_VIEW = "view"
KIND_COMMITTED = "committed"

SCHEMA = [
    """
    CREATE TABLE snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        driver TEXT NOT NULL,
        key TEXT NOT NULL,
        kind TEXT NOT NULL,
        parent TEXT NOT NULL DEFAULT '',
        created REAL NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        UNIQUE (driver, key)
    );
    """
]


@dataclass(frozen=True)
class Mount:
    """One mount, as mount(8) takes it: type, source, options. Paths in the
    options are relative to `cwd` when it is set (to fit a long overlay lower
    chain in the one page the kernel reads mount options from)."""

    type: str
    source: str
    options: list[str] = field(default_factory=list)
    cwd: str | None = None


@dataclass(frozen=True)
class Info:
    key: str
    kind: str
    parent: str
    created: float
    id: int


class Snapshotter(ABC):
    """The interface; see the module docstring for the vocabulary."""

    driver: str

    def __init__(self, root: str, database: str, conn: sqlite3.Connection | None = None
                 ) -> None:
        """`conn`: a connection to `database` to use (its owner closes it)
        rather than one of our own, opened on first use."""
        self.root = os.path.join(root, self.driver)
        self.database = database
        os.makedirs(self.root, exist_ok=True)
        mark_topdir(self.root)
        self._conn = conn
        self._own = conn is None
        self._migrated = False

    # metadata -------------------------------------------------------------------------

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = db.connect(self.database)
            self._own = True
        if not self._migrated:
            db.ensure_schema(self._conn, "snapshots", SCHEMA)
            self._migrated = True
        return self._conn

    def close(self) -> None:
        if self._conn is not None and self._own:
            self._conn.close()
        self._conn = None
        self._own = True
        self._migrated = False

    def stat(self, key: str) -> Info:
        row = self.conn.execute(
            "SELECT id, key, kind, parent, created FROM snapshots WHERE driver = ? AND key = ?",
            (self.driver, key),
        ).fetchone()
        if row is None:
            raise NotFoundError(f"stat snapshot {key}: not found", key=key)
        return Info(row["key"], row["kind"], row["parent"], row["created"], row["id"])

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except NotFoundError:
            return False
        return True

    def walk(self) -> list[Info]:
        rows = self.conn.execute(
            "SELECT id, key, kind, parent, created FROM snapshots WHERE driver = ? ORDER BY id",
            (self.driver,),
        ).fetchall()
        return [Info(r["key"], r["kind"], r["parent"], r["created"], r["id"]) for r in rows]

    def dir(self, info: Info) -> str:
        return os.path.join(self.root, str(info.id))

    def fs(self, info: Info) -> str:
        return os.path.join(self.dir(info), "fs")

    def _create(self, key: str, parent: str, kind: str) -> tuple[Info, list[Info]]:
        if not key:
            raise InvalidArgumentError("prepare snapshot: empty key")
        with db.transaction(self.conn):
            chain: list[Info] = []
            if parent:
                p = self.stat(parent)
                if p.kind != KIND_COMMITTED:
                    raise InvalidArgumentError(
                        f"prepare snapshot {key}: parent {parent} is not committed"
                    )
                chain = self._chain(p)
            try:
                cur = self.conn.execute(
                    "INSERT INTO snapshots (driver, key, kind, parent, created)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (self.driver, key, kind, parent, time.time()),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExistsError(f"prepare snapshot {key}: already exists",
                                         key=key) from None
            info = Info(key, kind, parent, time.time(), int(cur.lastrowid or 0))
        # filled outside the transaction: a copy can take long
        try:
            if os.path.lexists(self.dir(info)):
                rmtree(self.dir(info), ignore_errors=True)  # a stale directory
            self._make_dir(info)
            self._setup(info, chain)
        except BaseException:
            rmtree(self.dir(info), ignore_errors=True)
            self.conn.execute("DELETE FROM snapshots WHERE id = ?", (info.id,))
            raise
        return info, chain

    def _make_dir(self, info: Info) -> None:
        """The snapshot's directory with an empty ``fs``, made under a random
        name and renamed into place. ext4 seeds the search for a block group
        for a new top-level directory with the hash of its name (Orlov,
        `find_group_orlov`): under its plain id, the first snapshot of every
        fresh root would land in the group the previous one just freed (see
        `mark_topdir`)."""
        tmp = os.path.join(self.root, f".new-{os.urandom(16).hex()}")
        os.mkdir(tmp)
        try:
            os.mkdir(os.path.join(tmp, "fs"))
            os.rename(tmp, self.dir(info))
        except BaseException:
            _shutil().rmtree(tmp, ignore_errors=True)
            raise

    def _chain(self, info: Info) -> list[Info]:
        """`info` and its ancestors, nearest first."""
        out = [info]
        while out[-1].parent:
            out.append(self.stat(out[-1].parent))
            if len(out) > 1000:
                raise InternalError(f"walk snapshot parents of {info.key}: cycle")
        return out

    # the interface --------------------------------------------------------------------

    def prepare(self, key: str, parent: str = "") -> list[Mount]:
        """A new writable snapshot `key` on `parent` (a committed name or '')."""
        info, chain = self._create(key, parent, KIND_ACTIVE)
        return self._mounts(info, chain)

    def view(self, key: str, parent: str = "") -> list[Mount]:
        """A new read-only snapshot `key` showing `parent`."""
        info, chain = self._create(key, parent, KIND_VIEW)
        return self._mounts(info, chain)

    def mounts(self, key: str) -> list[Mount]:
        info = self.stat(key)
        if info.kind == KIND_COMMITTED:
            raise InvalidArgumentError(f"mounts of snapshot {key}: it is committed; use view")
        chain = self._chain(self.stat(info.parent)) if info.parent else []
        return self._mounts(info, chain)

    def commit(self, name: str, key: str, parent: str | None = None) -> None:
        """Make active snapshot `key` the committed snapshot `name`. With
        `parent`, the snapshot is *rebased* onto that committed snapshot: only
        for snapshotters whose snapshots do not contain their parent's files
        (`can_rebase`), so that layers can be unpacked in parallel, each into
        its own snapshot, and stacked in order afterwards."""
        with db.transaction(self.conn):
            info = self.stat(key)
            if info.kind != KIND_ACTIVE:
                raise InvalidArgumentError(f"commit snapshot {key}: it is a {info.kind} snapshot")
            new_parent = info.parent
            if parent is not None and parent != info.parent:
                if not self.can_rebase:
                    raise InvalidArgumentError(
                        f"commit snapshot {key} on {parent}: {self.driver} snapshots "
                        "cannot be rebased")
                if parent and self.stat(parent).kind != KIND_COMMITTED:
                    raise InvalidArgumentError(
                        f"commit snapshot {key} on {parent}: the parent is not committed")
                new_parent = parent
            try:
                self.conn.execute(
                    "UPDATE snapshots SET key = ?, kind = ?, parent = ? WHERE id = ?",
                    (name, KIND_COMMITTED, new_parent, info.id),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExistsError(f"commit snapshot {key} as {name}: already exists",
                                         key=name) from None
        self._committed(Info(name, KIND_COMMITTED, new_parent, info.created, info.id))

    def remove(self, key: str) -> None:
        """Remove a snapshot that no other snapshot has as its parent."""
        with db.transaction(self.conn):
            info = self.stat(key)
            child = self.conn.execute(
                "SELECT key FROM snapshots WHERE driver = ? AND parent = ? LIMIT 1",
                (self.driver, key),
            ).fetchone()
            if child is not None:
                raise ConflictError(
                    f"remove snapshot {key}: snapshot {child[0]} depends on it", key=key
                )
            self.conn.execute("DELETE FROM snapshots WHERE id = ?", (info.id,))
        _rmtree(self.dir(info))

    def apply_target(self, key: str) -> tuple[str, str]:
        """(directory, whiteout mode) where a layer for active snapshot `key` is applied."""
        info = self.stat(key)
        if info.kind != KIND_ACTIVE:
            raise InvalidArgumentError(f"apply to snapshot {key}: it is not active")
        return self.fs(info), self.whiteout_mode

    def usage(self, key: str) -> int:
        """Bytes used by the snapshot's own directory."""
        total, seen = 0, set()
        for dirpath, _, files in os.walk(self.fs(self.stat(key))):
            for f in files:
                try:
                    st = os.lstat(os.path.join(dirpath, f))
                except FileNotFoundError:
                    continue
                if st.st_ino not in seen:  # hardlinks once
                    seen.add(st.st_ino)
                    total += st.st_blocks * 512
        return total

    def cleanup(self) -> list[str]:
        """Remove directories that no snapshot record owns (after a crash)."""
        ids = {str(i.id) for i in self.walk()}
        removed = []
        for name in os.listdir(self.root):
            if name not in ids:
                _rmtree(os.path.join(self.root, name))
                removed.append(name)
        return removed

    # mechanism -------------------------------------------------------------------------

    whiteout_mode = "flatten"
    can_rebase = False

    @abstractmethod
    def _setup(self, info: Info, parents: list[Info]) -> None: ...

    @abstractmethod
    def _mounts(self, info: Info, parents: list[Info]) -> list[Mount]: ...

    def _committed(self, info: Info) -> None:  # noqa: B027 - optional hook
        pass


class OverlaySnapshotter(Snapshotter):
    """overlayfs: committed snapshots are lower directories shared by every
    child; an active snapshot is an upper directory over its parent chain."""

    driver = "overlay"
    whiteout_mode = "overlay"
    can_rebase = True  # a layer's directory holds only its own changes

    def _setup(self, info: Info, parents: list[Info]) -> None:
        if info.kind == KIND_ACTIVE and parents:
            os.makedirs(os.path.join(self.dir(info), "work"))

    def _mounts(self, info: Info, parents: list[Info]) -> list[Mount]:
        ro = info.kind == KIND_VIEW
        if not parents:
            return [Mount("bind", self.fs(info), ["rbind", "ro" if ro else "rw"])]
        lowers = [self.fs(p) for p in parents]
        if ro and len(lowers) == 1:
            return [Mount("bind", lowers[0], ["rbind", "ro"])]
        upper, work = self.fs(info), os.path.join(self.dir(info), "work")
        cwd = None
        if sum(len(x) + 1 for x in lowers) + len(upper) + len(work) > OVERLAY_OPTIONS_MAX:
            # the kernel copies one page of options: name the layers relative to our root
            cwd = self.root
            lowers = [os.path.relpath(x, cwd) for x in lowers]
            upper, work = os.path.relpath(upper, cwd), os.path.relpath(work, cwd)
        if ro:
            return [Mount("overlay", "overlay", [f"lowerdir={':'.join(lowers)}"], cwd)]
        return [
            Mount(
                "overlay",
                "overlay",
                [f"lowerdir={':'.join(lowers)}", f"upperdir={upper}", f"workdir={work}",
                 "index=off"],
                cwd,
            )
        ]

    def _committed(self, info: Info) -> None:
        _shutil().rmtree(os.path.join(self.dir(info), "work"), ignore_errors=True)


class CopySnapshotter(Snapshotter):
    """Full copies: an active snapshot starts as a copy of its parent (cp -a,
    reflinks where the filesystem has them); a view binds the parent read-only."""

    driver = "copy"

    def _setup(self, info: Info, parents: list[Info]) -> None:
        if info.kind == KIND_ACTIVE and parents:
            src = self.fs(parents[0])
            proc = _subprocess().run(
                ["cp", "-a", "--reflink=auto", f"{src}/.", self.fs(info)],
                capture_output=True,
                text=True,
            )
            if proc.returncode != 0:
                raise InternalError(
                    f"prepare snapshot {info.key}: copy {src}: {proc.stderr.strip()}"
                )

    def _mounts(self, info: Info, parents: list[Info]) -> list[Mount]:
        if info.kind == KIND_VIEW:
            src = self.fs(parents[0]) if parents else self.fs(info)
            return [Mount("bind", src, ["rbind", "ro"])]
        return [Mount("bind", self.fs(info), ["rbind", "rw"])]


def mark_topdir(path: str) -> bool:
    """Mark `path` the top of directory hierarchies (chattr +T) where the
    filesystem has the flag; return whether it is set.

    ext4's Orlov allocator then places each snapshot directory made in it in
    a block group of its own choosing (fewest directories, at least average
    free inodes and blocks), instead of next to its siblings. That matters
    on ext4 without a journal: there every inode allocation in a group first
    steps over each inode freed in that group in the last minute or more
    (`find_inode_bit()` -> `recently_deleted()`, a buffer lookup each), so a
    layer unpacked where the previous one was just removed pays for that
    removal on every file it creates (measured: ~300 us instead of ~30 us
    per file). Best effort: other filesystems have no such flag."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        buf = bytearray(4)  # the kernel reads and writes an int, whatever the ioctl number says
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, buf)
        flags = int.from_bytes(buf, "little")
        if flags & FS_TOPDIR_FL:
            return True
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, (flags | FS_TOPDIR_FL).to_bytes(4, "little"))
        return True
    except OSError as exc:
        if exc.errno not in (errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.EPERM,
                             errno.EACCES, errno.EROFS):
            raise
        import logging

        logging.getLogger(__name__).debug("mark %s as a top directory: %s", path, exc)
        return False
    finally:
        os.close(fd)


def _rmtree(path: str) -> None:
    try:
        rmtree(path)
    except FileNotFoundError:
        pass


def overlay_supported() -> bool:
    try:
        with open("/proc/filesystems") as f:
            return any(line.split()[-1] == "overlay" for line in f if line.strip())
    except OSError:
        return False


def snapshotter(name: str, root: str, database: str, conn: sqlite3.Connection | None = None
                ) -> Snapshotter:
    """The snapshotter called `name` ('overlay', 'copy' or 'auto'); `conn`:
    see Snapshotter."""
    if name == "auto":
        name = "overlay" if overlay_supported() else "copy"
    elif name == "overlay" and not overlay_supported():
        raise UnavailableError("snapshotter overlay: overlayfs is not available here")
    if name == "overlay":
        return OverlaySnapshotter(root, database, conn)
    if name == "copy":
        return CopySnapshotter(root, database, conn)
    raise InvalidArgumentError(f"snapshotter {name!r}: unknown (overlay, copy)")


# mounting (root only) ----------------------------------------------------------------

_FLAGS = {"ro": 1, "rw": 0, "nosuid": 2, "nodev": 4, "noexec": 8}


def volatile(mounts: list[Mount]) -> list[Mount]:
    """`mounts` for contents that need not survive a crash (an --rm
    container's layer): overlay mounts with "volatile" (Linux 5.10+), whose
    unmount does not sync the whole upper filesystem (a journal commit and a
    disk flush where it is ext4: ~1 ms of every `run --rm` here). The kernel
    refuses to mount a work directory a volatile mount has used until its
    work/incompat/volatile is removed: done here, the contents being
    disposable. Mounting these on an older kernel fails (EINVAL): mount the
    plain ones then."""
    out = []
    for m in mounts:
        work = next((o[8:] for o in m.options if o.startswith("workdir=")), None)
        if m.type != "overlay" or work is None:
            out.append(m)
            continue
        incompat = os.path.join(m.cwd or "", work, "work", "incompat")
        for d in (os.path.join(incompat, "volatile"), incompat):
            try:
                os.rmdir(d)
            except OSError:
                pass
        out.append(Mount(m.type, m.source, [*m.options, "volatile"], m.cwd))
    return out


def mount_all(mounts: list[Mount], target: str) -> None:
    """Mount `mounts` on `target`, in order."""
    from berth.linux import libc

    for m in mounts:
        flags = 0
        data = []
        for opt in m.options:
            if opt in ("bind", "rbind"):
                flags |= libc.MS_BIND | (libc.MS_REC if opt == "rbind" else 0)
            elif opt in _FLAGS:
                flags |= _FLAGS[opt]
            else:
                data.append(opt)
        fstype = "none" if m.type == "bind" else m.type
        if m.cwd is not None:
            _mount_in(m.cwd, m.source, os.path.abspath(target), fstype, flags, ",".join(data))
            continue
        try:
            libc.mount(m.source, target, fstype, flags & ~libc.MS_RDONLY
                       if flags & libc.MS_BIND else flags, ",".join(data) or None)
            if flags & libc.MS_BIND and flags & libc.MS_RDONLY:
                libc.mount("none", target, None,
                           libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY, None)
        except OSError as exc:
            from berth.errors import from_oserror

            raise from_oserror(exc, f"mount {m.type} snapshot on", target) from exc


def _mount_in(cwd: str, source: str, target: str, fstype: str, flags: int, data: str) -> None:
    """mount(2) with relative paths in `data`, resolved from `cwd`: done in a
    forked child, as the working directory is shared by every thread here."""
    from berth.errors import from_oserror
    from berth.linux import libc

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: no Python-level locks taken from here on
        code = 0
        try:
            os.close(r)
            os.chdir(cwd)
            libc.mount(source, target, fstype, flags, data)
        except OSError as exc:
            code = exc.errno or 1
        except BaseException:
            code = 255
        finally:
            os.write(w, code.to_bytes(2, "little"))
            os._exit(0)
    os.close(w)
    try:
        raw = os.read(r, 2)
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    code = int.from_bytes(raw, "little") if len(raw) == 2 else 255
    if code:
        raise from_oserror(OSError(code, os.strerror(code)), "mount overlay snapshot on",
                           target)


def unmount_all(target: str, what: str = "unmount snapshot") -> None:
    """Unmount everything mounted on `target` (stacked mounts included);
    `what` starts the error's message."""
    import errno

    from berth.linux import libc

    for _ in range(64):
        try:
            libc.umount2(target, libc.MNT_DETACH)
        except OSError as exc:
            if exc.errno == errno.EINVAL:  # not (or no longer) a mount point
                return
            from berth.errors import from_oserror

            raise from_oserror(exc, what, target) from exc
