"""Image archives: `save` and `load` in Docker's format (``docker save``:
manifest.json, repositories, one directory per layer) and as OCI image
layout archives; `import` of a root filesystem tarball as a one-layer image.

Loading never extracts an archive to disk: each member is streamed into the
content store (verified against its name when the name is a digest), and the
image is then assembled from the store, so a hostile archive has no path to
write through.
"""

from __future__ import annotations

import io
import os
import posixpath
import shlex
import tarfile
import time
from collections.abc import Iterable
from typing import BinaryIO

import msgspec
from msgspec.structs import replace

from berth.errors import InvalidArgumentError, NotFoundError
from berth.image.content import ContentStore
from berth.image.docker import rfc3339
from berth.image.layers import HashingReader, decompressed
from berth.image.service import ImageService, LayerBlob
from berth.image.store import ImageRecord
from berth.oci import digest as dg
from berth.oci import image as oi
from berth.oci import reference
from berth.oci.digest import Digest

SMALL = 4 << 20  # JSON members read into memory


# save ---------------------------------------------------------------------------------


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = int(mtime)
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))


def _add_dir(tf: tarfile.TarInfo | tarfile.TarFile, name: str, mtime: float) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = int(mtime)
    tf.addfile(ti)  # type: ignore[union-attr]


class _Spool:
    """Decompress a blob into a temporary file (a tar member needs its size first)."""

    def __init__(self, content: ContentStore, layer: oi.Descriptor, tmp: str) -> None:
        os.makedirs(tmp, exist_ok=True)
        self.path = os.path.join(tmp, f"spool-{os.getpid()}-{os.urandom(4).hex()}")
        with content.open(layer.digest) as src, open(self.path, "wb") as out:
            plain = decompressed(src, oi.layer_compression(layer.media_type))
            while chunk := plain.read(1 << 20):
                out.write(chunk)
        self.size = os.stat(self.path).st_size

    def close(self) -> None:
        os.unlink(self.path)


def save_docker(svc: ImageService, names: list[str], out: BinaryIO) -> None:
    """Write `names` as a `docker save` archive to `out`."""
    now = time.time()
    manifest: list[dict] = []
    repositories: dict[str, dict[str, str]] = {}
    written: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        for name in names:
            image = svc.get(name)
            m = svc.manifest(image)
            cfg = svc.config(image)
            config_name = f"{image.id.hex}.json"
            if config_name not in written:
                _add_bytes(tf, config_name, svc.config_bytes(image), now)
                written.add(config_name)
            layer_paths = []
            for desc, diff_id in zip(m.layers, cfg.rootfs.diff_ids, strict=True):
                layer_dir = Digest(diff_id).hex
                path = f"{layer_dir}/layer.tar"
                if path not in written:
                    _add_dir(tf, f"{layer_dir}/", now)
                    _add_bytes(tf, f"{layer_dir}/VERSION", b"1.0", now)
                    spool = _Spool(svc.content, desc, svc.paths.tmp)
                    try:
                        ti = tarfile.TarInfo(path)
                        ti.size, ti.mtime, ti.mode = spool.size, int(now), 0o644
                        with open(spool.path, "rb") as f:
                            tf.addfile(ti, f)
                    finally:
                        spool.close()
                    written.add(path)
                layer_paths.append(path)
            tags = [reference.parse(t).familiar for t in image.tags]
            if name not in (str(image.id),) and not name.startswith("sha256:"):
                ref = reference.parse(name)
                if ref.digest is None:
                    tags = [reference.parse(ref.tagged).familiar]
            manifest.append({"Config": config_name, "RepoTags": tags or None,
                             "Layers": layer_paths})
            for t in tags:
                r = reference.parse(t)
                repositories.setdefault(r.familiar_name, {})[r.tag or "latest"] = (
                    Digest(cfg.rootfs.diff_ids[-1]).hex if cfg.rootfs.diff_ids else "")
        _add_bytes(tf, "manifest.json", msgspec.json.encode(manifest), now)
        _add_bytes(tf, "repositories", msgspec.json.encode(repositories), now)


