"""`berth-runtime exec` of /bin/true against `runc exec`, and the cost of the
default seccomp profile inside a container.

exec: one busybox container per runtime (the same config: berth's default
spec, `sleep` as its process, optionally Docker's default confinement with
--confined), then `exec <id> /bin/true` timed from here, the two runtimes
alternating, medians over --trials.

seccomp (--seccomp-loop): bench/seccomp.py's C loop (getpid, open+close,
personality), built static, run as the process of a berth container with
Docker's default profile and of the same container without it; speed is
the median of per-trial ratios (no filter / filter).

    sudo .venv/bin/python bench/exec.py [--trials 41] [--confined] [--seccomp-loop]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERTH_RUNTIME = os.path.join(REPO, ".venv", "bin", "berth-runtime")


def make_bundle(base: str, name: str, args: list[str], confined: bool) -> str:
    from berth.oci.runtime import default_spec
    from berth.runtime.confinement import (
        DEFAULT_CAPABILITIES,
        DEFAULT_READONLY_PATHS,
        default_seccomp_profile,
        masked_paths,
    )

    bundle = os.path.join(base, name)
    os.mkdir(bundle)
    src = os.path.join(REPO, ".cache", "busybox-rootfs")
    if not os.path.isfile(os.path.join(src, "bin", "busybox")):
        from berth.image.busybox import make_busybox_rootfs

        make_busybox_rootfs(src)
    subprocess.run(["cp", "-a", src, os.path.join(bundle, "rootfs")], check=True)
    cfg = default_spec()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = args
    cfg["root"]["readonly"] = False
    cfg["linux"]["cgroupsPath"] = f"/berthbench-{name}-{os.getpid()}"
    if confined:
        caps = list(DEFAULT_CAPABILITIES)
        cfg["process"]["capabilities"] = {"bounding": caps, "effective": caps, "permitted": caps}
        cfg["linux"]["maskedPaths"] = masked_paths()
        cfg["linux"]["readonlyPaths"] = list(DEFAULT_READONLY_PATHS)
        cfg["linux"]["seccomp"] = default_seccomp_profile(caps)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    return bundle


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def bench_exec(base: str, trials: int, confined: bool) -> None:
    runtimes = {
        "berth": [BERTH_RUNTIME, "--root", os.path.join(base, "berth-root")],
        "runc": ["runc", "--root", os.path.join(base, "runc-root")],
    }
    started = []
    try:
        for name, rt in runtimes.items():
            # one bundle (and cgroup) each: the same config otherwise
            bundle = make_bundle(base, f"exec-{name}", ["sleep", "1000000"], confined)
            subprocess.run([*rt, "run", "-d", "--bundle", bundle, f"bench-{name}"], check=True,
                           stdout=subprocess.DEVNULL)
            started.append(name)
        times: dict[str, list[float]] = {name: [] for name in runtimes}
        for i in range(trials + 3):
            order = list(runtimes) if i % 2 == 0 else list(reversed(runtimes))
            for name in order:
                t = timed([*runtimes[name], "exec", f"bench-{name}", "/bin/true"])
                if i >= 3:  # warm-up: page cache, seccomp cache
                    times[name].append(t)
        b = statistics.median(times["berth"]) * 1000
        r = statistics.median(times["runc"]) * 1000
        kind = "confined (Docker defaults)" if confined else "runc spec defaults"
        print(f"container: {kind}; {trials} trials each, alternating")
        print(f"exec: berth {b:.1f} ms, runc {r:.1f} ms, ratio {b / r:.2f}")
    finally:
        for name in started:
            subprocess.run([*runtimes[name], "delete", "--force", f"bench-{name}"], check=False)


def bench_seccomp_loop(base: str, trials: int, n: int, cpu: int) -> None:
    sys.path.insert(0, os.path.join(REPO, "bench"))
    from seccomp import C_SOURCE, LOOPS  # bench/seccomp.py

    src = os.path.join(base, "loop.c")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    ratios: dict[str, list[float]] = {k: [] for k in LOOPS}
    bundles = {}
    for confined in (False, True):
        name = "confined" if confined else "plain"
        bundles[confined] = make_bundle(base, name, ["/loop", str(n)], confined)
        # both on one CPU, as bench/seccomp.py pins its children
        with open(os.path.join(bundles[confined], "config.json")) as f:
            cfg = json.load(f)
        cfg["linux"].setdefault("resources", {})["cpu"] = {"cpus": str(cpu)}
        with open(os.path.join(bundles[confined], "config.json"), "w") as f:
            json.dump(cfg, f)
        subprocess.run(["gcc", "-O2", "-static", "-o", os.path.join(bundles[confined], "rootfs", "loop"), src],
                       check=True)
    rt = [BERTH_RUNTIME, "--root", os.path.join(base, "berth-root")]
    for i in range(trials):
        got = {}
        for confined in ((False, True) if i % 2 == 0 else (True, False)):
            out = subprocess.run([*rt, "run", "--bundle", bundles[confined], f"loop{i}{int(confined)}"],
                                 check=True, capture_output=True, text=True).stdout
            got[confined] = [float(x) for x in out.split()]
        for k, plain, filt in zip(LOOPS, got[False], got[True], strict=True):
            ratios[k].append(plain / filt)
    print(f"seccomp in a container (default profile vs none, {trials} trials, speed = no-filter time / filter time):")
    for k in LOOPS:
        print(f"  {k:<12} speed {statistics.median(ratios[k]):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=41)
    ap.add_argument("--confined", action="store_true", help="Docker's default confinement on both containers")
    ap.add_argument("--seccomp-loop", action="store_true", help="also the seccomp cost inside a container")
    ap.add_argument("--n", type=int, default=400_000)
    ap.add_argument("--cpu", type=int, default=0, help="the CPU the seccomp loop runs on")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/exec.py needs root")
    if not shutil.which("runc"):
        raise SystemExit("runc is not installed")
    base = tempfile.mkdtemp(prefix="berth-bench-exec-")
    try:
        bench_exec(base, args.trials, args.confined)
        if args.seccomp_loop:
            bench_seccomp_loop(base, min(args.trials, 21), args.n, args.cpu)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
