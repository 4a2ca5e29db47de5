"""Tar archives: making tars of directory trees (a rootfs as one layer),
keeping hardlinks, devices, ownership, modes, mtimes and xattrs (as PAX
``SCHILY.xattr.*``); reading a tar stream forward, fast, for layer apply."""

import os
import tarfile
from collections.abc import Callable


def _xattrs(path: str) -> dict[str, str]:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in names:
        if name.startswith("security.selinux"):
            continue
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out[f"SCHILY.xattr.{name}"] = value.decode("utf-8", "surrogateescape")
    return out


def add_tree(tf: tarfile.TarFile, root: str, prefix: str = "") -> None:
    """Add the content of `root` (not `root` itself) in sorted order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted(dirnames) + sorted(filenames):
            path = os.path.join(dirpath, name)
            arc = name if rel_dir == "." else f"{rel_dir}/{name}"
            ti = tf.gettarinfo(path, prefix + arc)
            ti.uname = ti.gname = ""
            ti.pax_headers = _xattrs(path)
            if ti.isreg():
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
            else:
                tf.addfile(ti)
        # symlinks to directories are listed in dirnames: os.walk does not follow them


def rootfs_to_tar(root: str, dest: str) -> None:
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tf:
        add_tree(tf, root)


class TarStream:
    """A tar stream given as chunks by `next_chunk` (None at the end), read
    forward only. Headers are parsed by the standard library
    (`tarfile.TarInfo.fromtarfile` needs only `read` and `tell`); file data
    is written from the chunks without copying them."""

    def __init__(self, next_chunk: Callable[[], bytes | None]) -> None:
        self._next = next_chunk
        self.buf = b""
        self.pos = 0
        self.base = 0  # stream offset of buf[0]

    def _fill(self) -> bool:
        chunk = self._next()
        if chunk is None:
            return False
        self.base += len(self.buf)
        self.buf, self.pos = chunk, 0
        return True

    def tell(self) -> int:
        return self.base + self.pos

    def read(self, n: int) -> bytes:
        end = self.pos + n
        if end <= len(self.buf):
            out = self.buf[self.pos:end]
            self.pos = end
            return out
        parts = [self.buf[self.pos:]]
        need = n - len(parts[0])
        self.pos = len(self.buf)
        while need > 0 and self._fill():
            part = self.buf[:need]
            parts.append(part)
            need -= len(part)
            self.pos = len(part)
        return b"".join(parts)

    def copy(self, fd: int | None, n: int, name: str) -> None:
        """Write the next `n` bytes to `fd` (or skip them when None)."""
        while n > 0:
            if self.pos == len(self.buf) and not self._fill():
                raise tarfile.ReadError(f"truncated archive in {name!r}")
            take = min(n, len(self.buf) - self.pos)
            if fd is not None:
                view = memoryview(self.buf)[self.pos:self.pos + take]
                while view:
                    view = view[os.write(fd, view):]
            self.pos += take
            n -= take

    def skip_to(self, offset: int, name: str) -> None:
        here = self.tell()
        if offset < here:  # the standard library never asks for this
            raise tarfile.ReadError(f"offset {offset} of {name!r} is behind {here}")
        self.copy(None, offset - here, name)


class TarHeaders:
    """What `tarfile.TarInfo.fromtarfile` reads and sets on a TarFile: the
    stream, the name encoding, global PAX headers and the offset of the next
    header. Everything about header formats (ustar, GNU long names and
    sparse maps, PAX, base-256 numbers, checksums) stays the standard
    library's."""

    def __init__(self, stream: TarStream) -> None:
        self.fileobj = stream
        self.offset = 0
        self.encoding = tarfile.ENCODING
        self.errors = "surrogateescape"
        self.pax_headers: dict[str, str] = {}

    def next(self) -> tarfile.TarInfo | None:
        """The next member, None at the end of the archive; as
        `tarfile.TarFile.next` decides it."""
        self.fileobj.skip_to(self.offset, "the next header")
        try:
            return tarfile.TarInfo.fromtarfile(self)  # type: ignore[arg-type]
        except tarfile.EOFHeaderError:
            return None
        except (tarfile.InvalidHeaderError, tarfile.TruncatedHeaderError) as exc:
            if self.offset == 0:
                raise tarfile.ReadError(str(exc)) from None
            return None
        except tarfile.EmptyHeaderError:
            if self.offset == 0:
                raise tarfile.ReadError("empty file") from None
            return None
        except tarfile.SubsequentHeaderError as exc:
            raise tarfile.ReadError(str(exc)) from None
