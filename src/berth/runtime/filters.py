"""The container's seccomp filter as the runtime compiles it, through the
cache under its root; apart from container.py so that an exec's child,
which compiles the filter while the parent moves it into the cgroup,
imports only this.

`create` records the name of the cache entry it used in the container's
state (`recorded_entry`); an exec reads that entry back (`compile_seccomp`
with `entry`) instead of hashing the whole profile again to find it: the
state's config, which the exec's process confines itself with, is the one
that was compiled at create."""

import os

from berth.paths import RuntimePaths

# the state's key for the name of the filter's cache entry
STATE_KEY = "seccomp_entry"


# cache entries this process has read, by path, with the file's identity
# then: the same entry, unchanged, is the same filter (an
# engine's spare exec helper reads the entry while it warms up, then again
# for the request); a file replaced since (a torn entry repaired) is read
# again
_READ: dict = {}


def compile_seccomp(paths: RuntimePaths, cfg: dict, entry: str | None = None):
    """linux.seccomp compiled in the runtime process, before any fork (a bad
    profile fails here, with nothing to undo), through a cache under the
    runtime's root (0700): libseccomp takes ~20 ms for Docker's profile.
    None without linux.seccomp. `entry`: the cache entry `create` recorded
    for this very config (`recorded_entry`), read first; absent or torn, the
    filter is found (or compiled) as without it. Returned prepared
    (Filter.prepare) for the process the caller forks to load it."""
    sc = (cfg.get("linux") or {}).get("seccomp")
    if not sc:
        return None
    from berth.linux import seccomp

    flt = None
    if entry and "/" not in entry and entry.endswith(".bpf") and not entry.startswith("."):
        path = f"{seccomp_cache_dir(paths)}/{entry}"
        try:
            st = os.stat(path)
            seen = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            seen = None
        read = _READ.get(path)
        if read is not None and read[0] == seen:
            flt = read[1]
        else:
            flt = seccomp.read_cached(path)
            if flt is not None and seen is not None:
                _READ[path] = (seen, flt)
    if flt is None:
        os.makedirs(paths.root, mode=0o700, exist_ok=True)
        flt = seccomp.compile(sc, cache_dir=seccomp_cache_dir(paths))
    flt.prepare()  # here, before the fork (Filter.prepare)
    return flt


def recorded_entry(flt) -> str | None:
    """What `create` records in the state for filter `flt` (the name of its
    cache entry), or None (no filter, or it could not be cached)."""
    path = getattr(flt, "cache_path", None) if flt is not None else None
    return os.path.basename(path) if path else None


def seccomp_cache_dir(paths: RuntimePaths) -> str:
    # "@" cannot start a container id: the name never collides with one
    return f"{paths.root}/@seccomp-cache"
