"""The engine end to end, against containerd (`ctr`, Debian's containerd
started here on a private socket, runc as its runtime) and, when installed,
docker (Debian's docker.io on a private socket):

- `berth run --rm busybox true` from a cold CLI vs `ctr run --rm` (and
  `docker run --rm`);
- 100 `sleep` containers started with `-d`: total time, and the proportional
  set size (PSS) per running container of every process each engine leaves
  behind (berth: its monitors and their zygote; containerd: one shim per
  container, plus containerd itself for reference).

    sudo .venv/bin/python bench/engine.py [--runs N] [--many N]
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, alternate, report

BERTH = os.path.join(REPO, ".venv", "bin", "berth")


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes(match) -> list[int]:
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


class Containerd:
    """containerd on a private root, state and socket."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.sock = f"{base}/containerd.sock"
        cfg = subprocess.run(["containerd", "config", "default"], capture_output=True,
                             text=True, check=True).stdout
        lines = []
        for line in cfg.splitlines():
            s = line.strip()
            if s.startswith("root = "):
                line = f'root = "{base}/root"'
            elif s.startswith("state = "):
                line = f'state = "{base}/state"'
            elif s.startswith("address = ") and "containerd.sock" in s:
                line = f'  address = "{self.sock}"'
            lines.append(line)
        text = "\n".join(lines)
        # no CRI, no ttrpc/metrics listeners on shared addresses
        text = text.replace('disabled_plugins = []',
                            'disabled_plugins = ["io.containerd.grpc.v1.cri"]')
        with open(f"{base}/config.toml", "w") as f:
            f.write(text)
        self.log = open(f"{base}/containerd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["containerd", "--config", f"{base}/config.toml"],
                                     stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 20
        while not os.path.exists(self.sock):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"containerd did not start; see {base}/containerd.log")
            time.sleep(0.05)

    def ctr(self, *args: str) -> list[str]:
        return ["ctr", "-a", self.sock, "-n", "bench", *args]

    def stop(self) -> None:
        subprocess.run(self.ctr("task", "ls", "-q"), capture_output=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        for pid in processes(lambda c, cmd: "containerd-shim" in cmd and self.base in cmd):
            os.kill(pid, signal.SIGKILL)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--many", type=int, default=100)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("engine: needs root", file=sys.stderr)
        return 1
    work = tempfile.mkdtemp(prefix="berth-bench-engine-")
    env = {**os.environ, "BERTH_ROOT": f"{work}/berth/root", "BERTH_STATE": f"{work}/berth/state"}
    os.environ.update({"BERTH_ROOT": env["BERTH_ROOT"], "BERTH_STATE": env["BERTH_STATE"]})
    subprocess.run([BERTH, "image", "bootstrap", "busybox"], env=env, check=True,
                   capture_output=True)
    peer = None
    if shutil.which("containerd") and shutil.which("ctr"):
        os.makedirs(f"{work}/containerd")
        peer = Containerd(f"{work}/containerd")
        tar = f"{work}/busybox.tar"
        subprocess.run([BERTH, "save", "-o", tar, "busybox"], env=env, check=True)
        subprocess.run(peer.ctr("image", "import", tar), check=True, capture_output=True)
    else:
        print("engine: containerd not installed (apt install containerd): no peer figures")
    try:
        cmds = {"berth": [BERTH, "run", "--rm", "busybox", "true"]}
        if peer is not None:
            # --rm removes it: the same id serves every run
            cmds["ctr"] = peer.ctr("run", "--rm", "docker.io/library/busybox:latest",
                                   "bench-true", "true")
        times = alternate(cmds, args.runs)
        if peer is not None:
            report("run --rm busybox true", times["berth"], "ctr", times["ctr"])
        else:
            print(f"run --rm busybox true: berth {median(times['berth']):.1f} ms")
        cmds_none = {"berth": [BERTH, "run", "--rm", "--network", "none", "busybox", "true"]}
        if peer is not None:
            cmds_none["ctr"] = cmds["ctr"]
        times = alternate(cmds_none, args.runs)
        if peer is not None:
            report("run --rm --network none busybox true", times["berth"], "ctr", times["ctr"])

        # many sleepers ---------------------------------------------------------------
        t0 = time.perf_counter()
        for _ in range(args.many):
            subprocess.run([BERTH, "run", "-d", "busybox", "sleep", "1000"], env=env, check=True,
                           stdout=subprocess.DEVNULL)
        berth_total = (time.perf_counter() - t0) * 1000
        root = env["BERTH_ROOT"]
        base = os.path.dirname(root)
        mine = processes(lambda c, cmd: c in ("berth-monitor", "berth-zygote") and base in cmd)
        berth_pss = sum(pss_kb(p) for p in mine) / args.many
        print(f"  berth leaves {len(mine)} processes for {args.many} containers", flush=True)
        if peer is not None:
            t0 = time.perf_counter()
            for i in range(args.many):
                subprocess.run(peer.ctr("run", "-d", "docker.io/library/busybox:latest",
                                        f"s{i}", "sleep", "1000"), check=True,
                               stdout=subprocess.DEVNULL)
            ctr_total = (time.perf_counter() - t0) * 1000
            shims = processes(lambda c, cmd: "containerd-shim" in cmd and peer.sock in cmd)
            shim_pss = sum(pss_kb(p) for p in shims) / args.many
            print(f"  containerd leaves {len(shims)} shims for {args.many} containers "
                  f"(containerd itself: {pss_kb(peer.proc.pid)} kB PSS)", flush=True)
            ratio = berth_total / ctr_total
            print(f"{args.many} run -d sleep: berth {berth_total:.0f} ms, ctr {ctr_total:.0f} "
                  f"ms, ratio {ratio:.2f}")
            print(f"PSS per running container: berth {berth_pss / 1024:.2f} MiB, ctr (shim) "
                  f"{shim_pss / 1024:.2f} MiB, ratio {berth_pss / max(1, shim_pss):.2f}")
        else:
            print(f"{args.many} run -d sleep: berth {berth_total:.0f} ms")
            print(f"PSS per running container: berth {berth_pss / 1024:.2f} MiB")
    finally:
        ids = subprocess.run([BERTH, "ps", "-aq", "--no-trunc"], env=env, capture_output=True,
                             text=True).stdout.split()
        if ids:
            subprocess.run([BERTH, "rm", "-f", *ids], env=env, capture_output=True)
        if peer is not None:
            for i in range(args.many):
                subprocess.run(peer.ctr("task", "kill", "-s", "KILL", f"s{i}"),
                               capture_output=True)
            time.sleep(0.5)
            for i in range(args.many):
                subprocess.run(peer.ctr("task", "rm", "-f", f"s{i}"), capture_output=True)
                subprocess.run(peer.ctr("container", "rm", f"s{i}"), capture_output=True)
            peer.stop()
        subprocess.run(["umount", "-R", "-l", work], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
