"""Layer archives: decompress, verify, and apply a layer tar onto a directory.

Every entry is resolved inside the target by walking it one component at a
time from a directory fd with O_NOFOLLOW (the openat discipline): an entry
name that is absolute or climbs with ``..``, a parent component that is a
symlink, or a hardlink whose target lies outside, is refused with
`LayerError` — never followed. Nothing is ever opened by a host path built
from a layer name, so a hostile layer cannot write outside the target
(CVE-2018-15664-style races included: no path is re-resolved after a check).

Two whiteout modes:

- ``flatten``: whiteouts delete from the target (the target holds the lower
  layers' content: CopySnapshotter, `docker export`-like flattening);
- ``overlay``: the target is an empty overlayfs upper directory; whiteouts are
  written in overlayfs' format (a 0/0 character device; ``trusted.overlay.opaque=y``).
"""

import contextlib
import errno
import io
import logging
import os
import posixpath
import queue
import shutil
import stat
import tarfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from berth.errors import InvalidArgumentError, UnavailableError
from berth.image.tarball import TarHeaders, TarStream
from berth.oci import digest as dg
from berth.oci.digest import Digest

log = logging.getLogger(__name__)

WHITEOUT_PREFIX = ".wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
WHITEOUT_META_PREFIX = ".wh..wh."
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
CHUNK = 1 << 20

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class LayerError(InvalidArgumentError):
    """A layer archive that cannot or must not be applied."""


@dataclass(frozen=True)
class ApplyResult:
    diff_id: Digest
    size: int  # bytes of regular file content written
    entries: int


