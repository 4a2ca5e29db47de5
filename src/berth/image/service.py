"""The image service: the library behind `berth pull/push/images/rmi/...` and
the engine's image routes. It wires the content store, the image index, the
snapshotter and the registry client; each of those knows nothing of the others.
"""

from __future__ import annotations

import contextlib
import fnmatch
import io
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from berth.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from berth.image.content import ContentStore, DigestMismatchError
from berth.image.layers import ApplyResult, apply_layer
from berth.image.snapshots import Snapshotter, snapshotter
from berth.image.store import ImageRecord, ImageStore
from berth.oci import digest as dg
from berth.oci import image as oi
from berth.oci import reference
from berth.oci.digest import Digest
from berth.paths import Paths

if TYPE_CHECKING:  # the registry client imports httpx: ~70 ms, only for pull and push
    from berth.image.registry import Registry, RegistryOptions

log = logging.getLogger(__name__)

MAX_CONFIG = 16 << 20


class Progress(Protocol):
    """What a pull or push reports, per blob (by digest)."""

    def status(self, digest: str, text: str, total: int | None = None) -> None: ...

    def advance(self, digest: str, n: int) -> None: ...

    def message(self, text: str) -> None: ...


class NoProgress:
    def status(self, digest: str, text: str, total: int | None = None) -> None:
        log.debug("%s: %s", digest[:19], text)

    def advance(self, digest: str, n: int) -> None:
        pass

    def message(self, text: str) -> None:
        log.info("%s", text)


