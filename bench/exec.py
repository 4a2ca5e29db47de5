"""`berth-runtime exec` of /bin/true against `runc exec`, and the cost of the
default seccomp profile inside a container.

exec: one busybox container per runtime (the same config: berth's default
spec, `sleep` as its process, optionally Docker's default confinement with
--confined), then `exec <id> /bin/true` timed from here, the two runtimes
alternating, medians over --trials.

seccomp (--seccomp-loop, or --seccomp-loop-only): bench/seccomp.py's C loop
(rounds of getpid, open+close, personality), built static, run as the
process of containers with Docker's confinement that differ only in
linux.seccomp: none, an allow-all profile (the floor any filter costs) and
the default profile, under berth-runtime and (none, default) under runc. All
run at once on one CPU and take turns round by round, so each speed (the
same runtime's container without seccomp / with it) is the median of ratios
of rounds run milliseconds apart.

    sudo flock -o /run/berth-integration-tests.lock .venv/bin/python bench/exec.py \
        [--trials 41] [--confined] [--seccomp-loop | --seccomp-loop-only [--rounds 200] [--cpu 1]]
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


def bench_seccomp_loop(base: str, rounds: int, n: int, cpu: int) -> None:
    """bench/seccomp.py's C loop as the process of containers that differ only
    in linux.seccomp, all pinned to one CPU and taking turns round by round
    (a token passed around a ring of pipes given to each container with
    --preserve-fds), so every ratio compares rounds run milliseconds apart."""
    sys.path.insert(0, os.path.join(REPO, "bench"))
    import seccomp as sbench  # bench/seccomp.py
    from berth.runtime.confinement import DEFAULT_CAPABILITIES, default_seccomp_profile

    exe = sbench.build(base, static=True)
    profiles = {
        "no seccomp": None,
        # libseccomp's arch check + ret ALLOW: the floor any filter costs
        "allow-all profile": {"defaultAction": "SCMP_ACT_ALLOW"},
        "default profile": default_seccomp_profile(list(DEFAULT_CAPABILITIES)),
    }
    runtimes = {"berth": [BERTH_RUNTIME, "--root", os.path.join(base, "berth-root")]}
    if shutil.which("runc"):
        runtimes["runc"] = [shutil.which("runc"), "--root", os.path.join(base, "runc-root")]
    members = {}  # label -> (runtime argv, bundle)
    for rt_name, rt in runtimes.items():
        for label, prof in profiles.items():
            if rt_name == "runc" and label == "allow-all profile":
                continue
            bundle = make_bundle(base, f"loop-{rt_name}-{label.split()[0]}",
                                 ["/loop", str(rounds), str(n), "3", "4"], True)
            with open(os.path.join(bundle, "config.json")) as f:
                cfg = json.load(f)
            if prof is None:
                cfg["linux"].pop("seccomp")
            else:
                cfg["linux"]["seccomp"] = prof
            cfg["linux"].setdefault("resources", {})["cpu"] = {"cpus": str(cpu)}
            with open(os.path.join(bundle, "config.json"), "w") as f:
                json.dump(cfg, f)
            shutil.copy(exe, os.path.join(bundle, "rootfs", "loop"))
            members[f"{rt_name}: {label}"] = (rt, bundle)

    labels = list(members)
    pipes = [os.pipe() for _ in labels]
    kids = {}
    for i, label in enumerate(labels):
        rt, bundle = members[label]
        out_path = os.path.join(base, f"out{i}")
        rin, wout = pipes[i][0], pipes[(i + 1) % len(labels)][1]
        pid = os.fork()
        if pid == 0:
            try:
                # the ring's ends as fds 3 and 4, the only ones passed on
                hi_in, hi_out = os.dup(rin), os.dup(wout)
                os.dup2(hi_in, 3)
                os.dup2(hi_out, 4)
                out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                os.dup2(out, 1)
                os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
                os.execv(rt[0], [*rt, "run", "--preserve-fds", "2", "--bundle", bundle,
                                 f"loop{i}-{os.getpid()}"])
            finally:
                os._exit(127)
        kids[label] = (pid, out_path)
    # the ring starts once every container waits for its token; if one
    # fails, the others see end-of-file as the ring closes behind it
    os.write(pipes[0][1], b"x")
    for r, w in pipes:
        os.close(r)
        os.close(w)
    raw = {}
    failed = []
    for label, (pid, out_path) in kids.items():
        _, status = os.waitpid(pid, 0)
        with open(out_path) as f:
            raw[label] = sbench.parse_rounds(f.read())
        if status != 0 or len(raw[label]) != rounds:
            failed.append(f"{label} (status {status:#x})")
    if failed:
        raise SystemExit(f"seccomp loop failed in: {', '.join(failed)}")
    bases = {label: f"{label.split(':')[0]}: no seccomp" for label in labels}
    print(f"seccomp in a container: {rounds} rounds per container taking turns, n={n}, cpu {cpu}; "
          "speed = the same container without linux.seccomp / with it (median of same-round ratios; "
          "(min): fastest rounds)")
    sbench.table({label: raw[label] for label in members}, bases)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=41)
    ap.add_argument("--confined", action="store_true", help="Docker's default confinement on both containers")
    ap.add_argument("--seccomp-loop", action="store_true", help="also the seccomp cost inside a container")
    ap.add_argument("--seccomp-loop-only", action="store_true", help="only the seccomp cost inside a container")
    ap.add_argument("--rounds", type=int, default=200, help="rounds of the seccomp loop")
    ap.add_argument("--n", type=int, default=10_000, help="getpid calls per round of the seccomp loop")
    ap.add_argument("--cpu", type=int, default=0, help="the CPU the seccomp loop runs on")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/exec.py needs root")
    if not shutil.which("runc"):
        raise SystemExit("runc is not installed")
    base = tempfile.mkdtemp(prefix="berth-bench-exec-")
    try:
        if not args.seccomp_loop_only:
            bench_exec(base, args.trials, args.confined)
        if args.seccomp_loop or args.seccomp_loop_only:
            bench_seccomp_loop(base, args.rounds, args.n, args.cpu)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
