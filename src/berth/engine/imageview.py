"""The part of the image service a container start needs (resolve an image,
read its config, prepare and mount its snapshot), without importing the
registry client (httpx) that `ImageService` pulls in: that import alone costs
more than the rest of a `berth run`. Everything else goes to the full
service, made on first use."""

from __future__ import annotations

import os

from berth.paths import Paths

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from typing import Any


class ImageView:
    def __init__(self, paths: Paths, service: Any = None, conn: Any = None) -> None:
        """`conn`: the engine's connection to the database, used for the
        image and snapshot tables too (one connection opened, not three)."""
        from berth.image.content import ContentStore
        from berth.image.snapshots import snapshotter
        from berth.image.store import ImageStore

        self.paths = paths
        self.content = ContentStore(paths)
        self.store = ImageStore(paths.database, conn)
        self.snapshots = snapshotter(os.environ.get("BERTH_SNAPSHOTTER", "auto"),
                                     paths.snapshots, paths.database, conn)
        self._service = service
        self._own_service = service is None

    @property
    def service(self) -> Any:
        """The full ImageService (pull, bootstrap, inspect, list ...)."""
        if callable(self._service):
            self._service = self._service()
        if self._service is None:
            from berth.image.service import ImageService

            self._service = ImageService(self.paths,
                                         os.environ.get("BERTH_SNAPSHOTTER", "auto"))
        return self._service

    def close(self) -> None:
        if self._own_service and self._service is not None:
            self._service.close()
        self.store.close()
        self.snapshots.close()

    def get(self, name: str) -> Any:
        return self.store.resolve(name)

    def config(self, image: Any) -> Any:
        """The image's config: `.config` has ContainerConfig's attributes
        (env, cmd, entrypoint, ...). Decoded with the stdlib's json where the
        document has the usual shape (msgspec's import alone is ~40 ms on
        these machines), else by berth.oci.image, which also says what is
        wrong with it."""
        data = self.content.read(image.id)
        light = _light_config(data)
        if light is not None:
            return light
        from berth.oci import image as oi

        return oi.decode_config(data)

    def rootfs(self, name: str, key: str, readonly: bool = False) -> list:
        image = self.store.resolve(name)
        if image.chain_id and not self.snapshots.exists(image.chain_id):
            return self.service.rootfs(name, key, readonly)
        if readonly:
            return self.snapshots.view(key, image.chain_id)
        return self.snapshots.prepare(key, image.chain_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)


# ContainerConfig's fields (oci/image.py): JSON name -> (attribute, type)
_CONFIG_FIELDS = {
    "User": ("user", str), "ExposedPorts": ("exposed_ports", dict), "Env": ("env", list),
    "Entrypoint": ("entrypoint", list), "Cmd": ("cmd", list), "Volumes": ("volumes", dict),
    "WorkingDir": ("working_dir", str), "Labels": ("labels", dict),
    "StopSignal": ("stop_signal", str), "Healthcheck": ("healthcheck", dict),
    "ArgsEscaped": ("args_escaped", bool), "OnBuild": ("on_build", list),
    "Shell": ("shell", list),
}


class _Fields:
    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


def _light_config(data: bytes) -> Any:
    """The image config as oci.image.decode_config gives it (the attributes
    berth reads), or None when it is not plainly what decode_config accepts."""
    from berth import jsonio

    try:
        doc = jsonio.loads(data)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("architecture"), str) \
            or not isinstance(doc.get("os"), str):
        return None
    rootfs = doc.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("type"), str) \
            or not isinstance(rootfs.get("diff_ids"), list):
        return None
    c = doc.get("config")
    if c is None:
        return _Fields(config=None, architecture=doc["architecture"], os=doc["os"])
    if not isinstance(c, dict):
        return None
    values: dict[str, Any] = {name: None for name, _ in _CONFIG_FIELDS.values()}
    for key, value in c.items():
        spec = _CONFIG_FIELDS.get(key)
        if spec is None or value is None:
            continue
        name, kind = spec
        if not isinstance(value, kind):
            return None
        if kind is list and not all(isinstance(x, str) for x in value):
            return None
        if key in ("ExposedPorts", "Volumes") and not all(isinstance(v, dict)
                                                          for v in value.values()):
            return None
        if key == "Labels" and not all(isinstance(v, str) for v in value.values()):
            return None
        values[name] = value
    return _Fields(config=_Fields(**values), architecture=doc["architecture"], os=doc["os"])
