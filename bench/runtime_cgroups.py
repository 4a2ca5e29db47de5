"""A container's cgroup through the runtime, berth-runtime against runc:
`run` of /bin/true in a busybox bundle whose config sets memory, cpu and
pids limits (so each run creates, configures and deletes the cgroup), the
two runtimes alternating on the same bundle, cold processes each time.

Lines printed (medians):

- run with the limits: the whole `run`, what a caller waits for;
- cgroup limits' own cost: the same run minus a run of the same bundle
  without the limits (the cgroup itself is always made), measured in the
  same alternation;
- the cgroup commands on a running container (`sleep` in the same bundle
  with the limits), alternating too: `update --memory`, `pause` + `resume`,
  `events --stats`, `ps --format json`.

    sudo .venv/bin/python bench/runtime_cgroups.py [--runs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BERTH_RUNTIME = os.path.join(REPO, ".venv", "bin", "berth-runtime")
sys.path.insert(0, os.path.join(REPO, "src"))

RESOURCES = {
    "memory": {"limit": 256 << 20, "swap": 256 << 20},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    "pids": {"limit": 100},
}


def time_command(argv: list[str]) -> float:
    """Wall time in ms of one run of argv (posix_spawn + waitpid, stdio to
    /dev/null); a failure stops the benchmark."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, devnull, fd) for fd in (0, 1, 2)]
        path = shutil.which(argv[0]) or argv[0]
        t0 = time.perf_counter()
        pid = os.posix_spawn(path, argv, os.environ, file_actions=actions)
        _, status = os.waitpid(pid, 0)
        t1 = time.perf_counter()
    finally:
        os.close(devnull)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit code {code}")
    return (t1 - t0) * 1000


def make_bundles(work: str) -> dict[str, str]:
    """Two bundles over one read-only busybox rootfs: with and without the limits."""
    from berth.image.busybox import make_busybox_rootfs
    from berth.oci.runtime import default_spec

    rootfs = os.path.join(REPO, ".cache", "busybox-rootfs")
    if not os.path.isfile(os.path.join(rootfs, "bin", "busybox")):
        rootfs = os.path.join(work, "rootfs")
        make_busybox_rootfs(rootfs)
    out = {}
    for name, res in (("limits", RESOURCES), ("plain", None)):
        path = os.path.join(work, name)
        os.mkdir(path)
        cfg = default_spec()
        cfg["root"] = {"path": rootfs, "readonly": True}
        cfg["process"]["terminal"] = False
        cfg["process"]["args"] = ["/bin/true"]
        cfg["linux"]["cgroupsPath"] = f"/berth-bench-cg-{os.getpid()}-{name}"
        if res is not None:
            cfg["linux"]["resources"] = {**(cfg["linux"].get("resources") or {}), **res}
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f)
        out[name] = path
    return out


def line(name: str, berth: float, runc: float) -> str:
    # a difference of medians can come out at or below zero (noise): no ratio then
    ratio = f"{berth / runc:.2f}" if runc > 0 and berth > 0 else "n/a"
    return f"{name}: berth {berth:.1f} ms, runc {runc:.1f} ms, ratio {ratio}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/runtime_cgroups.py needs root")
    if not shutil.which("runc"):
        sys.exit("runc is not installed (apt-get install runc)")
    work = tempfile.mkdtemp(prefix="berth-bench-cg-")
    try:
        bundles = make_bundles(work)
        runtimes = {"berth": [BERTH_RUNTIME], "runc": ["runc"]}
        times: dict[tuple[str, str], list[float]] = {}
        for i in range(args.warmup + args.runs):
            for kind, bundle in bundles.items():
                for rt, argv0 in runtimes.items():
                    argv = [*argv0, "--root", os.path.join(work, f"{rt}-state"),
                            "run", "--bundle", bundle, f"bench{i}"]
                    t = time_command(argv)
                    if i >= args.warmup:
                        times.setdefault((rt, kind), []).append(t)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"(medians of {args.runs} runs each; resources: memory limit+swap, "
              f"cpu shares+quota+period, pids limit)", flush=True)
        print(f"(without limits: berth {med['berth', 'plain']:.1f} ms, "
              f"runc {med['runc', 'plain']:.1f} ms)", flush=True)
        print(line("runtime run /bin/true with memory+cpu+pids limits",
                   med["berth", "limits"], med["runc", "limits"]), flush=True)
        print(line("runtime cgroup limits' own cost (run with limits - without)",
                   med["berth", "limits"] - med["berth", "plain"],
                   med["runc", "limits"] - med["runc", "plain"]), flush=True)
        commands(work, bundles["limits"], runtimes, args.runs, args.warmup)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def commands(work: str, bundle: str, runtimes: dict[str, list[str]], runs: int, warmup: int) -> None:
    """The cgroup commands, timed on one running container per runtime."""
    import subprocess

    cfg_path = os.path.join(bundle, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"]["args"] = ["sleep", "1000"]
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    ops: dict[str, list[list[str]]] = {
        "update --memory": [["update", "--memory", "300m", "--memory-swap", "300m"],
                            ["update", "--memory", "256m", "--memory-swap", "256m"]],
        "pause + resume": [["pause"], ["resume"]],
        "events --stats": [["events", "--stats"]],
        "ps --format json": [["ps", "--format", "json"]],
    }
    started = []
    try:
        for rt, argv0 in runtimes.items():
            base = [*argv0, "--root", os.path.join(work, f"{rt}-state")]
            subprocess.run([*base, "run", "-d", "--bundle", bundle, "cmds"], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            started.append(base)
        times: dict[tuple[str, str], list[float]] = {}
        for i in range(warmup + runs):
            for op, steps in ops.items():
                for rt, argv0 in runtimes.items():
                    base = [*argv0, "--root", os.path.join(work, f"{rt}-state")]
                    t = sum(time_command([*base, *step, "cmds"]) for step in steps)
                    if i >= warmup:
                        times.setdefault((rt, op), []).append(t)
        for op in ops:
            print(line(f"runtime {op}", statistics.median(times["berth", op]),
                       statistics.median(times["runc", op])), flush=True)
    finally:
        for base in started:
            subprocess.run([*base, "delete", "--force", "cmds"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
