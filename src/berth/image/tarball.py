"""Making tars of directory trees (a rootfs as one layer), keeping hardlinks,
devices, ownership, modes, mtimes and xattrs (as PAX ``SCHILY.xattr.*``)."""

import os
import tarfile


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
