import gzip
import io
import os
import stat
import tarfile

import pytest

from berth.image.layers import LayerError, apply_layer
from berth.oci import digest as dg


def make_tar(entries, compression=""):
    """entries: list of (name, kind, extra) with kind in file/dir/sym/link/fifo."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            name, kind = e[0], e[1]
            extra = e[2] if len(e) > 2 else {}
            ti = tarfile.TarInfo(name)
            ti.mtime = extra.get("mtime", 1_600_000_000)
            ti.mode = extra.get("mode", 0o644 if kind == "file" else 0o755)
            ti.uid = extra.get("uid", 0)
            ti.gid = extra.get("gid", 0)
            if "xattrs" in extra:
                ti.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in extra["xattrs"].items()}
            data = None
            if kind == "file":
                data = extra.get("data", b"")
                ti.size = len(data)
            elif kind == "dir":
                ti.type = tarfile.DIRTYPE
            elif kind == "sym":
                ti.type = tarfile.SYMTYPE
                ti.linkname = extra["target"]
            elif kind == "link":
                ti.type = tarfile.LNKTYPE
                ti.linkname = extra["target"]
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    raw = buf.getvalue()
    if compression == "gzip":
        return gzip.compress(raw), raw
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(raw), raw
    return raw, raw


def apply(target, entries, compression="", mode="flatten"):
    data, raw = make_tar(entries, compression)
    res = apply_layer(str(target), io.BytesIO(data), mode=mode)
    assert res.diff_id == dg.from_bytes(raw)
    return res


@pytest.mark.parametrize("compression", ["", "gzip", "zstd"])
def test_apply_basic_entries(tmp_path, compression):
    root = tmp_path / "root"
    root.mkdir()
    res = apply(
        root,
        [
            ("etc", "dir", {"mode": 0o750, "mtime": 1_000_000}),
            ("etc/hosts", "file", {"data": b"127.0.0.1 x\n", "mode": 0o640, "mtime": 1234}),
            ("bin/sh", "file", {"data": b"#!", "mode": 0o755}),
            ("bin/ash", "link", {"target": "bin/sh"}),
            ("bin/abs", "sym", {"target": "/etc/hosts"}),
            ("run/fifo", "fifo"),
            ("data", "file", {"data": b"x", "xattrs": {"user.test": "v1"}}),
        ],
        compression,
    )
    assert res.entries == 7
    assert (root / "etc/hosts").read_bytes() == b"127.0.0.1 x\n"
    st = os.stat(root / "etc/hosts")
    assert stat.S_IMODE(st.st_mode) == 0o640 and st.st_mtime == 1234
    assert stat.S_IMODE(os.stat(root / "etc").st_mode) == 0o750
    assert os.stat(root / "etc").st_mtime == 1_000_000
    assert os.stat(root / "bin/ash").st_ino == os.stat(root / "bin/sh").st_ino
    assert os.readlink(root / "bin/abs") == "/etc/hosts"
    assert stat.S_ISFIFO(os.lstat(root / "run/fifo").st_mode)
    try:
        assert os.getxattr(root / "data", "user.test") == b"v1"
    except OSError:
        pytest.skip("user xattrs not supported on this filesystem")


def test_whiteouts_flatten(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    apply(root, [("a/x", "file"), ("a/y", "file"), ("b/z", "file"), ("c", "file")])
    apply(root, [("a/.wh..wh..opq", "file"), ("a/new", "file"), ("b/.wh.z", "file"),
                 (".wh.c", "file")])
    assert sorted(os.listdir(root / "a")) == ["new"]
    assert os.listdir(root / "b") == []
    assert not (root / "c").exists()


def test_opaque_after_sibling_in_same_layer_keeps_sibling(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    apply(root, [("a/old", "file")])
    apply(root, [("a/new", "file"), ("a/.wh..wh..opq", "file")])
    assert os.listdir(root / "a") == ["new"]


def test_whiteouts_overlay_format(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("overlay whiteouts are character devices: need root")
    root = tmp_path / "upper"
    root.mkdir()
    apply(root, [("a/.wh..wh..opq", "file"), ("b/.wh.gone", "file")], mode="overlay")
    st = os.lstat(root / "b/gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(root / "a", "trusted.overlay.opaque") == b"y"


def test_replace_kinds(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    apply(root, [("p/q", "file"), ("f", "file", {"data": b"old"})])
    apply(root, [("p", "file", {"data": b"now a file"}), ("f", "dir")])
    assert (root / "p").read_bytes() == b"now a file"
    assert (root / "f").is_dir()


def _outside_untouched(tmp_path):
    return sorted(p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "entries, message",
    [
        ([("../escape", "file", {"data": b"pwned"})], "path escapes the target"),
        ([("a/../../escape", "file", {"data": b"pwned"})], "path escapes the target"),
        ([("/escape", "file", {"data": b"pwned"})], "absolute path refused"),
        ([("link", "sym", {"target": ".."}), ("link/escape", "file", {"data": b"pwned"})],
         "is a symlink"),
        ([("link", "sym", {"target": "/"}), ("link/escape", "file", {"data": b"pwned"})],
         "is a symlink"),
        ([("shadow", "link", {"target": "/etc/shadow"})], "absolute path refused"),
        ([("shadow", "link", {"target": "../../../../../../etc/shadow"})],
         "path escapes the target"),
        ([("ln", "sym", {"target": "/etc"}), ("shadow", "link", {"target": "ln/shadow"})],
         "is a symlink"),
        ([("ln", "sym", {"target": ".."}), ("ln/.wh.escape", "file")], "is a symlink"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-parent-dotdot", "symlink-parent-root",
         "hardlink-absolute", "hardlink-dotdot", "hardlink-through-symlink",
         "whiteout-through-symlink"],
)
def test_hostile_layers_refused(tmp_path, entries, message):
    target = tmp_path / "t" / "root"
    target.mkdir(parents=True)
    (tmp_path / "t" / "escape").write_bytes(b"original")
    before = sorted(os.listdir(tmp_path / "t"))
    with pytest.raises(LayerError, match=message):
        apply(target, entries)
    assert sorted(os.listdir(tmp_path / "t")) == before
    assert (tmp_path / "t" / "escape").read_bytes() == b"original"
    assert _outside_untouched(tmp_path) == ["t"]


def test_file_replacing_symlink_does_not_write_through_it(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"original")
    root = tmp_path / "root"
    root.mkdir()
    apply(root, [("f", "sym", {"target": str(outside)}), ("f", "file", {"data": b"new"})])
    assert outside.read_bytes() == b"original"
    assert (root / "f").read_bytes() == b"new" and not (root / "f").is_symlink()


def test_truncated_layer(tmp_path):
    data, _ = make_tar([("big", "file", {"data": b"x" * 100_000})], "gzip")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerError):
        apply_layer(str(root), io.BytesIO(data[: len(data) // 2]))


def test_modes_beyond_umask_and_special_bits(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    old = os.umask(0o077)
    try:
        apply(root, [("d", "dir", {"mode": 0o2775}), ("d/f", "file", {"mode": 0o4755}),
                     ("d/w", "file", {"mode": 0o666}), ("s", "dir", {"mode": 0o1777}),
                     ("ro", "file", {"mode": 0o444, "data": b"x"})])
    finally:
        os.umask(old)
    modes = {p: stat.S_IMODE(os.lstat(root / p).st_mode) for p in ("d", "d/f", "d/w", "s", "ro")}
    assert modes == {"d": 0o2775, "d/f": 0o4755, "d/w": 0o666, "s": 0o1777, "ro": 0o444}
    assert (root / "ro").read_bytes() == b"x"


def test_pax_mtime_kept_to_the_nanosecond(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        ti = tarfile.TarInfo("f")
        ti.pax_headers = {"mtime": "1700000000.123456789"}
        tf.addfile(ti, io.BytesIO(b""))
    root = tmp_path / "root"
    root.mkdir()
    apply_layer(str(root), io.BytesIO(buf.getvalue()))
    assert os.stat(root / "f").st_mtime_ns == 1700000000123456789


# the tar reader: standard-library headers over the inflater's chunks ---------------------


def _tree(root):
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            data = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(path)
            out[os.path.relpath(path, root)] = (st.st_mode, st.st_size, data)
    return out


def test_entries_across_chunk_boundaries(tmp_path):
    # files larger than a chunk, and headers that straddle chunk boundaries
    import random

    from berth.image.layers import CHUNK

    rnd = random.Random(7)
    entries = [("big", "file", {"data": rnd.randbytes(3 * CHUNK + 123)})]
    for i in range(400):
        entries.append((f"d{i % 7}/f{i}", "file", {"data": rnd.randbytes(rnd.randrange(0, 20_000))}))
    entries.append(("tail", "file", {"data": b"end"}))
    for compression in ("", "gzip"):
        root = tmp_path / f"root-{compression or 'plain'}"
        root.mkdir()
        res = apply(root, entries, compression)
        assert res.entries == len(entries)
        assert res.size == sum(len(e[2]["data"]) for e in entries)
        for name, _, extra in entries:
            assert (root / name).read_bytes() == extra["data"], name


def test_long_names_gnu_and_pax(tmp_path):
    long_dir = "d" * 120
    long_name = f"{long_dir}/{'f' * 150}"
    link_target = f"{long_dir}/{'t' * 140}"
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=fmt) as tf:
            ti = tarfile.TarInfo(long_name)
            ti.size, ti.mtime = 5, 1_600_000_000
            tf.addfile(ti, io.BytesIO(b"hello"))
            ti = tarfile.TarInfo(f"{long_dir}/{'s' * 130}")
            ti.type, ti.linkname = tarfile.SYMTYPE, link_target
            tf.addfile(ti)
            ti = tarfile.TarInfo(f"{long_dir}/{'h' * 130}")
            ti.type, ti.linkname = tarfile.LNKTYPE, long_name
            tf.addfile(ti)
        root = tmp_path / f"root-{fmt}"
        root.mkdir()
        res = apply_layer(str(root), io.BytesIO(buf.getvalue()))
        assert res.entries == 3 and res.diff_id == dg.from_bytes(buf.getvalue())
        assert (root / long_name).read_bytes() == b"hello"
        assert os.readlink(root / long_dir / ("s" * 130)) == link_target
        assert os.stat(root / long_dir / ("h" * 130)).st_ino == os.stat(root / long_name).st_ino


@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_sparse_files(tmp_path, fmt):
    import shutil
    import subprocess

    if not shutil.which("tar"):
        pytest.skip("GNU tar not installed")
    src = tmp_path / "src"
    src.mkdir()
    content = bytearray(3 << 20)
    content[0:5] = b"start"
    content[(1 << 20) + 17:(1 << 20) + 21] = b"mid!"
    content[-3:] = b"end"
    with open(src / "sparse", "wb") as f:
        f.write(content[:5])
        f.seek((1 << 20) + 17)
        f.write(content[(1 << 20) + 17:(1 << 20) + 21])
        f.seek(len(content) - 3)
        f.write(content[-3:])
    (src / "after").write_bytes(b"after the sparse file")
    tar = tmp_path / "layer.tar"
    subprocess.run(["tar", f"--format={fmt}", "--sparse", "-C", str(src), "-cf", str(tar),
                    "sparse", "after"], check=True)
    with tarfile.open(tar) as tf:
        assert tf.getmember("sparse").sparse is not None
    root = tmp_path / "root"
    root.mkdir()
    with open(tar, "rb") as f:
        res = apply_layer(str(root), f)
    assert res.entries == 2
    assert (root / "sparse").read_bytes() == bytes(content)
    assert os.stat(root / "sparse").st_blocks * 512 < 1 << 20  # holes stay holes
    assert (root / "after").read_bytes() == b"after the sparse file"
    with tarfile.open(tar) as tf:
        tf.extractall(tmp_path / "stdlib")
    assert _tree(root) == _tree(tmp_path / "stdlib")


def test_truncated_in_file_data_uncompressed(tmp_path):
    data, _ = make_tar([("a", "file", {"data": b"a"}), ("big", "file", {"data": b"x" * 100_000})])
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerError, match="truncated"):
        apply_layer(str(root), io.BytesIO(data[:5000]))


def test_corrupt_gzip_refused(tmp_path):
    data, _ = make_tar([("big", "file", {"data": os.urandom(200_000)})], "gzip")
    bad = data[:1000] + bytes(5000) + data[6000:]
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerError):
        apply_layer(str(root), io.BytesIO(bad))


def test_multi_member_gzip(tmp_path):
    _, raw = make_tar([("a", "file", {"data": b"first"}), ("b", "file", {"data": b"second"})])
    half = len(raw) // 2
    data = gzip.compress(raw[:half]) + gzip.compress(raw[half:])
    root = tmp_path / "root"
    root.mkdir()
    res = apply_layer(str(root), io.BytesIO(data))
    assert res.diff_id == dg.from_bytes(raw)
    assert (root / "a").read_bytes() == b"first" and (root / "b").read_bytes() == b"second"


def test_empty_and_end_only_archives(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerError, match="empty file"):
        apply_layer(str(root), io.BytesIO(b""))
    # Docker's empty layer: the end-of-archive blocks alone
    res = apply_layer(str(root), io.BytesIO(gzip.compress(bytes(1024))))
    assert res.entries == 0 and res.diff_id == dg.from_bytes(bytes(1024))
    assert os.listdir(root) == []


def test_trailing_data_after_the_archive_is_hashed(tmp_path):
    # the diff ID covers the whole uncompressed stream, as the tar reader stops early
    _, raw = make_tar([("a", "file", {"data": b"x"})])
    raw += bytes(1 << 21)
    root = tmp_path / "root"
    root.mkdir()
    res = apply_layer(str(root), io.BytesIO(gzip.compress(raw)))
    assert res.diff_id == dg.from_bytes(raw) and res.entries == 1


def test_hostile_layer_stops_the_inflater(tmp_path):
    import threading

    big = os.urandom(4 << 20)
    data, _ = make_tar([("../escape", "file", {"data": b"x"}), ("big", "file", {"data": big}),
                        ("big2", "file", {"data": big}), ("big3", "file", {"data": big})],
                       "gzip")
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(LayerError, match="escapes"):
        apply_layer(str(root), io.BytesIO(data))
    assert not [t for t in threading.enumerate() if t.name == "layer-inflate"]
