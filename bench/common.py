"""Shared helpers for benchmarks: timing of whole commands, medians, the
busybox bundle, and the one output line format the runner collects:

    <name>: berth <x> <unit>, <peer> <y> <unit>, ratio <x/y>
"""

import os
import shutil
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(REPO, ".cache")
BERTH_RUNTIME = os.path.join(REPO, ".venv", "bin", "berth-runtime")
sys.path.insert(0, os.path.join(REPO, "src"))


def time_command(argv: list[str], cwd: str | None = None, env: dict | None = None) -> float:
    """Wall time of one run of argv in ms (posix_spawn + waitpid, stdio to /dev/null)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, devnull, 1),
                   (os.POSIX_SPAWN_DUP2, devnull, 2)]
        path = shutil.which(argv[0]) or argv[0]
        old = os.getcwd()
        if cwd:
            os.chdir(cwd)
        try:
            t0 = time.perf_counter()
            pid = os.posix_spawn(path, argv, env or os.environ, file_actions=actions)
            _, status = os.waitpid(pid, 0)
            t1 = time.perf_counter()
        finally:
            os.chdir(old)
    finally:
        os.close(devnull)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(argv)} failed with {os.waitstatus_to_exitcode(status)}")
    return (t1 - t0) * 1000


def alternate(commands: dict[str, list[str]], runs: int, warmup: int = 3, cwd: str | None = None,
              before=None) -> dict[str, list[float]]:
    """Run each command `runs` times, interleaved (a, b, a, b ...), after warmup runs."""
    out: dict[str, list[float]] = {k: [] for k in commands}
    for i in range(warmup + runs):
        for name, argv in commands.items():
            if before:
                before(name)
            t = time_command(argv, cwd=cwd)
            if i >= warmup:
                out[name].append(t)
    return out


def report(name: str, berth: list[float], peer_name: str, peer: list[float], unit: str = "ms") -> float:
    b, p = statistics.median(berth), statistics.median(peer)
    ratio = b / p
    print(f"{name}: berth {b:.1f} {unit}, {peer_name} {p:.1f} {unit}, ratio {ratio:.2f} "
          f"(medians of {len(berth)}; berth p25-p75 {pct(berth, 25):.1f}-{pct(berth, 75):.1f}, "
          f"{peer_name} {pct(peer, 25):.1f}-{pct(peer, 75):.1f})", flush=True)
    return ratio


def pct(values: list[float], q: int) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def busybox_bundle(name: str, args: list[str]) -> str:
    """A bundle under .cache/bench/<name> with the busybox rootfs and a
    config.json (berth's default spec, no terminal) running `args`."""
    import json

    from berth.image.busybox import make_busybox_rootfs
    from berth.oci.runtime import default_spec

    path = os.path.join(CACHE, "bench", name)
    rootfs = os.path.join(path, "rootfs")
    if not os.path.isfile(os.path.join(rootfs, "bin", "busybox")):
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        make_busybox_rootfs(rootfs)
    cfg = default_spec()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    cfg["linux"]["cgroupsPath"] = f"/berth-bench-{name}"
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    return path


def pss_kb(pid: int) -> int:
    """Proportional set size of a process in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes(match) -> list[int]:
    """Live processes for which match(comm, cmdline) holds."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{name}/comm") as f:
                comm = f.read().strip()
            with open(f"/proc/{name}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and match(comm, cmd):
            out.append(int(name))
    return out
