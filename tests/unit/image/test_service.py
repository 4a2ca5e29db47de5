import fcntl
import gzip
import logging
import os
import random
import threading
import time

import pytest

from berth.errors import UnavailableError
from berth.image.content import DigestMismatchError
from berth.image.layers import LayerError
from berth.image.service import ImageService, LayerBlob, NoProgress, _TailedStore
from berth.oci import digest as dg
from berth.oci import image as oi
from berth.paths import Paths
from tests.unit.image.test_layers import make_tar


def test_gc_waits_for_leases(tmp_path):
    svc = ImageService(Paths(str(tmp_path / "root"), str(tmp_path / "state")), "copy")
    orphan = svc.content.write(b"not referenced by any image")
    done = threading.Event()

    def gc():
        svc.gc()
        done.set()

    with svc.lease():
        fd = os.open(str(tmp_path / "root" / "gc.lock"), os.O_RDWR)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                raise AssertionError("an exclusive lock was granted during a lease")
            except BlockingIOError:
                pass
        finally:
            os.close(fd)
        t = threading.Thread(target=gc)
        t.start()
        assert not done.is_set() and svc.content.exists(orphan)
    t.join()
    assert done.is_set() and not svc.content.exists(orphan)
    svc.close()


# unpacking a layer while it downloads --------------------------------------------------

def _layer(entries):
    data, raw = make_tar(entries, "gzip")
    desc = oi.Descriptor(oi.OCI_LAYER_GZIP, str(dg.from_bytes(data)), len(data))
    return desc, LayerBlob(dg.from_bytes(data), oi.OCI_LAYER_GZIP, len(data), dg.from_bytes(raw)), data


def _fake_fetch(svc, pieces, fail_after=None, restart_after=None, wait=None):
    """A registry client's fetch_blob: writes `pieces` into the ingest through
    the store it is given, reporting each one, slowly; can fail or restart."""

    def fetch(desc, tail):
        store = _TailedStore(svc.content, tail)
        with store.writer(f"pull-{desc.digest}", desc.digest, desc.size) as w:
            for i, piece in enumerate(pieces):
                if i == fail_after:
                    raise UnavailableError("pull blob: transfer broken")
                if i == restart_after:
                    if wait is not None:
                        wait()
                    w.truncate()  # as when a server ignores Range
                w.write(piece)
                tail.advanced(len(piece))
                time.sleep(0.005)
            return w.commit()

    return fetch


def _svc(tmp_path):
    return ImageService(Paths(str(tmp_path / "root"), str(tmp_path / "state")), "copy")


def _entries():
    rnd = random.Random(3)
    return [(f"d/f{i}", "file", {"data": rnd.randbytes(rnd.randrange(1, 40_000))})
            for i in range(60)]


def _pieces(data, n=64 << 10):
    return [data[i:i + n] for i in range(0, len(data), n)]


def test_layer_unpacked_while_it_downloads(tmp_path):
    svc = _svc(tmp_path)
    entries = _entries()
    desc, layer, data = _layer(entries)
    target = tmp_path / "t"
    target.mkdir()
    res = svc._fetch_and_apply(_fake_fetch(svc, _pieces(data)), desc, layer, str(target),
                               "flatten", NoProgress())
    assert res.diff_id == layer.diff_id and res.entries == len(entries)
    assert svc.content.read(desc.digest) == data  # committed, verified
    for name, _, extra in entries:
        assert (target / name).read_bytes() == extra["data"]
    svc.close()


def test_download_failure_is_the_error(tmp_path):
    svc = _svc(tmp_path)
    desc, layer, data = _layer(_entries())
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(UnavailableError, match="transfer broken"):
        svc._fetch_and_apply(_fake_fetch(svc, _pieces(data), fail_after=3), desc, layer,
                             str(target), "flatten", NoProgress())
    assert not svc.content.exists(desc.digest)
    svc.close()


def test_digest_mismatch_while_streaming_is_refused(tmp_path):
    svc = _svc(tmp_path)
    desc, layer, data = _layer(_entries())
    evil = bytearray(data)
    evil[len(evil) // 2] ^= 0xFF
    target = tmp_path / "t"
    target.mkdir()
    with pytest.raises(DigestMismatchError):
        svc._fetch_and_apply(_fake_fetch(svc, _pieces(bytes(evil))), desc, layer, str(target),
                             "flatten", NoProgress())
    assert not svc.content.exists(desc.digest)
    svc.close()


def test_restart_under_the_unpacker_unpacks_the_stored_blob(tmp_path, caplog):
    svc = _svc(tmp_path)
    entries = _entries()
    desc, layer, data = _layer(entries)
    # a stale partial ingest that is not this blob's prefix, then the server
    # ignores Range and the download starts again from byte 0
    junk = gzip.compress(make_tar([("stale", "file", {"data": os.urandom(200_000)})])[0])
    target = tmp_path / "t"
    target.mkdir()
    holder = {}

    def wait_for_reader():
        deadline = time.monotonic() + 10
        while holder["tail"].count == 0 and time.monotonic() < deadline:
            time.sleep(0.005)

    inner = _fake_fetch(svc, [junk, *_pieces(data)], restart_after=1, wait=wait_for_reader)

    def fetch(desc, tail):
        holder["tail"] = tail
        return inner(desc, tail)

    with caplog.at_level(logging.INFO, logger="berth.image.service"):
        res = svc._fetch_and_apply(fetch, desc, layer, str(target), "flatten", NoProgress())
    assert "restarted under the unpacker" in caplog.text
    assert res.diff_id == layer.diff_id
    assert sorted(os.listdir(target)) == ["d"]  # nothing of the stale bytes is left
    for name, _, extra in entries:
        assert (target / name).read_bytes() == extra["data"]
    svc.close()


def test_hostile_layer_refused_while_streaming(tmp_path):
    svc = _svc(tmp_path)
    desc, layer, data = _layer([("../escape", "file", {"data": b"pwned"})])
    target = tmp_path / "t" / "root"
    target.mkdir(parents=True)
    with pytest.raises(LayerError, match="escapes"):
        svc._fetch_and_apply(_fake_fetch(svc, _pieces(data, 100)), desc, layer, str(target),
                             "flatten", NoProgress())
    assert sorted(os.listdir(tmp_path / "t")) == ["root"]
    svc.close()
