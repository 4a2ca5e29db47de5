"""Docker's JSON shapes of images: `docker image inspect`, `GET /images/json`,
`docker history`. Read-only views over the image service."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from berth.errors import NotFoundError
from berth.image.store import ImageRecord
from berth.oci import image as oi
from berth.oci import reference

if TYPE_CHECKING:
    from berth.image.service import ImageService



def inspect(svc: ImageService, name: str) -> dict[str, Any]:
    image = svc.store.resolve(name)
    cfg = svc.config(image)
    raw = _json(svc.config_bytes(image))
    container_config = _docker_config(raw.get("config") or {})
    out: dict[str, Any] = {
        "Id": str(image.id),
        "RepoTags": [reference.parse(t).familiar for t in image.tags],
        "RepoDigests": [reference.parse(d).familiar for d in image.repo_digests],
        "Parent": "",
        "Comment": cfg.comment or "",
        "Created": cfg.created or "",
        "Container": raw.get("container", ""),
        "ContainerConfig": _docker_config(raw.get("container_config") or {}),
        "DockerVersion": cfg.docker_version or "",
        "Author": cfg.author or "",
        "Config": container_config,
        "Architecture": cfg.architecture,
        "Os": cfg.os,
        "Size": image.size,
        "VirtualSize": image.size,
        "GraphDriver": {"Data": _graph_data(svc, image), "Name": svc.snapshots.driver},
        "RootFS": {"Type": cfg.rootfs.type, "Layers": list(cfg.rootfs.diff_ids)},
        "Metadata": {"LastTagTime": image.last_tag_time or "0001-01-01T00:00:00Z"},
    }
    if cfg.variant:
        out["Variant"] = cfg.variant
    return out

def summary(svc: ImageService, image: ImageRecord) -> dict[str, Any]:
    """One entry of Docker's ``GET /images/json``."""
    raw = _json(svc.config_bytes(image))
    return {
        "Id": str(image.id),
        "ParentId": "",
        "RepoTags": [reference.parse(t).familiar for t in image.tags],
        "RepoDigests": [reference.parse(d).familiar for d in image.repo_digests],
        "Created": unix_time(image.created),
        "Size": image.size,
        "SharedSize": -1,
        "VirtualSize": image.size,
        "Labels": (raw.get("config") or {}).get("Labels"),
        "Containers": -1,
    }

def _graph_data(svc: ImageService, image: ImageRecord) -> dict[str, str]:
    try:
        info = svc.snapshots.stat(image.chain_id)
    except NotFoundError:
        return {}
    return {"Dir": svc.snapshots.fs(info), "ChainID": image.chain_id}

def history(svc: ImageService, name: str) -> list[dict[str, Any]]:
    image = svc.store.resolve(name)
    cfg = svc.config(image)
    chains = oi.chain_ids(list(cfg.rootfs.diff_ids))
    history = list(cfg.history or [])
    if not history:
        history = [oi.History(created=cfg.created) for _ in chains]
    out = []
    layer = 0
    for h in history:
        size = 0
        if not h.empty_layer and layer < len(chains):
            size = svc.store.layer_size(chains[layer])
            layer += 1
        out.append({"Id": "<missing>", "Created": unix_time(h.created), "CreatedBy":
                    h.created_by or "", "Tags": None, "Size": size,
                    "Comment": h.comment or ""})
    out.reverse()
    if out:
        out[0]["Id"] = str(image.id)
        out[0]["Tags"] = [reference.parse(t).familiar for t in image.tags] or None
    return out


def _json(data: bytes) -> dict[str, Any]:
    import msgspec

    doc = msgspec.json.decode(data)
    return doc if isinstance(doc, dict) else {}


_DOCKER_CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout",
                       "AttachStderr", "ExposedPorts", "Tty", "OpenStdin", "StdinOnce", "Env",
                       "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir",
                       "Entrypoint", "OnBuild", "Labels", "StopSignal", "Shell")
_DEFAULTS: dict[str, Any] = {"Hostname": "", "Domainname": "", "User": "", "AttachStdin": False,
                             "AttachStdout": False, "AttachStderr": False, "Tty": False,
                             "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
                             "Image": "", "Volumes": None, "WorkingDir": "",
                             "Entrypoint": None, "OnBuild": None, "Labels": None}


def _docker_config(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {k: cfg.get(k, _DEFAULTS.get(k)) for k in _DOCKER_CONFIG_KEYS
           if k in cfg or k in _DEFAULTS}
    return out


def rfc3339(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


def unix_time(created: str | None) -> int:
    if not created:
        return 0
    import datetime

    text = created.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        frac = "".join(c for c in frac if c.isdigit())[:6]
        text = f"{head}.{frac}"
    tz = ""
    for sep in ("+", "-"):
        if sep in text[10:]:
            idx = text.rfind(sep)
            text, tz = text[:idx], text[idx:]
            break
    try:
        dt = datetime.datetime.fromisoformat(text + (tz or "+00:00"))
    except ValueError:
        return 0
    return int(dt.timestamp())