class _BlobTail(io.RawIOBase):
    """A blob read while it downloads: the ingest file is followed as the
    registry client appends to it, so a layer is unpacked during its
    download instead of after it. Every byte read is hashed; the caller
    commits the unpacked snapshot only if they are exactly the blob the
    content store verified (a download restarted under the reader is caught
    there, and the layer is unpacked again from the stored blob)."""

    def __init__(self, algorithm: str) -> None:
        self._cond = threading.Condition()
        self._fd: int | None = None
        self._done = False
        self._failed = False
        self._generation = 0  # bumped on every change the reader may wait for
        self.hash = dg.hasher(algorithm)
        self.count = 0

    # the downloading side
    def opened(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        with self._cond:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = fd
            self._generation += 1
            self._cond.notify_all()

    def advanced(self, _n: int = 0) -> None:
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def finished(self, failed: bool) -> None:
        with self._cond:
            self._done, self._failed = True, failed
            self._generation += 1
            self._cond.notify_all()

    # the reading side
    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        view = memoryview(b).cast("B")
        while True:
            with self._cond:
                fd, done, failed, gen = self._fd, self._done, self._failed, self._generation
            if failed:
                raise _DownloadFailed()
            if fd is not None:
                n = os.readv(fd, [view])
                if n:
                    self.hash.update(view[:n])
                    self.count += n
                    return n
                if done:  # finished before this read: everything was flushed
                    return 0
            elif done:
                raise _DownloadFailed()
            with self._cond:
                if self._generation == gen:
                    self._cond.wait(0.5)

    def close(self) -> None:
        with self._cond:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        super().close()

    @property
    def digest(self) -> Digest:
        return dg.from_hash(self.hash)


class _DownloadFailed(Exception):
    """The download a `_BlobTail` follows failed; its own error is raised instead."""


class _TailedStore:
    """The content store as the registry client sees it during a streamed
    pull: tells a `_BlobTail` which file the download goes to."""

    def __init__(self, content: ContentStore, tail: _BlobTail) -> None:
        self.content = content
        self.tail = tail

    @contextlib.contextmanager
    def writer(self, ref: str, expected: str | None = None,
               size: int | None = None) -> Iterator[Any]:
        with self.content.writer(ref, expected, size) as w:
            if w.committed is not None:  # another pull stored it meanwhile
                self.tail.opened(self.content.path(w.committed))
            else:
                self.tail.opened(os.path.join(w.directory, "data"))
            yield w


def _empty_dir(path: str) -> None:
    for name in os.listdir(path):
        child = os.path.join(path, name)
        if os.path.isdir(child) and not os.path.islink(child):
            shutil.rmtree(child)
        else:
            os.unlink(child)


@dataclass(frozen=True)
class LayerBlob:
    """A layer as the service makes images from: blob + media type + diff ID."""

    digest: Digest
    media_type: str
    size: int
    diff_id: Digest


def _leased(method: Callable) -> Callable:
    """Run `method` holding a lease: content it writes is not yet referenced by
    an image, and garbage collection must wait until it is."""
    import functools

    @functools.wraps(method)
    def wrapper(self: ImageService, *args: Any, **kwargs: Any) -> Any:
        with self.lease():
            return method(self, *args, **kwargs)

    return wrapper


class ImageService:
    def __init__(self, paths: Paths, snapshotter_name: str = "auto",
                 registry_options: RegistryOptions | None = None,
                 in_use: Callable[[str], bool] | None = None,
                 max_concurrent_downloads: int = 3) -> None:
        self.paths = paths
        self.content = ContentStore(paths)
        self.store = ImageStore(paths.database)
        self.snapshots: Snapshotter = snapshotter(snapshotter_name, paths.snapshots,
                                                  paths.database)
        self._registry_options = registry_options
        self.in_use = in_use or (lambda image_id: False)
        self.max_concurrent_downloads = max(1, max_concurrent_downloads)

    def close(self) -> None:
        self.store.close()
        self.snapshots.close()

    # reading -----------------------------------------------------------------------------

    def get(self, name: str) -> ImageRecord:
        return self.store.resolve(name)

    def manifest(self, image: ImageRecord) -> oi.Manifest:
        return oi.decode_manifest(self.content.read(image.manifest))

    def config_bytes(self, image: ImageRecord) -> bytes:
        return self.content.read(image.id)

    def config(self, image: ImageRecord) -> oi.ImageConfig:
        return oi.decode_config(self.config_bytes(image))

    # pull -------------------------------------------------------------------------------

    @property
    def registry_options(self) -> RegistryOptions:
        if self._registry_options is None:
            from berth.image.registry import RegistryOptions

            self._registry_options = RegistryOptions()
        return self._registry_options

    def registry(self, domain: str) -> Registry:
        from berth.image.registry import Registry

        return Registry(domain, self.registry_options)

    @contextlib.contextmanager
    def lease(self, exclusive: bool = False) -> Iterator[None]:
        """A shared lock on the store for work in progress (pull, load, import,
        create), or the exclusive one garbage collection takes (containerd
        calls these leases). flock: released by the kernel if we die."""
        import fcntl

        os.makedirs(self.paths.root, exist_ok=True)
        fd = os.open(os.path.join(self.paths.root, "gc.lock"),
                     os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    @_leased
    def pull(self, name: str, platform: oi.Platform | None = None,
             progress: Progress | None = None) -> ImageRecord:
        """Pull `name` (tag or digest) for `platform` (default: the host's),
        verify every blob, unpack its layers, and tag it."""
        ref = reference.parse(name)
        want = platform or oi.host_platform()
        progress = progress or NoProgress()
        domains = [ref.domain]
        if ref.domain == reference.DEFAULT_DOMAIN:
            domains = [*self.registry_options.mirrors, ref.domain]
        last: Exception | None = None
        for i, domain in enumerate(domains):
            try:
                with self.registry(domain) as reg:
                    return self._pull(reg, ref, want, progress)
            except (UnavailableError, NotFoundError) as exc:
                if i == len(domains) - 1:
                    raise
                log.info("pull %s from mirror %s failed: %s", ref, domain, exc)
                last = exc
        raise UnavailableError(f"pull {ref}: {last}")

    def _pull(self, reg: Registry, ref: reference.Reference, want: oi.Platform,
              progress: Progress) -> ImageRecord:
        what = f"pull {ref.familiar}"
        data, media_type, top_digest = reg.get_manifest(ref.path, ref.digest or ref.tag or "latest")
        index_digest = ""
        if media_type in oi.INDEX_TYPES:
            self.content.write(data, top_digest)
            index_digest = top_digest
            desc = oi.select_manifest(oi.decode_index(data), want)
            data, media_type, manifest_digest = reg.get_manifest(ref.path, desc.digest)
            if media_type in oi.INDEX_TYPES:
                raise InvalidArgumentError(f"{what}: nested image indexes are not supported")
        else:
            manifest_digest = top_digest
        if media_type not in oi.MANIFEST_TYPES:
            raise InvalidArgumentError(f"{what}: unsupported manifest media type {media_type!r}")
        manifest = oi.decode_manifest(data)
        self.content.write(data, manifest_digest)
        progress.message(f"{ref.tag or ref.digest}: Pulling from {ref.familiar_name}")

        config_digest = Digest(manifest.config.digest)
        if manifest.config.size > MAX_CONFIG:
            raise InvalidArgumentError(
                f"{what}: image config of {manifest.config.size} bytes is too large")
        reg.fetch_blob(ref.path, manifest.config, self.content)
        config = oi.decode_config(self.content.read(config_digest))
        if not index_digest and not oi.platform_matches(want, config.platform):
            log.warning("%s: image platform %s does not match the requested %s", what,
                        config.platform, want)
        layers = self._check_layers(what, manifest, config)
        chain_ids = oi.chain_ids([str(lb.diff_id) for lb in layers])

        def fetch(desc: oi.Descriptor, tail: _BlobTail | None = None) -> Digest:
            progress.status(desc.digest, "Downloading", desc.size)

            def advance(n: int) -> None:
                progress.advance(desc.digest, n)
                if tail is not None:
                    tail.advanced(n)

            store = self.content if tail is None else _TailedStore(self.content, tail)
            d = reg.fetch_blob(ref.path, desc, store, advance)  # type: ignore[arg-type]
            progress.status(desc.digest, "Download complete", desc.size)
            return d

        if self.snapshots.can_rebase:
            sizes = self._fetch_unpack_parallel(layers, manifest.layers, chain_ids, fetch,
                                                progress)
        else:
            sizes = self._fetch_unpack_in_order(layers, manifest.layers, chain_ids, fetch,
                                                progress)
        image = self._record(config_digest, config, manifest_digest,
                             media_type, chain_ids, sum(sizes), index_digest)
        if ref.tag is not None:
            self.store.tag(image.id, ref)
        self.store.add_repo_digest(image.id, ref.name, str(top_digest))
        progress.message(f"Digest: {top_digest}")
        return self.store.get(image.id)

    def _fetch_unpack_in_order(self, layers: list[LayerBlob], descs: list[oi.Descriptor],
                               chain_ids: list[str], fetch: Callable[[oi.Descriptor], Digest],
                               progress: Progress) -> list[int]:
        """Download in parallel; unpack in order (each layer onto its parent's
        content) while later layers still download."""
        with ThreadPoolExecutor(self.max_concurrent_downloads,
                                thread_name_prefix="pull") as pool:
            futures: list[Future | None] = []
            for desc in descs:
                if self.content.exists(desc.digest):
                    progress.status(desc.digest, "Already exists", desc.size)
                    futures.append(None)
                else:
                    progress.status(desc.digest, "Waiting", desc.size)
                    futures.append(pool.submit(fetch, desc))
            try:
                sizes = []
                for i, fut in enumerate(futures):
                    if fut is not None:
                        fut.result()
                    sizes.append(self._unpack_layer(layers[i], chain_ids, i, progress))
            except BaseException:
                for fut in futures:
                    if fut is not None:
                        fut.cancel()
                raise
        return sizes

    def _fetch_unpack_parallel(self, layers: list[LayerBlob], descs: list[oi.Descriptor],
                               chain_ids: list[str], fetch: Callable[[oi.Descriptor], Digest],
                               progress: Progress) -> list[int]:
        """Download and unpack every layer at once, each into a snapshot of its
        own, then commit them in order, each rebased on the one below (the
        snapshotter can: its snapshots hold only their own changes). The
        database is touched by this thread only."""
        keys: dict[int, str] = {}
        sizes: list[int] = [0] * len(layers)
        blobs_only: list[oi.Descriptor] = []  # unpacked, but the blob is wanted for push/save
        for i, chain in enumerate(chain_ids):
            if self.snapshots.exists(chain):
                sizes[i] = self.store.layer_size(chain)
                if self.content.exists(descs[i].digest):
                    progress.status(descs[i].digest, "Already exists", descs[i].size)
                else:
                    blobs_only.append(descs[i])
                continue
            keys[i] = f"extract-{uuid.uuid4().hex[:12]}-{chain}"

        def job(i: int, target: str, mode: str) -> ApplyResult:
            desc, layer = descs[i], layers[i]
            if not self.content.exists(desc.digest):
                return self._fetch_and_apply(fetch, desc, layer, target, mode, progress)
            progress.status(layer.digest, "Extracting", layer.size)
            with self.content.open(layer.digest) as f:
                return apply_layer(target, f, oi.layer_compression(layer.media_type), mode)

        try:
            with ThreadPoolExecutor(self.max_concurrent_downloads,
                                    thread_name_prefix="pull") as pool:
                futures: dict[int, Future] = {}
                others = [pool.submit(fetch, d) for d in blobs_only]
                for i, key in keys.items():
                    self.snapshots.prepare(key, "")
                    progress.status(descs[i].digest, "Waiting", descs[i].size)
                    futures[i] = pool.submit(job, i, *self.snapshots.apply_target(key))
                try:
                    for i, chain in enumerate(chain_ids):
                        if i not in futures:
                            continue
                        res = futures[i].result()
                        layer = layers[i]
                        if res.diff_id != layer.diff_id:
                            raise DigestMismatchError(
                                f"unpack layer {layer.digest}: uncompressed digest {res.diff_id} "
                                f"does not match the config's diff ID {layer.diff_id}",
                                digest=layer.digest)
                        self.store.put_layer(chain, str(layer.diff_id), res.size)
                        try:
                            self.snapshots.commit(chain, keys[i], chain_ids[i - 1] if i else "")
                            del keys[i]
                        except AlreadyExistsError:
                            pass  # another pull committed it meanwhile: ours is removed below
                        sizes[i] = res.size
                        progress.status(layer.digest, "Pull complete", layer.size)
                    for fut in others:
                        fut.result()
                except BaseException:
                    for fut in [*futures.values(), *others]:
                        fut.cancel()
                    raise
        finally:
            for key in keys.values():
                with contextlib.suppress(NotFoundError):
                    self.snapshots.remove(key)
        return sizes

    def _fetch_and_apply(self, fetch: Callable[..., Digest], desc: oi.Descriptor,
                         layer: LayerBlob, target: str, mode: str,
                         progress: Progress) -> ApplyResult:
        """Download layer `desc` into the content store and unpack it onto
        `target` at the same time. The result stands only once the blob is
        committed (size and digest verified by the store) and the bytes
        unpacked hash to that same digest."""
        compression = oi.layer_compression(layer.media_type)
        tail = _BlobTail(Digest(desc.digest).algorithm)
        failure: list[BaseException] = []

        def download() -> None:
            try:
                fetch(desc, tail)
            except BaseException as exc:
                failure.append(exc)
                tail.finished(True)
            else:
                tail.finished(False)
                progress.status(layer.digest, "Extracting", layer.size)

        thread = threading.Thread(target=download, name=f"fetch-{Digest(desc.digest).hex[:12]}",
                                  daemon=True)
        thread.start()
        error: BaseException | None = None
        res: ApplyResult | None = None
        try:
            try:
                res = apply_layer(target, tail, compression, mode)  # type: ignore[arg-type]
            except Exception as exc:
                error = exc
            thread.join()
        finally:
            tail.close()
        if failure:
            raise failure[0]  # the download's own error explains the unpack's
        # the blob is committed: was it what the unpacker read?
        if res is not None and tail.count == desc.size and tail.digest == desc.digest:
            return res
        if error is not None and self._blob_prefix_digest(layer.digest, tail.count) == tail.digest:
            raise error  # the unpacker failed on the blob's own bytes
        log.info("unpack layer %s: the download restarted under the unpacker; "
                 "unpacking the stored blob", desc.digest)
        _empty_dir(target)
        with contextlib.suppress(OSError):  # set on the root by an opaque whiteout
            os.removexattr(target, "trusted.overlay.opaque")
        with self.content.open(layer.digest) as f:
            return apply_layer(target, f, compression, mode)

    def _blob_prefix_digest(self, digest: Digest, n: int) -> Digest:
        h = dg.hasher(digest.algorithm)
        with self.content.open(digest) as f:
            while n > 0 and (chunk := f.read(min(n, 1 << 20))):
                h.update(chunk)
                n -= len(chunk)
        return dg.from_hash(h)

    def _check_layers(self, what: str, manifest: oi.Manifest,
                      config: oi.ImageConfig) -> list[LayerBlob]:
        if len(manifest.layers) != len(config.rootfs.diff_ids):
            raise InvalidArgumentError(
                f"{what}: manifest has {len(manifest.layers)} layers but the config "
                f"{len(config.rootfs.diff_ids)} diff IDs"
            )
        out = []
        for desc, diff_id in zip(manifest.layers, config.rootfs.diff_ids, strict=True):
            oi.layer_compression(desc.media_type)  # refuse unknown layer types early
            out.append(LayerBlob(Digest(desc.digest), desc.media_type, desc.size,
                                 Digest(diff_id)))
        return out

    def _unpack_layer(self, layer: LayerBlob, chain_ids: list[str], i: int,
                      progress: Progress) -> int:
        chain = chain_ids[i]
        if self.snapshots.exists(chain):
            return self.store.layer_size(chain)
        parent = chain_ids[i - 1] if i else ""
        key = f"extract-{uuid.uuid4().hex[:12]}-{chain}"
        progress.status(layer.digest, "Extracting", layer.size)
        self.snapshots.prepare(key, parent)
        try:
            target, mode = self.snapshots.apply_target(key)
            with self.content.open(layer.digest) as f:
                res = apply_layer(target, f, oi.layer_compression(layer.media_type), mode)
            if res.diff_id != layer.diff_id:
                raise DigestMismatchError(
                    f"unpack layer {layer.digest}: uncompressed digest {res.diff_id} does not "
                    f"match the config's diff ID {layer.diff_id}", digest=layer.digest)
            self.store.put_layer(chain, str(layer.diff_id), res.size)
            try:
                self.snapshots.commit(chain, key)
            except AlreadyExistsError:
                self.snapshots.remove(key)  # another pull unpacked it meanwhile
        except BaseException:
            with contextlib.suppress(NotFoundError):
                self.snapshots.remove(key)
            raise
        progress.status(layer.digest, "Pull complete", layer.size)
        return res.size

    @_leased
    def unpack(self, image: ImageRecord) -> str:
        """Make sure every layer of `image` is a committed snapshot; return the top chain ID."""
        manifest = self.manifest(image)
        layers = self._check_layers(f"unpack {image.id}", manifest, self.config(image))
        chain_ids = oi.chain_ids([str(lb.diff_id) for lb in layers])
        for i, lb in enumerate(layers):
            self._unpack_layer(lb, chain_ids, i, NoProgress())
        return chain_ids[-1] if chain_ids else ""

    def _record(self, config_digest: Digest, config: oi.ImageConfig, manifest_digest: str,
                media_type: str, chain_ids: list[str], size: int,
                index_digest: str = "") -> ImageRecord:
        self.store.put(str(config_digest), str(manifest_digest), media_type,
                       config.created or "", size, chain_ids[-1] if chain_ids else "",
                       index_digest)
        return self.store.get(config_digest)

    # making images locally (import, bootstrap, load) ------------------------------------

    @_leased
    def create(self, config: oi.ImageConfig | bytes, layers: list[LayerBlob],
               tags: list[str] = (), manifest_media_type: str = oi.OCI_MANIFEST,
               repo_digests: list[str] = ()) -> ImageRecord:  # type: ignore[assignment]
        """Record an image whose layer blobs are already in the content store:
        write config and manifest, unpack, tag."""
        config_bytes = config if isinstance(config, bytes) else oi.encode(config)
        cfg = oi.decode_config(config_bytes)
        if [str(lb.diff_id) for lb in layers] != list(cfg.rootfs.diff_ids):
            raise InvalidArgumentError("create image: layers do not match the config's diff IDs")
        config_digest = self.content.write(config_bytes)
        docker = manifest_media_type == oi.DOCKER_MANIFEST
        manifest = oi.Manifest(
            schema_version=2,
            media_type=manifest_media_type,
            config=oi.Descriptor(oi.DOCKER_CONFIG if docker else oi.OCI_CONFIG,
                                 str(config_digest), len(config_bytes)),
            layers=[oi.Descriptor(lb.media_type, str(lb.digest), lb.size) for lb in layers],
        )
        manifest_bytes = oi.encode(manifest)
        manifest_digest = self.content.write(manifest_bytes)
        chain_ids = oi.chain_ids([str(lb.diff_id) for lb in layers])
        sizes = [self._unpack_layer(lb, chain_ids, i, NoProgress())
                 for i, lb in enumerate(layers)]
        image = self._record(config_digest, cfg, manifest_digest, manifest_media_type,
                             chain_ids, sum(sizes))
        for t in tags:
            self.store.tag(image.id, reference.parse(t))
        for rd in repo_digests:
            r = reference.parse(rd)
            if r.digest:
                self.store.add_repo_digest(image.id, r.name, str(r.digest))
        return self.store.get(image.id)

    def add_layer_tar(self, tar_path: str, compress: bool = True) -> LayerBlob:
        """Store an uncompressed layer tar as a blob (gzip-compressed when
        `compress`) and return it with its diff ID."""
        from berth.image import compression

        return compression.store_layer(self.content, tar_path, compress, self.paths.tmp)

    @_leased
    def bootstrap_busybox(self, tag: str = "busybox:latest") -> ImageRecord:
        """The local default busybox image: one layer from Debian's
        busybox-static, no network."""
        from berth.image.busybox import make_busybox_rootfs
        from berth.image.tarball import rootfs_to_tar

        os.makedirs(self.paths.tmp, exist_ok=True)
        work = os.path.join(self.paths.tmp, f"bootstrap-{uuid.uuid4().hex[:8]}")
        try:
            make_busybox_rootfs(os.path.join(work, "rootfs"))
            tar_path = os.path.join(work, "layer.tar")
            rootfs_to_tar(os.path.join(work, "rootfs"), tar_path)
            layer = self.add_layer_tar(tar_path)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        plat = oi.host_platform()
        from berth.image.docker import rfc3339

        created = rfc3339(time.time())
        config = oi.ImageConfig(
            architecture=plat.architecture, os=plat.os, variant=plat.variant,
            rootfs=oi.RootFS("layers", [str(layer.diff_id)]), created=created,
            config=oi.ContainerConfig(
                env=["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                cmd=["sh"]),
            history=[oi.History(created=created,
                                created_by="berth image bootstrap busybox (Debian busybox-static)",
                                comment="made locally")],
        )
        return self.create(config, [layer], [tag])

    # push -------------------------------------------------------------------------------

    def push(self, name: str, progress: Progress | None = None) -> Digest:
        ref = reference.parse(name)
        if ref.digest is not None:
            raise InvalidArgumentError(f"push {name}: push a tag, not a digest")
        image = self.store.resolve(ref.tagged)
        progress = progress or NoProgress()
        manifest_bytes = self.content.read(image.manifest)
        manifest = oi.decode_manifest(manifest_bytes)
        mount_from = None
        for rd in image.repo_digests:
            r = reference.parse(rd)
            if r.domain == ref.domain and r.path != ref.path:
                mount_from = r.path
                break
        progress.message(f"The push refers to repository [{ref.name}]")
        with self.registry(ref.domain) as reg:
            def upload(desc: oi.Descriptor) -> str:
                if not self.content.exists(desc.digest):
                    raise NotFoundError(f"push {name}: blob {desc.digest} is not in the store")
                progress.status(desc.digest, "Preparing", desc.size)

                def chunks() -> Iterator[bytes]:
                    with self.content.open(desc.digest) as f:
                        while chunk := f.read(1 << 20):
                            progress.advance(desc.digest, len(chunk))
                            yield chunk

                result = reg.upload_blob(ref.path, desc.digest, desc.size, chunks, mount_from)
                progress.status(desc.digest, {"exists": "Layer already exists",
                                              "mounted": f"Mounted from {mount_from}",
                                              "pushed": "Pushed"}[result], desc.size)
                return result

            with ThreadPoolExecutor(self.max_concurrent_downloads,
                                    thread_name_prefix="push") as pool:
                for fut in [pool.submit(upload, d) for d in manifest.layers]:
                    fut.result()
            upload(manifest.config)
            digest = reg.put_manifest(ref.path, ref.tag or "latest", manifest_bytes,
                                      manifest.media_type or image.manifest_media_type)
        self.store.add_repo_digest(image.id, ref.name, str(digest))
        progress.message(f"{ref.tag}: digest: {digest} size: {len(manifest_bytes)}")
        return digest

    # the index --------------------------------------------------------------------------

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None
             ) -> list[ImageRecord]:
        images = self.store.list()
        filters = filters or {}
        for value in filters.get("dangling", []):
            want = value.lower() in ("true", "1")
            images = [i for i in images if i.dangling == want]
        patterns = filters.get("reference", [])
        if patterns:
            def match(i: ImageRecord) -> bool:
                for t in i.tags:
                    r = reference.parse(t)
                    for p in patterns:
                        if fnmatch.fnmatchcase(r.familiar_name, p) or fnmatch.fnmatchcase(
                            r.familiar, p) or fnmatch.fnmatchcase(str(r), p):
                            return True
                return False
            images = [i for i in images if match(i)]
        for key in ("before", "since"):
            for value in filters.get(key, []):
                pivot = self.store.resolve(value)
                images = [i for i in images if (i.added < pivot.added if key == "before"
                                                else i.added > pivot.added)]
        return images

    def tag(self, source: str, target: str) -> None:
        image = self.store.resolve(source)
        self.store.tag(image.id, reference.parse(target))

    def remove(self, name: str, force: bool = False) -> list[dict[str, str]]:
        """Docker's rmi: a reference untags (and deletes the image when it was
        the last one); an ID deletes the image with all its tags."""
        image = self.store.resolve(name)
        out: list[dict[str, str]] = []
        by_id = name == image.id or (
            "/" not in name and ":" not in name and image.id.hex.startswith(name)
        )
        if not by_id:
            ref = reference.parse(name)
            if ref.digest is None:
                self.store.untag(ref.tagged)
                out.append({"Untagged": reference.parse(ref.tagged).familiar})
                if not any(reference.parse(t).name == ref.name
                           for t in self.store.get(image.id).tags):
                    for rd in self.store.remove_repo_digests(image.id, ref.name):
                        out.append({"Untagged": reference.parse(rd).familiar})
            else:
                for rd in self.store.remove_repo_digests(image.id, ref.name):
                    out.append({"Untagged": reference.parse(rd).familiar})
            image = self.store.get(image.id)
            if image.tags or image.repo_digests:
                return out
        else:
            repos = {reference.parse(t).name for t in image.tags}
            if len(repos) > 1 and not force:
                raise ConflictError(
                    f"conflict: unable to delete {image.short_id} (must be forced) - image is "
                    "referenced in multiple repositories", image=image.id)
            for t in image.tags:
                self.store.untag(t)
                out.append({"Untagged": reference.parse(t).familiar})
            for rd in image.repo_digests:
                out.append({"Untagged": reference.parse(rd).familiar})
        if self.in_use(image.id) and not force:
            raise ConflictError(
                f"conflict: unable to delete {image.short_id} (cannot be forced) - image is "
                "being used by a container", image=image.id)
        self.store.delete(image.id)
        out.append({"Deleted": str(image.id)})
        return out

    def prune(self, all: bool = False) -> tuple[list[dict[str, str]], int]:
        """Delete dangling images (with `all`: every image no container uses),
        then collect garbage. Returns (deleted, bytes reclaimed)."""
        out: list[dict[str, str]] = []
        for image in self.store.list():
            if self.in_use(image.id):
                continue
            if image.dangling or all:
                for t in image.tags:
                    self.store.untag(t)
                    out.append({"Untagged": reference.parse(t).familiar})
                self.store.delete(image.id)
                out.append({"Deleted": str(image.id)})
        reclaimed = self.gc()
        return out, reclaimed

    def gc(self) -> int:
        """Remove blobs and layer snapshots no image references; return bytes
        freed. Waits for pulls, loads and imports in progress (their leases)."""
        with self.lease(exclusive=True):
            return self._gc()

    def _gc(self) -> int:
        keep_blobs: set[str] = set()
        keep_chains: set[str] = set()
        for image in self.store.list():
            keep_blobs.update({str(image.id), str(image.manifest)})
            if image.index_digest:
                keep_blobs.add(image.index_digest)
            try:
                manifest = self.manifest(image)
                config = self.config(image)
            except NotFoundError:
                continue
            keep_blobs.update(d.digest for d in manifest.layers)
            keep_chains.update(oi.chain_ids(list(config.rootfs.diff_ids)))
        freed = 0
        for d in list(self.content.list()):
            if d not in keep_blobs:
                with contextlib.suppress(NotFoundError):
                    freed += self.content.size(d)
                    self.content.delete(d)
        removed = True
        while removed:
            removed = False
            infos = self.snapshots.walk()
            parents = {i.parent for i in infos}
            for info in infos:
                if info.kind != "committed" or info.key in keep_chains or info.key in parents:
                    continue
                with contextlib.suppress(NotFoundError, ConflictError):
                    freed += self.snapshots.usage(info.key)
                    self.snapshots.remove(info.key)
                    self.store.remove_layer(info.key)
                    removed = True
        self.snapshots.cleanup()
        self._clean_ingests()
        return freed

    def _clean_ingests(self) -> None:
        import fcntl

        root = self.content.ingest_root
        if not os.path.isdir(root):
            return
        for name in os.listdir(root):
            d = os.path.join(root, name)
            try:
                fd = os.open(os.path.join(d, "lock"), os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                shutil.rmtree(d, ignore_errors=True)
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue  # being written
            try:
                if time.time() - os.stat(d).st_mtime > 24 * 3600:
                    shutil.rmtree(d, ignore_errors=True)
            finally:
                os.close(fd)

    # Docker's JSON shapes (berth.image.docker) ------------------------------------------

    def inspect(self, name: str) -> dict[str, Any]:
        from berth.image import docker

        return docker.inspect(self, name)

    def summary(self, image: ImageRecord) -> dict[str, Any]:
        from berth.image import docker

        return docker.summary(self, image)

    def history(self, name: str) -> list[dict[str, Any]]:
        from berth.image import docker

        return docker.history(self, name)

    def rootfs(self, name: str, key: str, readonly: bool = False) -> list:
        """Mounts for a new snapshot `key` (a container's) on image `name`,
        unpacking its layers first if they are not (a GC'd or loaded image)."""
        image = self.store.resolve(name)
        chain = image.chain_id
        if chain and not self.snapshots.exists(chain):
            chain = self.unpack(image)
        if readonly:
            return self.snapshots.view(key, chain)
        return self.snapshots.prepare(key, chain)


def digest_of_file(path: str) -> Digest:
    h = dg.hasher()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return dg.from_hash(h)
