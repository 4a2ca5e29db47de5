"""Pull and push progress as Docker's JSON message stream (what
``POST /images/create`` and ``POST /images/{name}/push`` send, one JSON
object per line), for the API server; `TerminalProgress` in the CLI is the
other implementation of `berth.image.service.Progress`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import msgspec

REPORT_EVERY_S = 0.1  # at most this often per blob, for "Downloading"/"Pushing"


class JSONProgress:
    """Calls `emit` with each message, encoded as a JSON line (bytes)."""

    def __init__(self, emit: Callable[[bytes], None]) -> None:
        self.emit = emit
        self.lock = threading.Lock()
        self.totals: dict[str, int | None] = {}
        self.current: dict[str, int] = {}
        self.action: dict[str, str] = {}
        self.last: dict[str, float] = {}

    def _send(self, msg: dict[str, Any]) -> None:
        self.emit(msgspec.json.encode(msg) + b"\r\n")

    @staticmethod
    def _id(digest: str) -> str:
        return digest.split(":")[-1][:12]

    def status(self, digest: str, text: str, total: int | None = None) -> None:
        with self.lock:
            self.totals[digest] = total
            if text in ("Downloading", "Preparing", "Extracting"):
                self.current[digest] = 0
                self.action[digest] = "Pushing" if text == "Preparing" else text
            self._send({"status": text, "progressDetail": {}, "id": self._id(digest)})

    def advance(self, digest: str, n: int) -> None:
        with self.lock:
            cur = self.current.get(digest, 0) + n
            self.current[digest] = cur
            now = time.monotonic()
            if now - self.last.get(digest, 0.0) < REPORT_EVERY_S:
                return
            self.last[digest] = now
            detail: dict[str, int] = {"current": cur}
            total = self.totals.get(digest)
            if total:
                detail["total"] = total
            self._send({"status": self.action.get(digest, "Downloading"),
                        "progressDetail": detail, "id": self._id(digest)})

    def message(self, text: str) -> None:
        with self.lock:
            self._send({"status": text})

    def error(self, text: str) -> None:
        """The stream's last message when the pull or push failed."""
        with self.lock:
            self._send({"errorDetail": {"message": text}, "error": text})
