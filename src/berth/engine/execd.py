"""The engine's side of `berth exec` (the ways and the protocol: see
berth/execclient.py, the CLI's side): the name hints a container's start
writes and its removal drops, and the process an exec runs, built as
`docker exec` builds it. The helpers that serve an exec are in
engine/execserve.py."""

import posix

from berth.execclient import _hex, _hint_path  # noqa: F401  (_hex: for execserve)

# name hints -----------------------------------------------------------------------------

def write_hint(state: str, name: str, cid: str) -> None:
    """STATE/names/NAME -> CID (best effort: a missing hint only makes
    `berth exec` take the engine's path)."""
    path = _hint_path(state, name)
    if path is not None:
        link(path, cid)


def link(path: str, target: str) -> None:
    """`path` -> `target`: a symbolic link made, or replaced, at once (its
    directory made if missing); best effort."""
    import os

    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        try:
            os.symlink(target, tmp)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            os.symlink(target, tmp)
        except FileExistsError:
            os.unlink(tmp)
            os.symlink(target, tmp)
        os.rename(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def drop_hint(state: str, name: str, cid: str) -> None:
    """Remove STATE/names/NAME if it still names `cid`."""
    path = _hint_path(state, name)
    if path is None:
        return
    try:
        if posix.readlink(path) == cid:
            posix.unlink(path)
    except OSError:
        pass


# the process ----------------------------------------------------------------------------

def build_process(config: dict, rootfs: str, args: list[str], env: list[str], workdir: str,
                  user: str, privileged: bool) -> dict:
    """The runtime-spec process `docker exec` runs: the container's own
    (environment, user, capabilities) with the command and the flags over
    it; a later variable replaces an earlier one in place, as options.merge_env."""
    proc = dict(config["process"])
    proc["args"] = list(args)
    proc["terminal"] = False
    merged: dict[str, str] = {}
    for item in [*(proc.get("env") or []), *env]:
        merged[item.split("=", 1)[0]] = item
    proc["env"] = list(merged.values())
    if workdir:
        proc["cwd"] = workdir
    if user or privileged:
        from berth.engine import spec

        if user:
            proc["user"] = spec.resolve_user(rootfs, user)
        if privileged:
            caps = spec.capabilities([], [], True)
            proc["capabilities"] = {k: list(caps) for k in ("bounding", "effective",
                                                           "permitted")}
    return proc


def process_file(proc: dict) -> tuple[str, int]:
    """The process as a file the runtime can open, without a file on disk
    (a memfd, named through /proc so a runtime binary we spawn can open it
    too); (path, fd to close once the runtime has read it)."""
    import os

    from berth import jsonio

    fd = os.memfd_create("process.json", os.MFD_CLOEXEC)
    try:
        data = jsonio.dumps(proc).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except BaseException:
        os.close(fd)
        raise
    return f"/proc/{os.getpid()}/fd/{fd}", fd
