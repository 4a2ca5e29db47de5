"""Cost of a container's cgroup: open + create + apply(memory, cpu, pids) +
add a process + destroy, on this host's cgroup layout.

Three figures (medians):

- in-process: the calls alone, in a warm interpreter;
- cold: a fresh `python -I -S` that imports berth.cgroups and does the same,
  what `berth-runtime create` pays, minus the interpreter's own start
  (measured separately with `-c pass` and subtracted);
- with --runc (and runc installed): `runc run` of /bin/true in a busybox
  bundle with the same resources, minus the same run without them: runc's
  own cost of the cgroup resources (it always creates the cgroup, so this is
  a lower bound of its cgroup cost; the full comparison comes with
  berth-runtime).

    sudo .venv/bin/python bench/cgroups.py [--n 50] [--runc]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

from berth import jsonio
from berth.cgroups import detect_mode, open_manager

RESOURCES = {
    "memory": {"limit": 256 << 20, "swap": 256 << 20},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    "pids": {"limit": 100},
}

COLD = """
import sys, os, time
sys.path[:0] = {paths!r}
t0 = time.perf_counter()
from berth.cgroups import open_manager
m = open_manager("/berthbench-" + sys.argv[1], "x")
m.create()
m.apply({resources!r})
m.add_process(int(sys.argv[2]))
m.kill_all(9)
m.destroy()
print(time.perf_counter() - t0)
"""


PHASES = ("open", "create", "apply", "add", "kill+destroy")


def once(pid_source) -> dict[str, float]:
    """One cgroup's life, timed per phase (seconds)."""
    p = pid_source()
    t = [time.perf_counter()]
    m = open_manager("/berthbench-" + uuid.uuid4().hex[:8], "x")
    t.append(time.perf_counter())
    m.create()
    t.append(time.perf_counter())
    m.apply(RESOURCES)
    t.append(time.perf_counter())
    m.add_process(p.pid)
    t.append(time.perf_counter())
    m.kill_all(9)
    m.destroy()  # includes waiting for the killed process to leave
    t.append(time.perf_counter())
    p.wait()
    return {name: t[i + 1] - t[i] for i, name in enumerate(PHASES)}


def sleeper() -> subprocess.Popen:
    return subprocess.Popen(["sleep", "60"])


def src_paths() -> list[str]:
    import berth

    return [os.path.dirname(os.path.dirname(berth.__file__))]


def cold(n: int) -> tuple[float, float]:
    code = COLD.format(paths=src_paths(), resources=RESOURCES)
    inner, total, base = [], [], []
    for _ in range(n):
        p = sleeper()
        t0 = time.perf_counter()
        out = subprocess.run(
            [sys.executable, "-I", "-S", "-c", code, uuid.uuid4().hex[:8], str(p.pid)],
            capture_output=True,
            text=True,
            check=True,
        )
        total.append(time.perf_counter() - t0)
        inner.append(float(out.stdout))
        p.wait()
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-S", "-c", "pass"], check=True)
        base.append(time.perf_counter() - t0)
    return statistics.median(inner), statistics.median(total) - statistics.median(base)


def runc_delta(n: int) -> tuple[float, float] | None:
    if not shutil.which("runc"):
        return None
    from berth.image.busybox import make_busybox_rootfs

    work = tempfile.mkdtemp(prefix="berthbench-")
    try:
        rootfs = os.path.join(work, "rootfs")
        make_busybox_rootfs(rootfs)
        subprocess.run(["runc", "spec"], cwd=work, check=True)
        spec_path = os.path.join(work, "config.json")
        spec = jsonio.load_file(spec_path)
        spec["root"] = {"path": rootfs, "readonly": True}
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["/bin/true"]
        plain = dict(spec)
        with_res = jsonio.loads(jsonio.dumps(spec))
        with_res["linux"]["resources"] = {**with_res["linux"].get("resources", {}), **RESOURCES}
        times: dict[str, list[float]] = {"plain": [], "resources": []}
        for _ in range(n):
            for name, cfg in (("plain", plain), ("resources", with_res)):
                with open(spec_path, "w") as f:
                    f.write(jsonio.dumps(cfg))
                cid = "berthbench-" + uuid.uuid4().hex[:8]
                t0 = time.perf_counter()
                subprocess.run(
                    ["runc", "--root", os.path.join(work, "state"), "run", "-b", work, cid],
                    check=True,
                    capture_output=True,
                )
                times[name].append(time.perf_counter() - t0)
        return statistics.median(times["plain"]), statistics.median(times["resources"])
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--runc", action="store_true", help="also time runc run with/without them")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/cgroups.py needs root")
    mode = detect_mode()
    once(sleeper)  # warm up
    runs = [once(sleeper) for _ in range(args.n)]
    warm = statistics.median(sum(r.values()) for r in runs)
    inner, cold_total = cold(max(5, args.n // 2))
    print(f"host cgroup mode: {mode}; load average {os.getloadavg()[0]:.2f}")
    print("resources: memory (limit, swap), cpu (shares, quota, period), pids")
    print(f"berth in-process create+apply+add+kill+destroy: median {warm * 1e3:.2f} ms")
    print(
        "  per phase (medians): "
        + ", ".join(
            f"{name} {statistics.median(r[name] for r in runs) * 1e3:.2f} ms" for name in PHASES
        )
    )
    print(f"berth cold process (import + same calls):       median {inner * 1e3:.2f} ms")
    print(f"berth cold process, whole, minus bare python:   median {cold_total * 1e3:.2f} ms")
    if args.runc:
        r = runc_delta(max(5, args.n // 2))
        if r is None:
            print("runc not installed")
        else:
            plain, res = r
            print(
                f"runc run /bin/true: plain {plain * 1e3:.1f} ms, with the same resources "
                f"{res * 1e3:.1f} ms (delta {(res - plain) * 1e3:+.1f} ms)"
            )


if __name__ == "__main__":
    main()
