"""OCI image-spec and Docker schema 2 models: media types, descriptors,
manifests, indexes, image configs, platforms. Pure: no I/O.

Documents are decoded from the exact bytes that were fetched or read (their
digest is over those bytes); the models are for reading them. When berth
makes a document it encodes a model once and keeps those bytes.
"""

from typing import Any

import msgspec

from berth.errors import InvalidArgumentError

# media types -------------------------------------------------------------------------

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
OCI_LAYER_NONDIST_ZSTD = "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = (OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST)
SCHEMA1_TYPES = (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED)
CONFIG_TYPES = (OCI_CONFIG, DOCKER_CONFIG)
LAYER_TYPES = {
    OCI_LAYER: "",
    OCI_LAYER_NONDIST: "",
    DOCKER_LAYER: "",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_NONDIST_GZIP: "gzip",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_FOREIGN: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    OCI_LAYER_NONDIST_ZSTD: "zstd",
}

# the Accept header for a manifest fetch, most wanted first
MANIFEST_ACCEPT = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"
CONTAINERD_IMAGE_NAME = "io.containerd.image.name"


def layer_compression(media_type: str) -> str:
    """'' (uncompressed), 'gzip' or 'zstd' for a layer media type."""
    try:
        return LAYER_TYPES[media_type]
    except KeyError:
        raise InvalidArgumentError(f"layer media type {media_type!r}: not supported") from None


# models --------------------------------------------------------------------------------


class Platform(msgspec.Struct, omit_defaults=True, frozen=True):
    architecture: str
    os: str
    os_version: str | None = msgspec.field(default=None, name="os.version")
    os_features: list[str] | None = msgspec.field(default=None, name="os.features")
    variant: str | None = None
    features: list[str] | None = None

    def __str__(self) -> str:
        out = f"{self.os}/{self.architecture}"
        return f"{out}/{self.variant}" if self.variant else out


class Descriptor(msgspec.Struct, omit_defaults=True, frozen=True, rename="camel"):
    media_type: str
    digest: str
    size: int
    urls: list[str] | None = None
    annotations: dict[str, str] | None = None
    platform: Platform | None = None
    artifact_type: str | None = None


class Manifest(msgspec.Struct, omit_defaults=True, frozen=True, rename="camel"):
    schema_version: int
    config: Descriptor
    layers: list[Descriptor]
    media_type: str | None = None
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None
    artifact_type: str | None = None


class Index(msgspec.Struct, omit_defaults=True, frozen=True, rename="camel"):
    schema_version: int
    manifests: list[Descriptor]
    media_type: str | None = None
    annotations: dict[str, str] | None = None
    subject: Descriptor | None = None


class RootFS(msgspec.Struct, omit_defaults=True, frozen=True):
    type: str
    diff_ids: list[str]


class History(msgspec.Struct, omit_defaults=True, frozen=True):
    created: str | None = None
    created_by: str | None = None
    author: str | None = None
    comment: str | None = None
    empty_layer: bool | None = None


class ContainerConfig(msgspec.Struct, omit_defaults=True, frozen=True, rename="pascal"):
    """The `config` of an image config (Docker's field names, PascalCase)."""

    user: str | None = None
    exposed_ports: dict[str, dict[str, Any]] | None = None
    env: list[str] | None = None
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    volumes: dict[str, dict[str, Any]] | None = None
    working_dir: str | None = None
    labels: dict[str, str] | None = None
    stop_signal: str | None = None
    healthcheck: dict[str, Any] | None = None
    args_escaped: bool | None = None
    on_build: list[str] | None = None
    shell: list[str] | None = None


class ImageConfig(msgspec.Struct, omit_defaults=True, frozen=True):
    architecture: str
    os: str
    rootfs: RootFS
    created: str | None = None
    author: str | None = None
    variant: str | None = None
    os_version: str | None = msgspec.field(default=None, name="os.version")
    config: ContainerConfig | None = None
    history: list[History] | None = None
    docker_version: str | None = None
    comment: str | None = None

    @property
    def platform(self) -> Platform:
        return Platform(architecture=self.architecture, os=self.os, variant=self.variant)


