"""Cost of the default seccomp profile on a syscall-heavy loop.

A small C program (compiled here with gcc) runs rounds of N raw getpid()
calls, N/4 open+close pairs of /dev/null and N personality(0xffffffff)
queries, and prints each round's ns per call. One child per variant, all
pinned to one CPU, each after loading its filter; the children take turns
round by round (a token passed around a ring of pipes), so round r of every
variant runs within a few milliseconds of the others and sees the same
background load. Speed = the median over rounds of (no-filter time / variant
time) for the same round; the "min" columns compare the fastest rounds.

Variants:
  no filter                  seccomp off
  1-instruction allow        `ret ALLOW`: the floor any filter costs, since
                             a task with a filter takes the kernel's
                             slower syscall entry (syscall_trace_enter ->
                             __secure_computing) whatever the filter says
  berth default              the default profile as berth compiles it
                             (libseccomp binary tree + berth's ENOSYS stub)
  docker/runc layout         the same profile in libseccomp's default linear
                             layout, as runc compiles Docker's profile
  cache defeated             berth default behind one `ld [instruction_pointer]`:
                             the same verdicts, but the kernel's action
                             cache can prove nothing, so every syscall runs
                             the BPF program (what a regression would cost)

Since Linux 5.11 the kernel caches "allowed whatever the arguments" per
syscall number when it can prove it from the number and architecture alone
(kernel/seccomp.c seccomp_is_const_allow; `seccomp.Filter.kernel_cached`
ports it), so getpid and open+close skip the program and cost what the
1-instruction filter costs; personality's verdict depends on its argument,
so it runs the program every time and shows the layout's cost.

    sudo flock -o /run/berth-integration-tests.lock \\
        .venv/bin/python bench/seccomp.py [--rounds 200] [--n 10000] [--cpu 1]

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
#include <signal.h>
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

/* loop ROUNDS N [IN OUT]: ROUNDS rounds, each waiting for a byte on fd IN
   and passing it on to fd OUT when done; one line of results per round,
   printed at the end */
int main(int argc, char **argv) {
    int rounds = atoi(argv[1]);
    long n = atol(argv[2]);
    int in = argc > 4 ? atoi(argv[3]) : -1, out = argc > 4 ? atoi(argv[4]) : -1;
    double *res = calloc(3 * rounds, sizeof(double));
    char token = 0;
    signal(SIGPIPE, SIG_IGN);
    for (int r = 0; r < rounds; r++) {
        if (in >= 0 && read(in, &token, 1) != 1) { perror("read token"); return 1; }
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
        /* personality(0xffffffff) only queries; the profile checks its
           argument, so the kernel cannot cache the verdict and runs the BPF
           program */
        for (long i = 0; i < n; i++)
            syscall(SYS_personality, 0xffffffffUL);
        double t3 = now();
        res[3 * r] = (t1 - t0) / n;
        res[3 * r + 1] = (t2 - t1) / (n / 4);
        res[3 * r + 2] = (t3 - t2) / n;
        /* after the last round the next member may be gone already */
        if (out >= 0 && write(out, &token, 1) != 1 && r < rounds - 1) { perror("write token"); return 1; }
    }
    for (int r = 0; r < rounds; r++)
        printf("%.2f %.2f %.2f\n", res[3 * r], res[3 * r + 1], res[3 * r + 2]);
    return 0;
}
"""

LOOPS = ("getpid", "open+close", "personality")


def build(workdir: str, static: bool = False) -> str:
    src = os.path.join(workdir, "loop.c")
    exe = os.path.join(workdir, "loop")
    with open(src, "w") as f:
        f.write(C_SOURCE)
    subprocess.run(["gcc", "-O2", *(["-static"] if static else []), "-o", exe, src], check=True)
    return exe


def parse_rounds(out: str) -> list[list[float]]:
    return [[float(x) for x in line.split()] for line in out.splitlines() if line.strip()]


def ring_pipes(k: int) -> list[tuple[int, int]]:
    """(in, out) fds for k ring members: member i reads pipe i and writes
    pipe i+1; the caller starts the ring by writing a byte to pipe 0."""
    pipes = [os.pipe() for _ in range(k)]
    return [(pipes[i][0], pipes[(i + 1) % k][1]) for i in range(k)], pipes  # type: ignore[return-value]


def run_ring(exe: str, variants: dict, rounds: int, n: int, cpu: int) -> dict[str, list[list[float]]]:
    """Each variant's per-round results, the variants taking turns."""
    names = list(variants)
    random.Random(4).shuffle(names)  # ring order; adjacent rounds anyway
    ends, pipes = ring_pipes(len(names))
    kids = {}
    for name, (rin, wout) in zip(names, ends, strict=True):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.sched_setaffinity(0, {cpu})
                os.dup2(w, 1)
                os.set_inheritable(rin, True)
                os.set_inheritable(wout, True)
                flt = variants[name]
                if flt is not None:
                    flt.load()
                os.execv(exe, [exe, str(rounds), str(n), str(rin), str(wout)])
            finally:
                os._exit(127)
        os.close(w)
        kids[name] = (pid, r)
    os.write(pipes[0][1], b"x")
    out = {}
    for name, (pid, r) in kids.items():
        with os.fdopen(r) as f:
            out[name] = parse_rounds(f.read())
        _, status = os.waitpid(pid, 0)
        if status != 0:
            raise SystemExit(f"benchmark child {name!r} failed with status {status:#x}")
    for a, b in pipes:
        os.close(a)
        os.close(b)
    return out


