import io
import os
import random
import tarfile

import pytest

from berth.image.tarball import TarHeaders, TarStream


def _sample_tar():
    rnd = random.Random(11)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for i in range(30):
            data = rnd.randbytes(rnd.randrange(0, 3000))
            ti = tarfile.TarInfo(f"dir{i % 3}/{'n' * (i * 7)}{i}")  # long names: PAX headers
            ti.size = len(data)
            ti.pax_headers = {"SCHILY.xattr.user.k": f"v{i}"} if i % 4 == 0 else {}
            tf.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("link")
        ti.type, ti.linkname = tarfile.SYMTYPE, "dir0/" + "x" * 200
        tf.addfile(ti)
    return buf.getvalue()


def _chunks(data, sizes):
    out, i, k = [], 0, 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        out.append(data[i:i + n])
        i, k = i + n, k + 1
    return iter(out)


def _read_all(data, sizes, tmp_path):
    chunks = _chunks(data, sizes)
    stream = TarStream(lambda: next(chunks, None))
    headers = TarHeaders(stream)
    out = []
    while (m := headers.next()) is not None:
        content = None
        if m.isreg():
            stream.skip_to(m.offset_data, m.name)
            path = tmp_path / "out"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                stream.copy(fd, m.size, m.name)
            finally:
                os.close(fd)
            content = path.read_bytes()
        out.append((m.name, m.type, m.linkname, dict(m.pax_headers), content))
    return out


@pytest.mark.parametrize("sizes", [[1], [7, 512, 3], [511, 513], [1 << 20]],
                         ids=["bytes", "odd", "around-blocks", "one-chunk"])
def test_same_members_as_tarfile_whatever_the_chunking(tmp_path, sizes):
    data = _sample_tar()
    expected = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        for m in tf:
            content = tf.extractfile(m).read() if m.isreg() else None
            expected.append((m.name, m.type, m.linkname, dict(m.pax_headers), content))
    assert _read_all(data, sizes, tmp_path) == expected


def test_truncated_data_is_an_error(tmp_path):
    data = _sample_tar()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
        m = next(m for m in tf if m.size > 1000)
    with pytest.raises(tarfile.ReadError, match="truncated"):
        _read_all(data[:m.offset_data + m.size // 2], [512], tmp_path)


def test_skipping_backwards_refused():
    stream = TarStream(iter([b"x" * 1024, None]).__next__)
    stream.read(600)
    with pytest.raises(tarfile.ReadError, match="behind"):
        stream.skip_to(512, "m")
