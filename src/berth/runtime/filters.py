"""The container's seccomp filter as the runtime compiles it, through the
cache under its root; apart from container.py so that an exec's child,
which compiles the filter while the parent moves it into the cgroup,
imports only this."""

import os

from berth.paths import RuntimePaths


def compile_seccomp(paths: RuntimePaths, cfg: dict):
    """linux.seccomp compiled in the runtime process, before any fork (a bad
    profile fails here, with nothing to undo), through a cache under the
    runtime's root (0700): libseccomp takes ~20 ms for Docker's profile.
    None without linux.seccomp."""
    sc = (cfg.get("linux") or {}).get("seccomp")
    if not sc:
        return None
    from berth.linux import seccomp

    os.makedirs(paths.root, mode=0o700, exist_ok=True)
    return seccomp.compile(sc, cache_dir=seccomp_cache_dir(paths))


def seccomp_cache_dir(paths: RuntimePaths) -> str:
    # "@" cannot start a container id: the name never collides with one
    return f"{paths.root}/@seccomp-cache"