def save_oci(svc: ImageService, names: list[str], out: BinaryIO) -> None:
    """Write `names` as an OCI image layout archive to `out`."""
    now = time.time()
    descriptors = []
    written: set[str] = set()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        _add_bytes(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', now)
        _add_dir(tf, "blobs/", now)
        _add_dir(tf, "blobs/sha256/", now)

        def blob(digest: str) -> None:
            d = Digest(digest)
            path = f"blobs/{d.algorithm}/{d.hex}"
            if path in written:
                return
            ti = tarfile.TarInfo(path)
            ti.size, ti.mtime, ti.mode = svc.content.size(d), int(now), 0o644
            with svc.content.open(d) as f:
                tf.addfile(ti, f)
            written.add(path)

        for name in names:
            image = svc.get(name)
            m = svc.manifest(image)
            for desc in [*m.layers, m.config]:
                blob(desc.digest)
            blob(image.manifest)
            refs = list(image.tags) or [""]
            if not name.startswith("sha256:"):
                ref = reference.parse(name)
                if ref.digest is None:
                    refs = [ref.tagged]
            for r in refs:
                ann = {}
                if r:
                    parsed = reference.parse(r)
                    ann = {oi.CONTAINERD_IMAGE_NAME: str(parsed),
                           oi.ANNOTATION_REF_NAME: parsed.tag or "latest"}
                cfg = svc.config(image)
                descriptors.append(oi.Descriptor(
                    image.manifest_media_type, str(image.manifest),
                    svc.content.size(image.manifest), annotations=ann or None,
                    platform=oi.Platform(architecture=cfg.architecture, os=cfg.os,
                                         variant=cfg.variant)))
        index = oi.Index(schema_version=2, media_type=oi.OCI_INDEX, manifests=descriptors)
        _add_bytes(tf, "index.json", oi.encode(index), now)


# load ---------------------------------------------------------------------------------


class _Member:
    def __init__(self, digest: Digest, size: int) -> None:
        self.digest, self.size = digest, size


def _read_archive(content: ContentStore, stream: BinaryIO) -> tuple[dict[str, bytes],
                                                                     dict[str, _Member]]:
    """Stream every regular member into the store; JSON-ish members into memory."""
    small: dict[str, bytes] = {}
    blobs: dict[str, _Member] = {}
    links: dict[str, str] = {}
    try:
        with tarfile.open(fileobj=decompressed(stream), mode="r|") as tf:
            for m in tf:
                name = posixpath.normpath(m.name.lstrip("/"))
                if m.issym() or m.islnk():
                    target = m.linkname if m.islnk() else posixpath.join(
                        posixpath.dirname(name), m.linkname)
                    links[name] = posixpath.normpath(target.lstrip("/"))
                    continue
                if not m.isreg():
                    continue
                f = tf.extractfile(m)
                assert f is not None
                if m.size <= SMALL and (name.endswith(".json") or name in (
                        "repositories", "oci-layout", "manifest.json", "index.json")):
                    small[name] = f.read()
                    continue
                expected = None
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == "blobs" and dg.is_digest(
                        f"{parts[1]}:{parts[2]}"):
                    expected = f"{parts[1]}:{parts[2]}"
                d = content.write_from(f, expected, m.size)
                blobs[name] = _Member(d, m.size)
    except tarfile.TarError as exc:
        raise InvalidArgumentError(f"load image archive: bad tar archive: {exc}") from None
    for name, target in links.items():
        if target in blobs:
            blobs[name] = blobs[target]
        elif target in small:
            small[name] = small[target]
    # small blobs named by digest are content too (configs, manifests of OCI layouts)
    for name, data in small.items():
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "blobs":
            d = content.write(data, f"{parts[1]}:{parts[2]}")
            blobs[name] = _Member(d, len(data))
    return small, blobs


def _diff_id(content: ContentStore, digest: Digest) -> tuple[Digest, str]:
    """(diff ID, layer media type) of a layer blob that may be compressed."""
    with content.open(digest) as f:
        head = f.read(4)
    if head.startswith(b"\x1f\x8b"):
        compression, mt = "gzip", oi.DOCKER_LAYER_GZIP
    elif head.startswith(b"\x28\xb5\x2f\xfd"):
        compression, mt = "zstd", oi.OCI_LAYER_ZSTD
    else:
        return digest, oi.DOCKER_LAYER
    with content.open(digest) as f:
        r = HashingReader(decompressed(f, compression))
        r.drain()
    return r.digest, mt


def load(svc: ImageService, stream: BinaryIO) -> list[str]:
    """Load a docker-archive or OCI layout archive; return what was loaded,
    as Docker prints it ("Loaded image: busybox:latest" / "Loaded image ID: ...")."""
    with svc.lease():
        return _load(svc, stream)


def _load(svc: ImageService, stream: BinaryIO) -> list[str]:
    small, blobs = _read_archive(svc.content, stream)
    out: list[str] = []
    if "manifest.json" in small:
        try:
            entries = msgspec.json.decode(small["manifest.json"])
        except msgspec.DecodeError as exc:
            raise InvalidArgumentError(f"load image archive: manifest.json: {exc}") from None
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get("Config"), str) for e in entries):
            raise InvalidArgumentError("load image archive: manifest.json: expected a list of "
                                       "objects with a Config")
        for e in entries:
            cfg_name = posixpath.normpath(e["Config"])
            config_bytes = small.get(cfg_name)
            if config_bytes is None and cfg_name in blobs:
                config_bytes = svc.content.read(blobs[cfg_name].digest)
            if config_bytes is None:
                raise InvalidArgumentError(f"load image archive: missing config {cfg_name}")
            layers = []
            for lp in e.get("Layers") or []:
                member = blobs.get(posixpath.normpath(lp))
                if member is None:
                    raise InvalidArgumentError(f"load image archive: missing layer {lp}")
                diff_id, mt = _diff_id(svc.content, member.digest)
                layers.append(LayerBlob(member.digest, mt, member.size, diff_id))
            tags = e.get("RepoTags") or []
            image = svc.create(config_bytes, layers, tags, oi.DOCKER_MANIFEST)
            out += [f"Loaded image: {reference.parse(t).familiar}" for t in tags] or [
                f"Loaded image ID: {image.id}"]
        return out
    if "index.json" in small:
        index = oi.decode_index(small["index.json"])
        for desc in index.manifests:
            out += _load_oci(svc, desc, index)
        return out
    raise InvalidArgumentError(
        "load image archive: neither manifest.json (docker save) nor index.json (OCI layout)")


