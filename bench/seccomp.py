"""Cost of the default seccomp profile on a syscall-heavy loop.

A small C program (compiled here with gcc) times N raw getpid() calls, N/4
open+close pairs of /dev/null and N personality(0xffffffff) queries. Each
trial forks children pinned to one CPU that exec that program: one with no
filter, the others after loading a filter: berth's default profile laid out
as a binary tree (what berth loads), the same in libseccomp's default linear layout (what runc does with Docker's
profile), linear with hot syscalls first, and an allow-everything filter, the floor any filter costs. Trials
are interleaved in random order; the figures are medians, and each speed is
the median of per-trial ratios against the unfiltered child.

Since Linux 5.11 the kernel caches "always allowed whatever the arguments"
per syscall number, so getpid and open+close skip the BPF program and cost
what the allow-all filter costs; personality's verdict depends on its
argument, so it runs the program every time and shows the layout's cost.

    sudo .venv/bin/python bench/seccomp.py [--trials 31] [--n 400000] [--cpu 0]

Root (or CAP_SYS_ADMIN) is needed because the children load filters without
no_new_privs.
"""

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from berth.linux import seccomp
from berth.runtime import confinement

C_SOURCE = r"""
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv) {
    long n = atol(argv[1]);
    double t0 = now();
    for (long i = 0; i < n; i++)
        syscall(SYS_getpid);
    double t1 = now();
    for (long i = 0; i < n / 4; i++) {
        int fd = syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) { perror("openat"); return 1; }
        syscall(SYS_close, fd);
    }
    double t2 = now();
    /* personality(0xffffffff) only queries; the profile checks its argument,
       so the kernel cannot cache the verdict and runs the BPF program */
    for (long i = 0; i < n; i++)
        syscall(SYS_personality, 0xffffffffUL);
    double t3 = now();
    printf("%.2f %.2f %.2f\n", (t1 - t0) / n, (t2 - t1) / (n / 4), (t3 - t2) / n);
    return 0;
}
"""


def build(workdir: str) -> str:
    src = os.path.join(workdir, "loop.c")
    exe = os.path.join(workdir, "loop")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    subprocess.run(["gcc", "-O2", "-o", exe, src], check=True)
    return exe


LOOPS = ("getpid", "open+close", "personality")


def run_child(exe: str, n: int, flt: seccomp.Filter | None, cpu: int) -> list[float]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.sched_setaffinity(0, {cpu})
            os.dup2(w, 1)
            if flt is not None:
                flt.load()
            os.execv(exe, [exe, str(n)])
        finally:
            os._exit(127)
    os.close(w)
    with os.fdopen(r) as f:
        out = f.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise SystemExit(f"benchmark child failed with status {status:#x}")
    return [float(x) for x in out.split()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=31)
    ap.add_argument("--n", type=int, default=400_000)
    ap.add_argument("--cpu", type=int, default=0)
    args = ap.parse_args()

    profile = confinement.default_seccomp_profile(confinement.DEFAULT_CAPABILITIES)
    t0 = time.perf_counter()
    tree = seccomp.compile(profile)
    t1 = time.perf_counter()
    seccomp.compile(profile)  # again, now that libseccomp is open: the steady cost
    t2 = time.perf_counter()
    variants: dict[str, seccomp.Filter | None] = {
        "no filter": None,
        "berth default (tree)": tree,
        "linear (runc/docker layout)": seccomp.compile(profile, optimize=1, hot=()),
        "linear, hot syscalls first": seccomp.compile(profile, optimize=1),
        # the floor: any filter at all sends every syscall through the kernel's
        # slower entry path, whatever the filter says
        "allow-all filter (floor)": seccomp.compile({"defaultAction": "SCMP_ACT_ALLOW"}),
    }
    # the load itself, timed in children (a filter cannot be unloaded); each
    # child loads a trivial filter first so fork's copy-on-write faults and
    # ctypes' first-call costs are not counted
    allow_all = variants["allow-all filter (floor)"]
    assert allow_all is not None
    load_times: dict[str, list[float]] = {"tree": [], "linear": []}
    for _ in range(15):
        for name, flt in (("tree", tree), ("linear", variants["linear (runc/docker layout)"])):
            assert flt is not None
            rr, ww = os.pipe()
            pid = os.fork()
            if pid == 0:
                allow_all.load()
                t = time.perf_counter()
                flt.load()
                os.write(ww, str(time.perf_counter() - t).encode())
                os._exit(0)
            os.close(ww)
            load_times[name].append(float(os.read(rr, 100)))
            os.close(rr)
            os.waitpid(pid, 0)
    with tempfile.TemporaryDirectory() as cache:
        seccomp.compile(profile, cache_dir=cache)
        t3 = time.perf_counter()
        seccomp.compile(profile, cache_dir=cache)
        t4 = time.perf_counter()

    rng = random.Random(4)
    names = list(variants)
    with tempfile.TemporaryDirectory() as d:
        exe = build(d)
        raw: dict[str, list[list[float]]] = {k: [] for k in names}
        for _ in range(args.trials):
            rng.shuffle(names)
            for name in names:
                raw[name].append(run_child(exe, args.n, variants[name], args.cpu))

    print(
        f"default profile: {tree.instructions} BPF instructions; compile {1e3 * (t1 - t0):.1f} ms "
        f"(first, opening libseccomp), {1e3 * (t2 - t1):.1f} ms (again), "
        f"{1e3 * (t4 - t3):.2f} ms (from cache_dir)"
    )
    print(
        f"load: {1e6 * statistics.median(load_times['tree']):.0f} us (tree), "
        f"{1e6 * statistics.median(load_times['linear']):.0f} us (linear)"
    )
    print(f"{args.trials} trials interleaved, n={args.n}, pinned to cpu {args.cpu}")
    print("ns per call (median) and speed relative to no filter (median of per-trial ratios):")
    print(f"{'':30}" + "".join(f"{loop:>14} {'speed':>6}" for loop in LOOPS))
    base = raw["no filter"]
    spread: dict[str, list[str]] = {name: [] for name in variants}
    for name in variants:
        row = f"{name:30}"
        for i in range(len(LOOPS)):
            ns = statistics.median(t[i] for t in raw[name])
            ratios = [b[i] / t[i] for b, t in zip(base, raw[name], strict=True)]
            q1, q2, q3 = statistics.quantiles(ratios, n=4)
            spread[name].append(f"{q1:.2f}-{q3:.2f}")
            row += f"{ns:14.1f} {q2:6.3f}"
        print(row)
    print("interquartile range of the speeds (the noise):")
    for name in variants:
        print(f"{name:30}" + "".join(f"{r:>21}" for r in spread[name]))


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/seccomp.py: run as root (children load filters without no_new_privs)")
    main()
