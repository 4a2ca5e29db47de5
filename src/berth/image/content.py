"""The content store: blobs addressed by digest, verified before they exist.

Vocabulary as containerd's `content.Store` (Provider + Ingester + Manager):

- a *blob* lives at ``blobs/<algorithm>/<hex>`` and is immutable; it appears
  there only by a rename from the ingest area after its size and digest were
  checked, so a blob present is a blob verified;
- an *ingest* is a partial write under ``ingest/<key>/`` with a ``data``
  file, named by a caller-chosen *ref* (for a download: the expected digest).
  It holds an exclusive flock while written, so two pulls of one blob never
  write the same file: the second waits, then finds the blob committed;
- an interrupted ingest is resumed from its current length (`Writer.offset`)
  or restarted with `Writer.truncate()`.
"""

from __future__ import annotations

import fcntl
import os

from berth.errors import InvalidArgumentError, NotFoundError, from_oserror
from berth.oci import digest as dg
from berth.oci.digest import Digest
from berth.paths import Paths

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from typing import BinaryIO

CHUNK = 1 << 20


class DigestMismatchError(InvalidArgumentError):
    """A blob's content does not match the digest or size it was expected to have."""


class Writer:
    """An open ingest. Write, then `commit`; the lock is released by the store."""

    def __init__(self, store: ContentStore, directory: str, expected: Digest | None,
                 size: int | None) -> None:
        self.store = store
        self.directory = directory
        self.expected = expected
        self.expected_size = size
        self.algorithm = expected.algorithm if expected else dg.CANONICAL
        self._hash = dg.hasher(self.algorithm)
        self._file = open(os.path.join(directory, "data"), "ab+")  # noqa: SIM115
        self.offset = 0
        # resume: rehash what an earlier, interrupted ingest wrote
        self._file.seek(0)
        while chunk := self._file.read(CHUNK):
            self._hash.update(chunk)
            self.offset += len(chunk)
        self.committed: Digest | None = None

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def truncate(self) -> None:
        """Throw away what was written; start again at offset 0."""
        self._file.seek(0)
        self._file.truncate(0)
        self._hash = dg.hasher(self.algorithm)
        self.offset = 0

    def copy_from(self, src: BinaryIO) -> None:
        while chunk := src.read(CHUNK):
            self.write(chunk)

    def commit(self) -> Digest:
        """Verify size and digest, then move the data into place."""
        self._file.flush()
        os.fsync(self._file.fileno())
        actual = dg.from_hash(self._hash)
        if self.expected_size is not None and self.offset != self.expected_size:
            raise DigestMismatchError(
                f"commit blob {self.expected or actual}: size {self.offset} does not match "
                f"expected size {self.expected_size}",
                digest=self.expected or actual,
            )
        if self.expected is not None and actual != self.expected:
            self.truncate()
            raise DigestMismatchError(
                f"commit blob {self.expected}: content digest is {actual}",
                digest=self.expected,
            )
        target = self.store.path(actual)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.rename(os.path.join(self.directory, "data"), target)
        # the rename itself is durable only once its directory is
        dfd = os.open(os.path.dirname(target), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        self.committed = actual
        return actual

    def close(self) -> None:
        self._file.close()


class ContentStore:
    def __init__(self, paths: Paths) -> None:
        self.root = paths.blobs
        self.ingest_root = paths.ingest

    def path(self, digest: str) -> str:
        d = Digest(digest)
        return os.path.join(self.root, d.algorithm, d.hex)

    def exists(self, digest: str) -> bool:
        return os.path.isfile(self.path(digest))

    def size(self, digest: str) -> int:
        try:
            return os.stat(self.path(digest)).st_size
        except FileNotFoundError:
            raise NotFoundError(f"stat blob {digest}: not found", digest=digest) from None

    def open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFoundError(f"open blob {digest}: not found", digest=digest) from None

    def read(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def delete(self, digest: str) -> None:
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFoundError(f"delete blob {digest}: not found", digest=digest) from None

    def list(self) -> Iterator[Digest]:
        for algorithm in dg.ALGORITHMS:
            d = os.path.join(self.root, algorithm)
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                try:
                    yield Digest(f"{algorithm}:{name}")
                except InvalidArgumentError:
                    continue

    def writer(self, ref: str, expected: str | None = None,
               size: int | None = None) -> AbstractContextManager[Writer]:
        """An exclusive ingest named `ref`. If the expected blob is (or, after
        waiting for another writer, has become) present, yields a Writer whose
        `committed` is already set: the caller has nothing to write."""
        import contextlib  # not on a container start's path (see berth/ctx.py)

        return contextlib.contextmanager(self._writer)(ref, expected, size)

    def _writer(self, ref: str, expected: str | None, size: int | None) -> Iterator[Writer]:
        exp = Digest(expected) if expected else None
        import hashlib  # not on a container start's path

        key = hashlib.sha256(ref.encode()).hexdigest()
        directory = os.path.join(self.ingest_root, key)
        lock_fd = self._lock(directory)
        try:
            w = Writer(self, directory, exp, size)
            try:
                if exp is not None and self.exists(exp):
                    w.committed = exp
                yield w
            finally:
                w.close()
                if w.committed is not None:
                    import shutil  # not on a container start's path

                    shutil.rmtree(directory, ignore_errors=True)
        finally:
            os.close(lock_fd)

    @staticmethod
    def _lock(directory: str) -> int:
        """Lock the ingest `directory`, made if missing. A writer that finished
        removes the directory, so a lock taken on a removed one is retaken."""
        lock = os.path.join(directory, "lock")
        while True:
            try:
                os.makedirs(directory, exist_ok=True)
                fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except (FileNotFoundError, FileExistsError):
                continue  # raced with the removal of a finished ingest
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)

    def ingest_status(self, ref: str) -> int | None:
        """Bytes already written for ingest `ref`, or None."""
        import hashlib  # not on a container start's path

        key = hashlib.sha256(ref.encode()).hexdigest()
        try:
            return os.stat(os.path.join(self.ingest_root, key, "data")).st_size
        except FileNotFoundError:
            return None

    def write(self, data: bytes, expected: str | None = None) -> Digest:
        """Store `data` (verified against `expected` when given); return its digest."""
        d = Digest(expected) if expected else dg.from_bytes(data)
        if self.exists(d):
            return d
        with self.writer(f"write-{d}", d, len(data)) as w:
            if w.committed:
                return w.committed
            w.truncate()
            w.write(data)
            return w.commit()

    def write_from(self, src: BinaryIO, expected: str | None = None,
                   size: int | None = None, ref: str | None = None) -> Digest:
        """Store a stream. Without `expected`, the ingest is keyed by `ref` (or a
        unique name) and the digest computed."""
        if expected and self.exists(expected):
            return Digest(expected)
        name = ref or f"stream-{expected or os.urandom(8).hex()}"
        try:
            with self.writer(name, expected, size) as w:
                if w.committed:
                    return w.committed
                w.truncate()
                w.copy_from(src)
                return w.commit()
        except OSError as exc:
            raise from_oserror(exc, "write blob", expected or name) from exc

    def abort(self, ref: str) -> None:
        import hashlib  # not on a container start's path

        key = hashlib.sha256(ref.encode()).hexdigest()
        import shutil  # not on a container start's path

        shutil.rmtree(os.path.join(self.ingest_root, key), ignore_errors=True)