def _load_oci(svc: ImageService, desc: oi.Descriptor, parent: oi.Index) -> list[str]:
    ann = desc.annotations or {}
    if desc.media_type in oi.INDEX_TYPES:
        child = oi.decode_index(svc.content.read(desc.digest))
        try:
            chosen = oi.select_manifest(child, oi.host_platform())
        except NotFoundError:
            return []
        return _load_oci(svc, replace(chosen, annotations=ann or chosen.annotations), child)
    if desc.media_type not in oi.MANIFEST_TYPES:
        return []
    data = svc.content.read(desc.digest)
    m = oi.decode_manifest(data)
    config_bytes = svc.content.read(m.config.digest)
    cfg = oi.decode_config(config_bytes)
    layers = [LayerBlob(Digest(d.digest), d.media_type, d.size, Digest(diff))
              for d, diff in zip(m.layers, cfg.rootfs.diff_ids, strict=True)]
    name = ann.get(oi.CONTAINERD_IMAGE_NAME) or ""
    refname = ann.get(oi.ANNOTATION_REF_NAME) or ""
    tag = ""
    if name:
        tag = name
    elif refname and reference.is_reference(refname) and ("/" in refname or ":" in refname):
        tag = refname
    image = _create_from_manifest(svc, data, desc, cfg, layers)
    if tag:
        svc.store.tag(image.id, reference.parse(tag))
        return [f"Loaded image: {reference.parse(tag).familiar}"]
    return [f"Loaded image ID: {image.id}"]


def _create_from_manifest(svc: ImageService, manifest_bytes: bytes, desc: oi.Descriptor,
                          cfg: oi.ImageConfig, layers: list[LayerBlob]) -> ImageRecord:
    """Record an image under its own manifest (keeps its digest)."""
    chain_ids = oi.chain_ids([str(lb.diff_id) for lb in layers])
    from berth.image.service import NoProgress

    sizes = [svc._unpack_layer(lb, chain_ids, i, NoProgress()) for i, lb in enumerate(layers)]
    m = oi.decode_manifest(manifest_bytes)
    return svc._record(Digest(m.config.digest), cfg, desc.digest,
                       m.media_type or desc.media_type, chain_ids, sum(sizes))


