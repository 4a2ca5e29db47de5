"""Reading a container's json-file log (written by the monitor): all of it
or the last N lines, then optionally following it across rotations."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from berth import jsonio


@dataclass(frozen=True)
class Entry:
    stream: str
    text: str
    time: str


def _parse(line: bytes) -> Entry | None:
    try:
        obj = jsonio.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    return Entry(str(obj.get("stream", "stdout")), str(obj.get("log", "")),
                 str(obj.get("time", "")))


def _files(path: str) -> list[str]:
    """Oldest first: PATH.N ... PATH.1, PATH."""
    rotated = []
    i = 1
    while os.path.exists(f"{path}.{i}"):
        rotated.append(f"{path}.{i}")
        i += 1
    return [*reversed(rotated), path]


def read(path: str, tail: int | None = None, since: str = "", until: str = "") -> list[Entry]:
    entries: list[Entry] = []
    for p in _files(path):
        try:
            with open(p, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            continue
        for line in data.splitlines():
            e = _parse(line)
            if e is None:
                continue
            if since and e.time < since:
                continue
            if until and e.time > until:
                continue
            entries.append(e)
    if tail is not None and tail >= 0:
        entries = entries[-tail:] if tail else []
    return entries


def follow(path: str, is_running: Callable[[], bool], start_offset: int | None = None,
           poll: float = 0.1) -> Iterator[Entry]:
    """New entries of PATH from `start_offset` (its end when None), following
    rotation (PATH renamed to PATH.1: the rest of the old file is read, then
    the new one from its start), until the container stops and all is read."""
    f = None
    ino = None
    try:
        while f is None:
            try:
                f = open(path, "rb")  # noqa: SIM115
            except FileNotFoundError:
                if not is_running():
                    return
                time.sleep(poll)
        ino = os.fstat(f.fileno()).st_ino
        f.seek(0, os.SEEK_END) if start_offset is None else f.seek(start_offset)
        buf = b""
        idle_checks = 0
        while True:
            chunk = f.read(65536)
            if chunk:
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    e = _parse(line)
                    if e is not None:
                        yield e
                idle_checks = 0
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and st.st_ino != ino:
                f.close()
                f = open(path, "rb")  # noqa: SIM115
                ino = os.fstat(f.fileno()).st_ino
                buf = b""
                continue
            if not is_running():
                idle_checks += 1
                if idle_checks > 1:
                    return
            time.sleep(poll)
    finally:
        if f is not None:
            f.close()


def size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
