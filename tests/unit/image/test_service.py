import fcntl
import os
import threading

from berth.image.service import ImageService
from berth.paths import Paths


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