# import -------------------------------------------------------------------------------

CHANGE_INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "ONBUILD", "STOPSIGNAL",
                       "USER", "VOLUME", "WORKDIR")


def _args(rest: str, shell_form: bool) -> list[str]:
    rest = rest.strip()
    if rest.startswith("["):
        try:
            v = msgspec.json.decode(rest)
        except msgspec.DecodeError:
            v = None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    return ["/bin/sh", "-c", rest] if shell_form else shlex.split(rest)


def apply_changes(cfg: oi.ContainerConfig, changes: Iterable[str]) -> oi.ContainerConfig:
    """Apply Dockerfile-like `--change` instructions to a container config."""
    for change in changes:
        instr, _, rest = change.strip().partition(" ")
        instr = instr.upper()
        if instr not in CHANGE_INSTRUCTIONS:
            raise InvalidArgumentError(f"import --change {change!r}: {instr} is not supported "
                                       f"(one of {', '.join(CHANGE_INSTRUCTIONS)})")
        if instr == "CMD":
            cfg = replace(cfg, cmd=_args(rest, True))
        elif instr == "ENTRYPOINT":
            cfg = replace(cfg, entrypoint=_args(rest, True))
        elif instr == "ENV":
            env = list(cfg.env or [])
            pairs = ([rest.split(None, 1)] if "=" not in rest.split(None, 1)[0]
                     else [p.split("=", 1) for p in shlex.split(rest)])
            for k, *v in pairs:
                env = [e for e in env if e.split("=", 1)[0] != k] + [f"{k}={v[0] if v else ''}"]
            cfg = replace(cfg, env=env)
        elif instr == "EXPOSE":
            ports = dict(cfg.exposed_ports or {})
            for p in rest.split():
                ports[p if "/" in p else f"{p}/tcp"] = {}
            cfg = replace(cfg, exposed_ports=ports)
        elif instr == "LABEL":
            labels = dict(cfg.labels or {})
            for p in shlex.split(rest):
                k, _, v = p.partition("=")
                labels[k] = v
            cfg = replace(cfg, labels=labels)
        elif instr == "VOLUME":
            vols = dict(cfg.volumes or {})
            for v in _args(rest, False):
                vols[v] = {}
            cfg = replace(cfg, volumes=vols)
        elif instr == "USER":
            cfg = replace(cfg, user=rest.strip())
        elif instr == "WORKDIR":
            cfg = replace(cfg, working_dir=rest.strip())
        elif instr == "STOPSIGNAL":
            cfg = replace(cfg, stop_signal=rest.strip())
        elif instr == "ONBUILD":
            cfg = replace(cfg, on_build=[*(cfg.on_build or []), rest.strip()])
    return cfg


def import_rootfs(svc: ImageService, stream: BinaryIO, name: str | None = None,
                  changes: Iterable[str] = (), message: str = "",
                  platform: oi.Platform | None = None) -> ImageRecord:
    """`docker import`: a root filesystem tarball (maybe compressed) as a one-layer image."""
    with svc.lease():
        return _import_rootfs(svc, stream, name, changes, message, platform)


def _import_rootfs(svc: ImageService, stream: BinaryIO, name: str | None,
                   changes: Iterable[str], message: str,
                   platform: oi.Platform | None) -> ImageRecord:
    cfg = apply_changes(oi.ContainerConfig(), changes)
    os.makedirs(svc.paths.tmp, exist_ok=True)
    tmp = os.path.join(svc.paths.tmp, f"import-{os.getpid()}-{os.urandom(4).hex()}.tar")
    try:
        with open(tmp, "wb") as out:
            plain = decompressed(stream)
            while chunk := plain.read(1 << 20):
                out.write(chunk)
        layer = svc.add_layer_tar(tmp)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    plat = platform or oi.host_platform()
    created = rfc3339(time.time())
    config = oi.ImageConfig(
        architecture=plat.architecture, os=plat.os, variant=plat.variant,
        rootfs=oi.RootFS("layers", [str(layer.diff_id)]), created=created,
        config=cfg if cfg != oi.ContainerConfig() else None, comment=message or None,
        history=[oi.History(created=created, created_by="berth import",
                            comment=message or "Imported from tarball")],
    )
    return svc.create(config, [layer], [name] if name else [])