class HashingReader(io.RawIOBase):
    """Reads through to `raw`, hashing and counting every byte. With
    `background`, the hashing runs in a thread of its own (hashlib releases
    the GIL), overlapping the consumer's work."""

    def __init__(self, raw: BinaryIO, algorithm: str = dg.CANONICAL,
                 background: bool = False) -> None:
        self.raw = raw
        self.hash = dg.hasher(algorithm)
        self.count = 0
        self._queue: queue.SimpleQueue[bytes | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._hash_loop, name="layer-hash",
                                            daemon=True)
            self._thread.start()

    def _hash_loop(self) -> None:
        assert self._queue is not None
        while (chunk := self._queue.get()) is not None:
            self.hash.update(chunk)

    def _feed(self, data: bytes) -> None:
        self.count += len(data)
        if self._queue is not None:
            self._queue.put(data)
        else:
            self.hash.update(data)

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        data = self.raw.read(len(b))
        n = len(data)
        b[:n] = data
        self._feed(bytes(data) if not isinstance(data, bytes) else data)
        return n

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size) if size is not None and size >= 0 else self.raw.read()
        self._feed(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def stop(self) -> None:
        """End the hashing thread (idempotent); the digest is final after this."""
        if self._thread is not None and self._queue is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    @property
    def digest(self) -> Digest:
        self.stop()
        return dg.from_hash(self.hash)


class _Peek(io.RawIOBase):
    """`raw` with `head` (already read from it) put back in front."""

    def __init__(self, raw: BinaryIO, head: bytes) -> None:
        self.raw, self.head = raw, head

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = len(b)
        if self.head:
            out, self.head = self.head[:n], self.head[n:]
        else:
            out = self.raw.read(n)
        b[: len(out)] = out
        return len(out)


def decompressed(stream: BinaryIO, compression: str | None = None,
                 threaded: bool = True) -> BinaryIO:
    """A reader of the uncompressed tar in `stream`; compression is detected
    from the magic bytes when not given ('' = none, 'gzip', 'zstd'). With
    `threaded`, gzip is inflated in a thread of its own (for a caller that
    has none)."""
    head = stream.read(4)
    src: BinaryIO = _Peek(stream, head)  # type: ignore[assignment]
    if compression is None:
        if head.startswith(GZIP_MAGIC):
            compression = "gzip"
        elif head.startswith(ZSTD_MAGIC):
            compression = "zstd"
        else:
            compression = ""
    if compression == "gzip":
        try:
            from isal import igzip, igzip_threaded

            if not threaded:
                return igzip.IGzipFile(fileobj=src, mode="rb")  # type: ignore[return-value]
            return igzip_threaded.open(src, "rb", threads=1)  # type: ignore[return-value]
        except ImportError:
            import gzip

            return gzip.GzipFile(fileobj=src, mode="rb")  # type: ignore[return-value]
    if compression == "zstd":
        try:
            import zstandard
        except ImportError:
            raise UnavailableError("decompress zstd layer: python module zstandard missing")
        return zstandard.ZstdDecompressor().stream_reader(src, read_across_frames=True)  # type: ignore[return-value]
    if compression == "":
        return src  # type: ignore[return-value]
    raise LayerError(f"decompress layer: unknown compression {compression!r}")


class _Inflater:
    """Decompresses and hashes a layer in a thread of its own (isal, zlib,
    zstd and hashlib release the GIL), handing the plain tar on in chunks of
    about `CHUNK` bytes through a bounded queue: the applier thread only
    parses headers and writes files. The digest covers every byte the
    decompressor produced, whether or not the tar reader looked at it."""

    def __init__(self, stream: BinaryIO, compression: str | None,
                 algorithm: str = dg.CANONICAL) -> None:
        self.hash = dg.hasher(algorithm)
        self.count = 0
        self._plain = decompressed(stream, compression, threaded=False)
        self._owned = self._plain is not stream
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._done = False
        self._thread = threading.Thread(target=self._run, name="layer-inflate", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        item: bytes | BaseException | None = None
        try:
            while not self._stop.is_set():
                chunk = self._plain.read(CHUNK)
                if not chunk:
                    item = None
                    break
                self.hash.update(chunk)
                self.count += len(chunk)
                self._queue.put(chunk)
        except (OSError, EOFError) as exc:  # handed to the consumer, raised there
            item = exc
        except Exception as exc:  # zlib.error, IsalError, ZstdError: corrupt data
            item = LayerError(f"apply layer: decompress: {exc}")
        except BaseException as exc:
            item = exc
        if not self._stop.is_set():
            self._queue.put(item)

    def get(self) -> bytes | None:
        """The next chunk; None at the end of the stream. A decompression
        error is raised here, in the consumer's thread."""
        if self._done:
            return None
        item = self._queue.get()
        if item is None:
            self._done = True
            return None
        if isinstance(item, BaseException):
            self._done = True
            raise item
        return item

    def drain(self) -> None:
        """Read to the end, so that the digest covers the whole stream."""
        while self.get() is not None:
            pass

    def close(self) -> None:
        """Stop the thread (idempotent); the digest is final after `drain`."""
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)  # unblock a put
        self._thread.join()
        if self._owned:
            close = getattr(self._plain, "close", None)
            if close is not None:
                close()
            self._owned = False

    @property
    def digest(self) -> Digest:
        return dg.from_hash(self.hash)


def clean_name(name: str, what: str = "entry") -> str:
    """The target-relative form of a layer entry name ('' for the root).
    Refuses absolute names and names that climb out with ``..``."""
    if name.startswith("/"):
        raise LayerError(f"apply layer {what} {name!r}: absolute path refused", path=name)
    cleaned = posixpath.normpath(name) if name else "."
    if cleaned == ".." or cleaned.startswith("../"):
        raise LayerError(f"apply layer {what} {name!r}: path escapes the target", path=name)
    return "" if cleaned == "." else cleaned


class _Tree:
    """Directory fds inside the target, opened component by component with
    O_NOFOLLOW, cached by relative path."""

    def __init__(self, root: str) -> None:
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.cache: dict[str, int] = {}
        self.made: set[str] = set()  # directories made implicitly, as parents

    def close(self) -> None:
        self.forget()
        os.close(self.root_fd)

    def forget(self) -> None:
        for fd in self.cache.values():
            os.close(fd)
        self.cache.clear()

    def dir_fd(self, rel: str, create: bool, entry: str) -> int:
        """fd of directory `rel` (no symlink followed); missing directories are
        made 0755 when `create`."""
        if not rel:
            return self.root_fd
        fd = self.cache.get(rel)
        if fd is not None:
            return fd
        parent, _, base = rel.rpartition("/")
        pfd = self.dir_fd(parent, create, entry)
        try:
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=pfd)
        except FileNotFoundError:
            if not create:
                raise LayerError(
                    f"apply layer entry {entry!r}: {rel} does not exist", path=entry
                ) from None
            os.mkdir(base, 0o755, dir_fd=pfd)
            self.made.add(rel)
            fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=pfd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
                kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise LayerError(
                    f"apply layer entry {entry!r}: path component {rel} is {kind}; "
                    "refusing to resolve through it",
                    path=entry,
                ) from None
            raise
        if len(self.cache) > 512:
            self.forget()
        self.cache[rel] = fd
        return fd