def _decode(data: bytes, cls: type, what: str) -> Any:
    try:
        return msgspec.json.decode(data, type=cls)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidArgumentError(f"decode {what}: {exc}") from None


def media_type_of(data: bytes, declared: str | None = None) -> str:
    """The media type of a manifest-like document: its own `mediaType`, else
    the one declared by the transport, else guessed from its shape."""
    try:
        doc = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise InvalidArgumentError(f"decode manifest: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgumentError("decode manifest: not a JSON object")
    mt = doc.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if doc.get("schemaVersion") == 1:
        return DOCKER_SCHEMA1
    if declared and declared not in ("application/json", "application/octet-stream"):
        return declared
    if "manifests" in doc:
        return OCI_INDEX
    if "layers" in doc or "config" in doc:
        return OCI_MANIFEST
    raise InvalidArgumentError("decode manifest: unknown document type")


def check_not_schema1(media_type: str, what: str) -> None:
    if media_type in SCHEMA1_TYPES:
        raise InvalidArgumentError(
            f"{what}: Docker image manifest schema 1 is deprecated and not supported; "
            "push the image again with a current client (schema 2 or OCI)"
        )


def decode_manifest(data: bytes) -> Manifest:
    m = _decode(data, Manifest, "image manifest")
    if m.schema_version != 2:
        raise InvalidArgumentError(f"decode image manifest: schemaVersion {m.schema_version}")
    return m


def decode_index(data: bytes) -> Index:
    return _decode(data, Index, "image index")


def decode_config(data: bytes) -> ImageConfig:
    return _decode(data, ImageConfig, "image config")


def encode(obj: msgspec.Struct) -> bytes:
    return msgspec.json.encode(obj)


# platforms -------------------------------------------------------------------------------

_ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "armhf": "arm",
    "armel": "arm",
    "i386": "386",
    "i686": "386",
}


def normalize_platform(p: Platform) -> Platform:
    arch = _ARCH_ALIASES.get(p.architecture.lower(), p.architecture.lower())
    variant = p.variant
    if arch == "arm64" and variant in (None, "", "v8"):
        variant = None
    elif arch == "arm" and not variant:
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = None
    return Platform(architecture=arch, os=p.os.lower(), variant=variant)


def parse_platform(text: str) -> Platform:
    """``os/arch[/variant]`` (as `--platform`) -> Platform."""
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise InvalidArgumentError(
            f"parse platform {text!r}: expected os/arch or os/arch/variant"
        )
    return normalize_platform(
        Platform(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else None)
    )


def host_platform() -> Platform:
    import os
    import platform as _platform

    machine = _platform.machine()
    variant = None
    if machine.startswith("armv"):
        variant = machine[3:5]
        machine = "arm"
    return normalize_platform(
        Platform(os=os.uname().sysname.lower(), architecture=machine, variant=variant)
    )


def platform_matches(want: Platform, have: Platform | None) -> bool:
    if have is None:
        return False
    w, h = normalize_platform(want), normalize_platform(have)
    if (w.os, w.architecture) != (h.os, h.architecture):
        return False
    return w.variant is None or h.variant is None or w.variant == h.variant


def select_manifest(index: Index, want: Platform) -> Descriptor:
    """The manifest of `index` for platform `want` (an exact variant first)."""
    w = normalize_platform(want)
    candidates = [
        d
        for d in index.manifests
        if d.media_type not in INDEX_TYPES and platform_matches(w, d.platform)
    ]
    for d in candidates:
        if d.platform is not None and normalize_platform(d.platform).variant == w.variant:
            return d
    if candidates:
        return candidates[0]
    available = ", ".join(str(d.platform) for d in index.manifests if d.platform) or "none"
    from berth.errors import NotFoundError

    raise NotFoundError(
        f"select platform {w} from image index: no matching manifest (available: {available})",
        platform=str(w),
    )


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Chain IDs of a layer stack (image-spec config.md): ChainID(L0) = DiffID(L0),
    ChainID(L0|...|Ln) = sha256(ChainID(L0|...|Ln-1) + " " + DiffID(Ln))."""
    import hashlib

    out: list[str] = []
    for d in diff_ids:
        if not out:
            out.append(d)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out
