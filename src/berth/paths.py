"""Every on-disk location of berth, derived from two roots.

`Paths` serves the engine (`--root`/BERTH_ROOT and `--state`/BERTH_STATE);
`RuntimePaths` serves `berth-runtime` (its own `--root`). Nothing else in
berth builds a path from a module-level constant, so tests and several
engines can run side by side in temporary roots.

Imported on the runtime's start-up path: plain classes, no dataclasses.
"""

import os

from berth import DEFAULT_ROOT, DEFAULT_RUNTIME_ROOT, DEFAULT_STATE


class Paths:
    """The engine's locations: persistent data under `root`, live state under `state`."""

    __slots__ = ("root", "state")

    def __init__(self, root: str | None = None, state: str | None = None) -> None:
        self.root = os.path.abspath(root or os.environ.get("BERTH_ROOT") or DEFAULT_ROOT)
        self.state = os.path.abspath(state or os.environ.get("BERTH_STATE") or DEFAULT_STATE)

    def __repr__(self) -> str:
        return f"Paths(root={self.root!r}, state={self.state!r})"

    @property
    def database(self) -> str:
        return f"{self.root}/berth.db"

    @property
    def blobs(self) -> str:
        return f"{self.root}/blobs"

    @property
    def ingest(self) -> str:
        """Partial downloads, on the same filesystem as `blobs` so commit is a rename."""
        return f"{self.root}/ingest"

    @property
    def snapshots(self) -> str:
        return f"{self.root}/snapshots"

    @property
    def volumes(self) -> str:
        return f"{self.root}/volumes"

    @property
    def containers(self) -> str:
        return f"{self.root}/containers"

    @property
    def bundles(self) -> str:
        """Bundles and logs of containers (persistent)."""
        return f"{self.root}/containers"

    @property
    def tmp(self) -> str:
        return f"{self.root}/tmp"

    def container(self, container_id: str) -> str:
        return f"{self.root}/containers/{container_id}"

    def container_state(self, container_id: str) -> str:
        return f"{self.state}/containers/{container_id}"

    @property
    def runtime_root(self) -> str:
        """Where the engine's in-process runtime keeps container state."""
        return f"{self.state}/runtime"


class RuntimePaths:
    """`berth-runtime --root`: one directory per container with its state."""

    __slots__ = ("root",)

    def __init__(self, root: str | None = None) -> None:
        self.root = os.path.abspath(root or DEFAULT_RUNTIME_ROOT)

    def __repr__(self) -> str:
        return f"RuntimePaths(root={self.root!r})"

    def container(self, container_id: str) -> str:
        return f"{self.root}/{container_id}"

    def state_file(self, container_id: str) -> str:
        return f"{self.root}/{container_id}/state.json"

    def exec_fifo(self, container_id: str) -> str:
        return f"{self.root}/{container_id}/exec.fifo"

    def lock_file(self, container_id: str) -> str:
        return f"{self.root}/{container_id}/lock"
