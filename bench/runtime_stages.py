"""Where a `berth-runtime run` of /bin/true spends its time: the `--debug`
log's stage lines (parent, child and init each log with a ns timestamp),
as medians over several runs, next to runc's whole run in the same loop.

    sudo .venv/bin/python bench/runtime_stages.py [--runs N]
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
from common import BERTH_RUNTIME, busybox_bundle


def _ts(stamp: str) -> float:
    # 2026-11-29T05:03:32.614144325Z -> seconds (the day is the same)
    hms, frac = stamp[11:-1].split(".")
    h, m, s = (int(x) for x in hms.split(":"))
    return h * 3600 + m * 60 + s + int(frac) / 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    import json

    bundle = busybox_bundle("true", ["/bin/true"])
    roots = tempfile.mkdtemp(prefix="berth-bench-", dir="/run")
    stages: dict[str, list[float]] = {}
    order: list[str] = []
    totals, runc = [], []
    try:
        for _ in range(args.runs):
            t0 = time.time()
            p = subprocess.run([BERTH_RUNTIME, "--root", f"{roots}/b", "--debug", "--log", "/dev/stderr",
                                "--log-format", "json", "run", "--bundle", bundle, "x"],
                               capture_output=True, text=True, check=True)
            t1 = time.time()
            day = t0 - t0 % 86400
            prev = t0
            for line in p.stderr.splitlines():
                d = json.loads(line)
                t = day + _ts(d["time"])
                name = d["msg"].split(": ", 1)[1]
                if name not in stages:
                    order.append(name)
                stages.setdefault(name, []).append((t - prev) * 1e3)
                prev = t
            stages.setdefault("(process exit)", []).append((t1 - prev) * 1e3)
            totals.append((t1 - t0) * 1e3)
            t0 = time.perf_counter()
            subprocess.run(["runc", "--root", f"{roots}/r", "run", "--bundle", bundle, "x"], check=True)
            runc.append((time.perf_counter() - t0) * 1e3)
    finally:
        shutil.rmtree(roots, ignore_errors=True)
    print(f"{'ms':>7}  stage (time since the previous line; the first includes interpreter start and imports)")
    for name in [*order, "(process exit)"]:
        print(f"{statistics.median(stages[name]):7.2f}  {name}")
    print(f"{statistics.median(totals):7.2f}  berth-runtime run, whole (median of {args.runs})")
    print(f"{statistics.median(runc):7.2f}  runc run, whole (same loop)")


if __name__ == "__main__":
    main()
