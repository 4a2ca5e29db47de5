"""berth's engine alone, for working on its own speed and memory (the peers
are in bench/engine.py): optionally against another `berth` launcher (an
older checkout, say), measured in the same run, each with its own roots.

- `run --rm --network none busybox true` from a cold CLI (the monitor zygote
  warm, as it is between back-to-back runs);
- `exec` of `true` in a running container;
- N `run -d --network none busybox sleep` containers: total time, and the
  proportional set size (PSS) per container of every process the engine
  leaves behind (monitors and their zygote).

    sudo flock -o /run/berth-integration-tests.lock \\
        .venv/bin/python bench/engine_speed.py [--runs N] [--many N] [--other PATH]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, alternate, pct, processes, pss_kb

BERTH = os.path.join(REPO, ".venv", "bin", "berth")


def left_behind(marker: str) -> list[int]:
    """Live processes whose command line names `marker` (the engine's roots)."""
    return processes(lambda comm, cmd: marker in cmd)


class Engine:
    def __init__(self, name: str, launcher: str, work: str) -> None:
        self.name = name
        self.launcher = launcher
        self.base = os.path.join(work, name)
        self.env = {**os.environ, "BERTH_ROOT": f"{self.base}/root",
                    "BERTH_STATE": f"{self.base}/state"}

    def argv(self, *args: str) -> list[str]:
        # the roots as flags: alternate() runs every command with one environment
        return [self.launcher, "--root", self.env["BERTH_ROOT"], "--state",
                self.env["BERTH_STATE"], *args]

    def run(self, *args: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(self.argv(*args), env=self.env, capture_output=True, text=True,
                              **kw)

    def cleanup(self) -> None:
        ids = self.run("ps", "-aq", "--no-trunc").stdout.split()
        if ids:
            self.run("rm", "-f", *ids)
        deadline = time.monotonic() + 10
        while left_behind(self.base) and time.monotonic() < deadline:
            time.sleep(0.1)


def line(label: str, times: dict[str, list[float]]) -> None:
    parts = [f"{k} {statistics.median(v):.1f} ms (p25-p75 {pct(v, 25):.1f}-{pct(v, 75):.1f})"
             for k, v in times.items()]
    out = f"{label}: " + ", ".join(parts)
    if len(times) == 2:
        a, b = (statistics.median(v) for v in times.values())
        out += f", ratio {a / b:.2f}"
    print(out, flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--many", type=int, default=100)
    ap.add_argument("--other", default=None, help="another berth launcher to compare with")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("engine_speed: needs root", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="berth-bench-speed-")
    engines = [Engine("berth", BERTH, work)]
    if args.other:
        engines.append(Engine("other", args.other, work))
    try:
        for e in engines:
            e.run("image", "bootstrap", "busybox", check=True)
        line("run --rm --network none busybox true", alternate(
            {e.name: e.argv("run", "--rm", "--network", "none", "busybox", "true")
             for e in engines}, args.runs))
        for e in engines:
            e.run("run", "-d", "--network", "none", "--name", "bench-exec", "busybox",
                  "sleep", "100000", check=True)
        line("exec true", alternate({e.name: e.argv("exec", "bench-exec", "true")
                                     for e in engines}, args.runs))
        for e in engines:
            e.cleanup()
        for e in engines:
            t0 = time.perf_counter()
            for _ in range(args.many):
                e.run("run", "-d", "--network", "none", "busybox", "sleep", "100000",
                      check=True)
            total = (time.perf_counter() - t0) * 1000
            procs = left_behind(e.base)
            pss = sum(pss_kb(p) for p in procs)
            print(f"{args.many} run -d --network none sleep ({e.name}): {total:.0f} ms "
                  f"({total / args.many:.1f} ms each); {len(procs)} processes left behind, "
                  f"PSS {pss / args.many / 1024:.2f} MiB per container", flush=True)
            e.cleanup()
    finally:
        for e in engines:
            e.cleanup()
        subprocess.run(["umount", "-R", "-l", work], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
