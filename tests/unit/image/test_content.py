import io
import os
import threading

import pytest

from berth.errors import NotFoundError
from berth.image.content import ContentStore, DigestMismatchError
from berth.oci import digest as dg
from berth.paths import Paths


@pytest.fixture
def store(tmp_path):
    return ContentStore(Paths(str(tmp_path / "root"), str(tmp_path / "state")))


def test_write_read_delete(store):
    d = store.write(b"hello")
    assert d == dg.from_bytes(b"hello")
    assert store.read(d) == b"hello" and store.size(d) == 5
    assert list(store.list()) == [d]
    assert store.path(d).endswith(f"blobs/sha256/{d.hex}")
    store.delete(d)
    with pytest.raises(NotFoundError):
        store.read(d)


def test_mismatch_not_committed(store):
    want = dg.from_bytes(b"right")
    with pytest.raises(DigestMismatchError, match="content digest is"):
        store.write(b"wrong", want)
    assert not store.exists(want)
    with pytest.raises(DigestMismatchError, match="size 3 does not match"):
        store.write_from(io.BytesIO(b"abc"), str(want), size=5)
    assert list(store.list()) == []


def test_resume_interrupted_ingest(store):
    data = os.urandom(300_000)
    want = dg.from_bytes(data)
    with store.writer(f"pull-{want}", want, len(data)) as w:
        w.write(data[:100_000])  # interrupted: no commit
    assert store.ingest_status(f"pull-{want}") == 100_000
    with store.writer(f"pull-{want}", want, len(data)) as w:
        assert w.offset == 100_000
        w.write(data[w.offset:])
        w.commit()
    assert store.read(want) == data
    assert store.ingest_status(f"pull-{want}") is None


def test_sha512_blob(store):
    data = b"x" * 10
    d = dg.from_bytes(data, "sha512")
    assert store.write(data, d) == d
    assert store.path(d).endswith(f"sha512/{d.hex}")


def test_concurrent_writers_of_one_blob(store):
    data = os.urandom(2_000_000)
    want = dg.from_bytes(data)
    errors, wrote = [], []

    def pull():
        try:
            with store.writer(f"pull-{want}", want, len(data)) as w:
                if w.committed:
                    return
                w.truncate()
                for i in range(0, len(data), 65536):
                    w.write(data[i : i + 65536])
                w.commit()
                wrote.append(1)
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=pull) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(wrote) == 1
    assert store.read(want) == data
