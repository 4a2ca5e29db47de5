"""The part of the image service a container start needs (resolve an image,
read its config, prepare and mount its snapshot), without importing the
registry client (httpx) that `ImageService` pulls in: that import alone costs
more than the rest of a `berth run`. Everything else goes to the full
service, made on first use."""

from __future__ import annotations

import os
from typing import Any

from berth.paths import Paths


class ImageView:
    def __init__(self, paths: Paths, service: Any = None) -> None:
        from berth.image.content import ContentStore
        from berth.image.snapshots import snapshotter
        from berth.image.store import ImageStore

        self.paths = paths
        self.content = ContentStore(paths)
        self.store = ImageStore(paths.database)
        self.snapshots = snapshotter(os.environ.get("BERTH_SNAPSHOTTER", "auto"),
                                     paths.snapshots, paths.database)
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
        from berth.oci import image as oi

        return oi.decode_config(self.content.read(image.id))

    def rootfs(self, name: str, key: str, readonly: bool = False) -> list:
        image = self.store.resolve(name)
        if image.chain_id and not self.snapshots.exists(image.chain_id):
            return self.service.rootfs(name, key, readonly)
        if readonly:
            return self.snapshots.view(key, image.chain_id)
        return self.snapshots.prepare(key, image.chain_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.service, name)