def table(
    raw: dict[str, list[list[float]]],
    base: "str | dict[str, str]",
    info: dict[str, str] | None = None,
) -> None:
    """ns per call and speed against `base` (or, per row, against
    ``base[row]``), side by side for every loop."""
    info = info or {}
    bases = base if isinstance(base, dict) else dict.fromkeys(raw, base)
    width = max(len(n) for n in raw) + 2
    head = f"{'':{width}}" + "".join(f"{loop + ' ns':>15}{'min':>8}{'speed':>7}{'(min)':>7}" for loop in LOOPS)
    print(head + ("   kernel-cached" if info else ""))
    for name, rows in raw.items():
        ref = raw[bases[name]]
        line = f"{name:{width}}"
        for i in range(len(LOOPS)):
            med = statistics.median(r[i] for r in rows)
            low = min(r[i] for r in rows)
            speed = statistics.median(b[i] / r[i] for b, r in zip(ref, rows, strict=True))
            speed_min = min(b[i] for b in ref) / low
            line += f"{med:15.1f}{low:8.1f}{speed:7.3f}{speed_min:7.3f}"
        print(line + (f"   {info[name]}" if name in info else ""))
    print("per-round speed, interquartile range (the noise):")
    for name, rows in raw.items():
        ref = raw[bases[name]]
        line = f"{name:{width}}"
        for i in range(len(LOOPS)):
            q1, _, q3 = statistics.quantiles([b[i] / r[i] for b, r in zip(ref, rows, strict=True)], n=4)
            line += f"{f'{q1:.3f}-{q3:.3f}':>37}"
        print(line)


def ret_allow() -> seccomp.Filter:
    """The smallest filter there is: one `ret SECCOMP_RET_ALLOW`."""
    ins = (0x06).to_bytes(2, sys.byteorder) + b"\0\0" + seccomp.SCMP_ACT_ALLOW.to_bytes(4, sys.byteorder)
    nr = seccomp.resolve_syscall("seccomp")
    assert nr is not None
    return seccomp.Filter(ins, 0, False, nr, [])


def cache_defeated(flt: seccomp.Filter) -> seccomp.Filter:
    """`flt` behind a load of the instruction pointer: the same verdicts (the
    program reloads what it tests), no action cache."""
    ld_ip = (0x20).to_bytes(2, sys.byteorder) + b"\0\0" + (8).to_bytes(4, sys.byteorder)
    return seccomp.Filter(ld_ip + flt.bpf, flt.flags, flt.has_notify, flt.nr_seccomp, [])


def cached_summary(flt: seccomp.Filter | None) -> str:
    if flt is None:
        return "-"
    nrs = range(512)
    cached = flt.kernel_cached(nrs)
    getpid = seccomp.resolve_syscall("getpid")
    return f"{len(cached)} nrs of 0-511, getpid {'yes' if getpid in cached else 'NO'}; {flt.instructions} insns"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--n", type=int, default=10_000, help="getpid calls per round")
    ap.add_argument("--cpu", type=int, default=1)
    args = ap.parse_args()

    profile = confinement.default_seccomp_profile(confinement.DEFAULT_CAPABILITIES)
    t0 = time.perf_counter()
    tree = seccomp.compile(profile)
    t1 = time.perf_counter()
    seccomp.compile(profile)  # again, now that libseccomp is open: the steady cost
    t2 = time.perf_counter()
    linear = seccomp.compile(profile, optimize=1, hot=())
    variants: dict[str, seccomp.Filter | None] = {
        "no filter": None,
        "1-instruction allow": ret_allow(),
        "berth default": tree,
        "docker/runc layout": linear,
        "cache defeated": cache_defeated(tree),
    }
    # the load itself, timed in children (a filter cannot be unloaded); each
    # child loads a trivial filter first so fork's copy-on-write faults and
    # ctypes' first-call costs are not counted
    allow_all = variants["1-instruction allow"]
    assert allow_all is not None
    load_times: dict[str, list[float]] = {"tree": [], "linear": []}
    for _ in range(15):
        for name, flt in (("tree", tree), ("linear", linear)):
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

    with tempfile.TemporaryDirectory() as d:
        exe = build(d)
        raw = run_ring(exe, variants, args.rounds, args.n, args.cpu)
    raw = {name: raw[name] for name in variants}

    print(
        f"default profile: {tree.instructions} BPF instructions; compile {1e3 * (t1 - t0):.1f} ms "
        f"(first, opening libseccomp), {1e3 * (t2 - t1):.1f} ms (again), "
        f"{1e3 * (t4 - t3):.2f} ms (from cache_dir)"
    )
    print(
        f"load: {1e6 * statistics.median(load_times['tree']):.0f} us (tree), "
        f"{1e6 * statistics.median(load_times['linear']):.0f} us (linear)"
    )
    print(f"{args.rounds} rounds per variant taking turns, n={args.n}, pinned to cpu {args.cpu}; "
          "ns per call: median and min over rounds; speed: vs no filter, median of same-round ratios, "
          "and (min) ratio of the fastest rounds")
    table(raw, "no filter", {name: cached_summary(flt) for name, flt in variants.items()})
    base = raw["no filter"]
    floor = [statistics.median(r[0] - b[0] for b, r in zip(base, raw[v], strict=True))
             for v in ("1-instruction allow", "berth default")]
    print(f"getpid: any filter adds {floor[0]:.1f} ns per call (1-instruction allow), "
          f"berth default {floor[1]:.1f} ns (same-round medians)")


if __name__ == "__main__":
    if os.geteuid() != 0:
        sys.exit("bench/seccomp.py: run as root (children load filters without no_new_privs)")
    main()