def _lexists(name: str, dfd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _remove(tree: _Tree, name: str, dfd: int, st: os.stat_result | None = None) -> None:
    st = st or _lexists(name, dfd)
    if st is None:
        return
    if stat.S_ISDIR(st.st_mode):
        tree.forget()
        shutil.rmtree(name, dir_fd=dfd)
    else:
        os.unlink(name, dir_fd=dfd)


def _set_xattrs(member: tarfile.TarInfo, path: str | int, follow: bool) -> None:
    for key, value in member.pax_headers.items():
        if not key.startswith("SCHILY.xattr."):
            continue
        attr = key[len("SCHILY.xattr."):]
        raw = value.encode("utf-8", "surrogateescape")
        try:
            os.setxattr(path, attr, raw, follow_symlinks=follow)
        except OSError as exc:
            if exc.errno in (errno.ENOTSUP, errno.EPERM):
                log.debug("apply layer entry %s: xattr %s not kept: %s", member.name, attr, exc)
                continue
            raise


class Applier:
    """Applies one layer tar onto `target` (which must exist)."""

    def __init__(self, target: str, mode: str = "flatten", same_owner: bool | None = None) -> None:
        if mode not in ("flatten", "overlay"):
            raise InvalidArgumentError(f"apply layer: unknown whiteout mode {mode!r}")
        self.target = target
        self.mode = mode
        self.is_root = os.geteuid() == 0
        self.same_owner = self.is_root if same_owner is None else same_owner
        self.created: set[str] = set()
        self.dirs: list[tuple[str, tarfile.TarInfo]] = []
        self.size = 0
        self.entries = 0
        self.fresh = False
        self.parent = ""
        self.setgid_dirs: set[str] = set()
        self.umask = _umask()

    def apply(self, source: _Inflater) -> None:
        tree = _Tree(self.target)
        # into an empty target (a new snapshot), a path exists only if this
        # layer made it: most lstat, chown and chmod calls can be skipped
        self.fresh = not os.listdir(tree.root_fd)
        stream = TarStream(source.get)
        headers = TarHeaders(stream)
        try:
            while (member := headers.next()) is not None:
                self.entries += 1
                self._entry(tree, stream, member)
            tree.forget()
            # directory mtimes last: adding children changed them
            for rel, member in reversed(self.dirs):
                parent, _, base = rel.rpartition("/")
                try:
                    pfd = tree.dir_fd(parent, False, rel)
                    os.utime(base, ns=(_mtime_ns(member), _mtime_ns(member)),
                             dir_fd=pfd, follow_symlinks=False)
                except (FileNotFoundError, LayerError):
                    continue  # removed later in the same layer
        except tarfile.TarError as exc:
            raise LayerError(f"apply layer onto {self.target}: bad tar archive: {exc}") from None
        finally:
            tree.close()

    def _entry(self, tree: _Tree, stream: TarStream, m: tarfile.TarInfo) -> None:
        rel = clean_name(m.name)
        if not rel:
            return  # the root itself: its metadata belongs to the snapshot
        parent, _, base = rel.rpartition("/")
        if base.startswith(WHITEOUT_PREFIX):
            self._whiteout(tree, parent, base, m.name)
            return
        pfd = tree.dir_fd(parent, True, m.name)
        existing = None
        if not self.fresh or rel in self.created or rel in tree.made:
            existing = _lexists(base, pfd)
        self.parent = parent
        if m.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                _remove(tree, base, pfd, existing)
                existing = None
            if existing is None:
                os.mkdir(base, 0o700, dir_fd=pfd)
            self._meta(m, base, pfd, follow=False)
            self.dirs.append((rel, m))
            if m.mode & stat.S_ISGID:
                self.setgid_dirs.add(rel)
        elif m.islnk():
            src_rel = clean_name(m.linkname, "hardlink target")
            if not src_rel:
                raise LayerError(f"apply layer entry {m.name!r}: hardlink to the root refused")
            sparent, _, sbase = src_rel.rpartition("/")
            sfd = tree.dir_fd(sparent, False, m.name)
            sst = _lexists(sbase, sfd)
            if sst is None:
                raise LayerError(
                    f"apply layer entry {m.name!r}: hardlink target {m.linkname!r} not found",
                    path=m.name,
                )
            if stat.S_ISDIR(sst.st_mode):
                raise LayerError(
                    f"apply layer entry {m.name!r}: hardlink to directory {m.linkname!r}"
                )
            if existing is not None:
                if (existing.st_dev, existing.st_ino) == (sst.st_dev, sst.st_ino):
                    return
                _remove(tree, base, pfd, existing)
            os.link(sbase, base, src_dir_fd=sfd, dst_dir_fd=pfd, follow_symlinks=False)
        else:
            if existing is not None:
                _remove(tree, base, pfd, existing)
            if m.isreg():
                fd = os.open(base, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, m.mode & 0o777 if self.fresh else 0o600,
                             dir_fd=pfd)
                try:
                    stream.skip_to(m.offset_data, m.name)
                    if m.sparse is None:
                        stream.copy(fd, m.size, m.name)
                    else:
                        # the stored chunks, each at its place; the rest are holes
                        for offset, length in m.sparse:
                            if offset < 0 or length < 0 or offset + length > m.size:
                                raise LayerError(f"apply layer entry {m.name!r}: bad sparse map",
                                                 path=m.name)
                            os.lseek(fd, offset, os.SEEK_SET)
                            stream.copy(fd, length, m.name)
                        os.ftruncate(fd, m.size)
                    self.size += m.size
                    self._meta(m, fd, None, follow=True)
                finally:
                    os.close(fd)
            elif m.issym():
                os.symlink(m.linkname, base, dir_fd=pfd)
                self._meta(m, base, pfd, follow=False)
            elif m.ischr() or m.isblk() or m.isfifo():
                kind = stat.S_IFCHR if m.ischr() else stat.S_IFBLK if m.isblk() else stat.S_IFIFO
                try:
                    os.mknod(base, kind | 0o600, os.makedev(m.devmajor, m.devminor), dir_fd=pfd)
                except PermissionError:
                    log.warning("apply layer entry %s: cannot create device here, skipped",
                                m.name)
                    return
                self._meta(m, base, pfd, follow=False)
            else:
                raise LayerError(f"apply layer entry {m.name!r}: unsupported tar type {m.type!r}")
        self.created.add(rel)

    def _meta(self, m: tarfile.TarInfo, where: str | int, dfd: int | None, follow: bool) -> None:
        """Ownership, mode, xattrs, times; `where` is an fd or a name in `dfd`."""
        is_link = m.issym()
        # a new entry of a fresh target is already root's (unless its parent is
        # setgid) and has the mode it was opened with, less the umask
        owned = (self.fresh and m.uid == 0 and m.gid == 0 and self.is_root
                 and self.parent not in self.setgid_dirs)
        if isinstance(where, int):
            if self.same_owner and not owned:
                os.fchown(where, m.uid, m.gid)
            mode = m.mode & 0o7777
            if not (self.fresh and mode == (mode & 0o777 & ~self.umask)):
                os.fchmod(where, mode)
            _set_xattrs(m, where, True)
            mtime = _mtime_ns(m)
            os.utime(where, ns=(mtime, mtime))
            return
        assert dfd is not None
        if self.same_owner and not owned:
            os.chown(where, m.uid, m.gid, dir_fd=dfd, follow_symlinks=False)
        if not is_link:
            # fchmodat cannot refuse symlinks on Linux; `where` is an entry made
            # just now by this applier and is not one
            os.chmod(where, m.mode & 0o7777, dir_fd=dfd)
        if any(k.startswith("SCHILY.xattr.") for k in m.pax_headers):
            # /proc/self/fd/N names the directory we hold; the last component is not followed
            _set_xattrs(m, f"/proc/self/fd/{dfd}/{where}", False)
        if not m.isdir():
            mtime = _mtime_ns(m)
            os.utime(where, ns=(mtime, mtime), dir_fd=dfd,
                     follow_symlinks=False)

    def _whiteout(self, tree: _Tree, parent: str, base: str, name: str) -> None:
        pfd = tree.dir_fd(parent, True, name)
        if base == WHITEOUT_OPAQUE:
            if self.mode == "overlay":
                os.setxattr(f"/proc/self/fd/{pfd}", OVERLAY_OPAQUE_XATTR, b"y")
                return
            for child in os.listdir(pfd):
                crel = f"{parent}/{child}" if parent else child
                if crel not in self.created:
                    _remove(tree, child, pfd)
            return
        if base.startswith(WHITEOUT_META_PREFIX):
            return  # other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): ignored as Docker does
        victim = base[len(WHITEOUT_PREFIX):]
        if not victim or victim in (".", "..") or "/" in victim:
            raise LayerError(f"apply layer whiteout {name!r}: invalid name")
        if self.mode == "overlay":
            _remove(tree, victim, pfd)
            os.mknod(victim, stat.S_IFCHR | 0o600, os.makedev(0, 0), dir_fd=pfd)
            self.created.add(f"{parent}/{victim}" if parent else victim)
            return
        _remove(tree, victim, pfd)


def apply_layer(target: str, stream: BinaryIO, compression: str | None = None,
                mode: str = "flatten",
                on_progress: Callable[[int], None] | None = None) -> ApplyResult:
    """Apply the layer archive read from `stream` (compressed or not) onto
    `target`; return its diff ID (digest of the uncompressed tar)."""
    source = _Inflater(stream, compression)
    applier = Applier(target, mode)
    try:
        applier.apply(source)
        source.drain()
    except OSError as exc:
        if isinstance(exc, LayerError):
            raise
        raise LayerError(
            f"apply layer onto {target}: {exc.strerror or exc}", errno=exc.errno
        ) from exc
    except EOFError as exc:
        raise LayerError(f"apply layer onto {target}: truncated archive: {exc}") from None
    finally:
        source.close()
    return ApplyResult(source.digest, applier.size, applier.entries)


def _umask() -> int:
    """The process umask, read without changing it (os.umask would, for every thread)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o777  # unknown: never skip a chmod


def _mtime_ns(m: tarfile.TarInfo) -> int:
    """The entry's mtime in ns, exact when a PAX header gives it (a float would
    round it to about 100 ns)."""
    text = m.pax_headers.get("mtime")
    if text:
        whole, _, frac = text.partition(".")
        try:
            sign = -1 if whole.startswith("-") else 1
            return int(whole) * 1_000_000_000 + sign * int((frac + "000000000")[:9] or 0)
        except ValueError:
            pass
    return round(m.mtime * 1_000_000_000)
