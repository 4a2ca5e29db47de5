"""Layer diffs: the changes of an active snapshot as a layer tar (for
`commit` and `build`), with OCI whiteouts.

- overlay: the snapshot's upper directory *is* the diff; overlayfs whiteouts
  (0/0 character devices, ``trusted.overlay.opaque=y``) become ``.wh.<name>``
  and ``.wh..wh..opq`` entries;
- naive (copy snapshots): the tree is compared with its parent's, as Docker's
  naive diff driver does: an entry is changed when its type, mode, owner,
  size, mtime, link target or device differs; removed entries get whiteouts.
"""

from __future__ import annotations

import os
import stat
import tarfile
from typing import BinaryIO

from berth.image.layers import WHITEOUT_OPAQUE, WHITEOUT_PREFIX
from berth.image.snapshots import OverlaySnapshotter, Snapshotter
from berth.image.tarball import _xattrs
from berth.oci import digest as dg
from berth.oci.digest import Digest


class _HashingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.hash = dg.hasher()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.out.write(data) or len(data)

    def flush(self) -> None:
        self.out.flush()


def _add(tf: tarfile.TarFile, path: str, arc: str) -> None:
    ti = tf.gettarinfo(path, arc)
    ti.uname = ti.gname = ""
    ti.pax_headers = {k: v for k, v in _xattrs(path).items()
                      if not k.startswith("SCHILY.xattr.trusted.overlay.")}
    if ti.isreg():
        with open(path, "rb") as f:
            tf.addfile(ti, f)
    else:
        tf.addfile(ti)


def _whiteout(tf: tarfile.TarFile, arc: str) -> None:
    ti = tarfile.TarInfo(arc)
    ti.mode = 0o600
    tf.addfile(ti)


def _is_overlay_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _overlay_diff(tf: tarfile.TarFile, upper: str) -> None:
    def walk(d: str, rel: str) -> None:
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            arc = f"{rel}{name}"
            st = os.lstat(path)
            if _is_overlay_whiteout(st):
                _whiteout(tf, f"{rel}{WHITEOUT_PREFIX}{name}")
                continue
            _add(tf, path, arc)
            if stat.S_ISDIR(st.st_mode):
                try:
                    opaque = os.getxattr(path, "trusted.overlay.opaque",
                                         follow_symlinks=False) == b"y"
                except OSError:
                    opaque = False
                if opaque:
                    _whiteout(tf, f"{arc}/{WHITEOUT_OPAQUE}")
                walk(path, f"{arc}/")

    walk(upper, "")


def _changed(a: os.stat_result, b: os.stat_result, pa: str, pb: str) -> bool:
    if stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
        return True
    if (a.st_mode, a.st_uid, a.st_gid) != (b.st_mode, b.st_uid, b.st_gid):
        return True
    if stat.S_ISDIR(a.st_mode):
        return False
    if stat.S_ISLNK(a.st_mode):
        return os.readlink(pa) != os.readlink(pb)
    if stat.S_ISCHR(a.st_mode) or stat.S_ISBLK(a.st_mode):
        return a.st_rdev != b.st_rdev
    return a.st_size != b.st_size or a.st_mtime_ns != b.st_mtime_ns or _xattrs(pa) != _xattrs(pb)


def _naive_diff(tf: tarfile.TarFile, lower: str | None, upper: str) -> None:
    def add_tree(d: str, rel: str) -> None:
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            _add(tf, path, f"{rel}{name}")
            if os.path.isdir(path) and not os.path.islink(path):
                add_tree(path, f"{rel}{name}/")

    def walk(lo: str, up: str, rel: str) -> None:
        lower_names = set(os.listdir(lo))
        upper_names = sorted(os.listdir(up))
        for name in sorted(lower_names - set(upper_names)):
            _whiteout(tf, f"{rel}{WHITEOUT_PREFIX}{name}")
        for name in upper_names:
            pu, pl = os.path.join(up, name), os.path.join(lo, name)
            su = os.lstat(pu)
            arc = f"{rel}{name}"
            if name not in lower_names:
                _add(tf, pu, arc)
                if stat.S_ISDIR(su.st_mode):
                    add_tree(pu, f"{arc}/")
                continue
            sl = os.lstat(pl)
            if _changed(sl, su, pl, pu):
                _add(tf, pu, arc)
            if stat.S_ISDIR(su.st_mode):
                if stat.S_ISDIR(sl.st_mode):
                    walk(pl, pu, f"{arc}/")
                else:
                    add_tree(pu, f"{arc}/")

    if lower is None:
        add_tree(upper, "")
    else:
        walk(lower, upper, "")


def write_diff(sn: Snapshotter, key: str, out: BinaryIO) -> tuple[Digest, int]:
    """Write the changes of active snapshot `key` against its parent to `out`
    as an uncompressed tar; return (diff ID, size)."""
    info = sn.stat(key)
    upper = sn.fs(info)
    w = _HashingWriter(out)
    with tarfile.open(fileobj=w, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[arg-type]
        if isinstance(sn, OverlaySnapshotter):
            _overlay_diff(tf, upper)
        else:
            lower = sn.fs(sn.stat(info.parent)) if info.parent else None
            _naive_diff(tf, lower, upper)
    return dg.from_hash(w.hash), w.size

