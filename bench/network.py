"""Networking against docker, same machine, same run:

    sudo flock -o /run/berth-integration-tests.lock \
        .venv/bin/python bench/network.py [--what all|run|throughput] [--peer docker|kernel]
        [--runs 15] [--mb 1024] [--rounds 5]

- `run --rm busybox true` on each engine's default bridge network (berth's
  own bridge and subnet; docker's docker0 with --bip), from a cold CLI.
  docker0 lives as long as dockerd; berth's bridge and its nft table as long
  as berth's monitor zygote (which leaves 1 s after its last container, so
  the runs here, alternated with docker's, find them in place).
- 20 `run -d` started at once on one user-defined network (wall time until
  the last CLI returns).
- TCP throughput container-to-container (a client in one busybox container
  streams to a server in another on the same network) and host-to-published-
  port (a client on the host streams to the host's own address on a port
  published to the server's container). The client and server are the same
  small Python socket loops for both engines, run in the containers' network
  namespaces with nsenter (busybox has no Python).

dockerd runs on a private socket, data root and exec root, with iptables on
and the userland proxy off (`--userland-proxy=false`: published ports are
DNAT, as berth's), its default bridge on a 10.123.x subnet. Afterwards the
benchmark stops it and puts the host back: docker0, the nftables tables its
iptables made, and the sysctls it changed. busybox goes to docker as
`berth save | docker load`, so both run the same image.

`--peer kernel` compares the throughput with a plain Linux bridge and veths
(no engine, no rules) instead. Prints `name: berth X, peer Y, ratio Z`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import REPO, alternate, report

BERTH = os.path.join(REPO, ".venv", "bin", "berth")

SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8)
print("listening", flush=True)
buf = bytearray(1 << 18)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        k = c.recv_into(buf)
        if not k:
            break
        n += k
    c.sendall(str(n).encode())
    c.close()
"""
CLIENT = r"""
import socket, sys, time
host, port, total = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
chunk = b"x" * (1 << 18)
s = socket.create_connection((host, port), timeout=30)
t0 = time.perf_counter()
sent = 0
while sent < total:
    s.sendall(chunk)
    sent += len(chunk)
s.shutdown(socket.SHUT_WR)
got = int(s.recv(64))
t1 = time.perf_counter()
assert got == sent, (got, sent)
print(sent / (t1 - t0) / 1e6)
"""
SERVER_PORT = 5001


def nsenter(pid: int | str) -> list[str]:
    return ["nsenter", "-t", str(pid), "-n"]


def serve(prefix: list[str], port: int) -> subprocess.Popen:
    p = subprocess.Popen([*prefix, sys.executable, "-c", SERVER, str(port)],
                         stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline().strip() == b"listening"
    return p


def stream(prefix: list[str], host: str, port: int, nbytes: int) -> float:
    p = subprocess.run([*prefix, sys.executable, "-c", CLIENT, host, str(port), str(nbytes)],
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"stream to {host}:{port}: {p.stderr.strip().splitlines()[-1:]}")
    return float(p.stdout.strip())


def free_subnet(taken: list[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    for n in range(200, 250):
        net = ipaddress.IPv4Network(f"10.123.{n}.0/24")
        if not any(net.overlaps(t) for t in taken):
            taken.append(net)
            return net
    raise SystemExit("no free 10.123.x.0/24 for the benchmark")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def host_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("192.0.2.123", 9))  # picks a source address; sends nothing
        return s.getsockname()[0]


def nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line.split(None, 1)[1] for line in out.splitlines() if line.startswith("table ")}


def parallel(argvs: list[list[str]], env: dict | None = None) -> float:
    """Wall time in ms of all argvs started at once, until the last one exits."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(a, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
             for a in argvs]
    errors = []
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            errors.append(err.decode(errors="replace").strip())
    t = (time.perf_counter() - t0) * 1000
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(argvs)} failed: {errors[0]}")
    return t


class Engine:
    """The commands of one engine: berth (env) or docker (-H SOCK)."""

    name = ""
    image = "busybox"

    def cli(self, *args: str) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def out(self, *args: str) -> str:
        p = subprocess.run(self.cli(*args), capture_output=True, text=True, timeout=120,
                           env=self.env())
        if p.returncode != 0:
            raise RuntimeError(f"{self.name} {' '.join(args)}: {p.stderr.strip()}")
        return p.stdout

    def pid(self, name: str) -> int:
        return int(self.out("inspect", "-f", "{{.State.Pid}}", name).strip())

    def ip(self, name: str, network: str) -> str:
        import json

        nets = json.loads(self.out("inspect", "-f", "{{json .NetworkSettings.Networks}}", name))
        return nets[network]["IPAddress"]

    def remove_all(self) -> None:
        ids = self.out("ps", "-aq").split()
        if ids:
            subprocess.run(self.cli("rm", "-f", *ids), capture_output=True, env=self.env())


class Berth(Engine):
    name = "berth"

    def __init__(self, work: str, taken: list[ipaddress.IPv4Network]) -> None:
        self._env = {**os.environ, "BERTH_ROOT": f"{work}/root", "BERTH_STATE": f"{work}/state",
                     "BERTH_BRIDGE": "brt-bbench", "BERTH_BRIDGE_SUBNET": str(free_subnet(taken))}
        self.out("image", "bootstrap", "busybox")
        self.out("network", "create", "--subnet", str(free_subnet(taken)), "-o",
                 "com.docker.network.bridge.name=brt-bbench2", "bench")

    def cli(self, *args: str) -> list[str]:
        return [BERTH, *args]

    def env(self) -> dict[str, str]:
        return self._env

    def close(self) -> None:
        self.remove_all()
        subprocess.run(self.cli("network", "rm", "bench"), capture_output=True, env=self._env)
        subprocess.run(self.cli("network", "prune", "-f"), capture_output=True, env=self._env)


SYSCTLS = ["net/ipv4/ip_forward", "net/ipv6/conf/all/forwarding",
           "net/bridge/bridge-nf-call-iptables", "net/bridge/bridge-nf-call-ip6tables"]


class Docker(Engine):
    """dockerd on a private socket with iptables and without the userland proxy."""

    name = "docker"

    def __init__(self, work: str, taken: list[ipaddress.IPv4Network], berth: Berth) -> None:
        if not shutil.which("dockerd"):
            raise SystemExit("dockerd is not installed (apt-get install docker.io)")
        self.dir = work
        os.makedirs(work, exist_ok=True)
        self.sock = f"{work}/docker.sock"
        self.links = set(os.listdir("/sys/class/net"))
        self.tables = nft_tables()
        self.sysctls = {}
        for k in SYSCTLS:
            with open(f"/proc/sys/{k}") as f:
                self.sysctls[k] = f.read().strip()
        bip = free_subnet(taken)
        self.log = open(f"{work}/dockerd.log", "w")  # noqa: SIM115 (lives with dockerd)
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", f"{work}/data", "--exec-root", f"{work}/exec",
             "-H", f"unix://{self.sock}", "--pidfile", f"{work}/docker.pid",
             "--userland-proxy=false", "--bip", f"{bip.network_address + 1}/{bip.prefixlen}",
             "--default-ulimit", "nofile=1024:1024", "--default-ulimit", "nproc=1000:1000"],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            for _ in range(300):
                if subprocess.run(self.cli("version"), capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                raise RuntimeError(f"dockerd did not start; see {work}/dockerd.log")
            tar = f"{work}/busybox.tar"
            berth.out("save", "-o", tar, "busybox")
            self.out("load", "-i", tar)
            self.out("network", "create", "--subnet", str(free_subnet(taken)), "-o",
                     "com.docker.network.bridge.name=brt-dbench", "bench")
        except BaseException:
            self.close()
            raise

    def cli(self, *args: str) -> list[str]:
        return ["docker", "-H", f"unix://{self.sock}", *args]

    def close(self) -> None:
        """Stop dockerd and put the host back as it was."""
        if self.proc.poll() is None:
            self.remove_all()
            subprocess.run(self.cli("network", "rm", "bench"), capture_output=True)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        for d in ("exec", "data"):
            subprocess.run(["umount", "-R", f"{self.dir}/{d}"], capture_output=True)
        for link in set(os.listdir("/sys/class/net")) - self.links:
            if link == "docker0" or link.startswith(("veth", "br-", "brt-dbench")):
                subprocess.run(["ip", "link", "del", link], capture_output=True)
        for table in nft_tables() - self.tables:
            if not table.split()[-1].startswith("berth"):
                subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
        for k, v in self.sysctls.items():
            with open(f"/proc/sys/{k}", "w") as f:
                f.write(v)
        shutil.rmtree(self.dir, ignore_errors=True)


class Pair:
    """A client container and a server container (published port) on `bench`."""

    def __init__(self, eng: Engine, port: int) -> None:
        self.eng = eng
        self.port = port
        for name, extra in (("tp-client", []), ("tp-server", ["-p", f"{port}:{SERVER_PORT}"])):
            eng.out("run", "-d", "--name", name, "--network", "bench", *extra, eng.image,
                    "sleep", "3600")
        self.client = eng.pid("tp-client")
        self.server_ip = eng.ip("tp-server", "bench")
        self.server = serve(nsenter(eng.pid("tp-server")), SERVER_PORT)

    def ns_to_ns(self, nbytes: int) -> float:
        return stream(nsenter(self.client), self.server_ip, SERVER_PORT, nbytes)

    def host_to_port(self, nbytes: int) -> float:
        return stream([], host_address(), self.port, nbytes)

    def close(self) -> None:
        self.server.kill()
        self.server.wait()
        subprocess.run(self.eng.cli("rm", "-f", "tp-client", "tp-server"), capture_output=True,
                       env=self.eng.env())


class KernelPair:
    """The floor: a Linux bridge and two veths with addresses, no engine, no rules."""

    def __init__(self, taken: list[ipaddress.IPv4Network]) -> None:
        from pyroute2 import IPRoute

        net = free_subnet(taken)
        self.ip_a, self.server_ip = str(net.network_address + 2), str(net.network_address + 3)
        self.ns = [subprocess.Popen(["unshare", "--net", "sleep", "infinity"]) for _ in range(2)]
        time.sleep(0.2)
        with IPRoute() as ipr:
            ipr.link("add", ifname="brt-kbench", kind="bridge")
            br = ipr.link_lookup(ifname="brt-kbench")[0]
            ipr.addr("add", index=br, address=str(net.network_address + 1),
                     prefixlen=net.prefixlen)
            ipr.link("set", index=br, state="up")
            for ns, ip, name in ((self.ns[0], self.ip_a, "vethkba"),
                                 (self.ns[1], self.server_ip, "vethkbb")):
                ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})
                idx = ipr.link_lookup(ifname=name)[0]
                ipr.link("set", index=idx, master=br, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname=name + "p")[0], net_ns_pid=ns.pid)
                for argv in (["ip", "link", "set", name + "p", "name", "eth0"],
                             ["ip", "addr", "add", f"{ip}/{net.prefixlen}", "dev", "eth0"],
                             ["ip", "link", "set", "eth0", "up"],
                             ["ip", "link", "set", "lo", "up"]):
                    subprocess.run(nsenter(ns.pid) + argv, check=True)
        self.client = self.ns[0].pid
        self.server = serve(nsenter(self.ns[1].pid), SERVER_PORT)

    def ns_to_ns(self, nbytes: int) -> float:
        return stream(nsenter(self.client), self.server_ip, SERVER_PORT, nbytes)

    def host_to_port(self, nbytes: int) -> float:
        return stream([], self.server_ip, SERVER_PORT, nbytes)

    def close(self) -> None:
        self.server.kill()
        self.server.wait()
        for p in self.ns:
            p.kill()
            p.wait()
        subprocess.run(["ip", "link", "del", "brt-kbench"], capture_output=True)


def bench_run(args: argparse.Namespace, berth: Berth, docker: Docker | None) -> None:
    if docker is None:
        cmds = {"berth": berth.cli("run", "--rm", "busybox", "true"),
                "none": berth.cli("run", "--rm", "--network", "none", "busybox", "true")}
        os.environ.update(berth.env())
        res = alternate(cmds, runs=args.runs, warmup=3)
        report("run --rm busybox true (default bridge vs --network none)", res["berth"],
               "none", res["none"])
    else:
        os.environ.update(berth.env())  # time_command passes os.environ
        cmds = {"berth": berth.cli("run", "--rm", "busybox", "true"),
                "docker": docker.cli("run", "--rm", "busybox", "true")}
        res = alternate(cmds, runs=args.runs, warmup=3)
        report("run --rm busybox true (default bridge network)", res["berth"], "docker",
               res["docker"])
    times: dict[str, list[float]] = {"berth": [], "docker": []}
    for r in range(args.parallel_rounds):
        for eng in (berth, docker):
            if eng is None:
                continue
            times[eng.name].append(parallel(
                [eng.cli("run", "-d", "--network", "bench", "--name", f"p{r}-{i}", eng.image,
                         "sleep", "600") for i in range(20)], env=eng.env()))
            eng.remove_all()
    if docker is not None:
        report("20 containers started in parallel on one network (run -d)", times["berth"],
               "docker", times["docker"])
    else:
        print(f"20 containers started in parallel on one network: berth "
              f"{statistics.median(times['berth']):.0f} ms (median of {args.parallel_rounds})")


def bench_throughput(args: argparse.Namespace, berth: Berth, docker: Docker | None,
                     taken: list[ipaddress.IPv4Network]) -> None:
    nbytes = args.mb * 1_000_000
    b = Pair(berth, free_port())
    p: Pair | KernelPair | None = None
    try:
        p = Pair(docker, free_port()) if docker else KernelPair(taken)
        label = "docker" if docker else "kernel"
        b.ns_to_ns(nbytes // 8)  # warm-up
        p.ns_to_ns(nbytes // 8)
        res: dict[str, list[float]] = {k: [] for k in ("bn", "pn", "bh", "ph")}
        for _ in range(args.rounds):
            res["bn"].append(b.ns_to_ns(nbytes))
            res["pn"].append(p.ns_to_ns(nbytes))
            res["bh"].append(b.host_to_port(nbytes))
            res["ph"].append(p.host_to_port(nbytes))
        for name, kb, kp in (("container-to-container tcp", "bn", "pn"),
                             ("host-to-published-port tcp", "bh", "ph")):
            bm, pm = statistics.median(res[kb]), statistics.median(res[kp])
            print(f"{name}: berth {bm:.0f} MB/s, {label} {pm:.0f} MB/s, ratio {bm / pm:.2f} "
                  f"(medians of {args.rounds} x {args.mb} MB; berth "
                  f"{min(res[kb]):.0f}-{max(res[kb]):.0f}, {label} "
                  f"{min(res[kp]):.0f}-{max(res[kp]):.0f})", flush=True)
    finally:
        b.close()
        if p is not None:
            p.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", choices=["all", "throughput", "run"], default="all")
    ap.add_argument("--peer", choices=["docker", "kernel"], default="docker")
    ap.add_argument("--mb", type=int, default=1024, help="megabytes per transfer")
    ap.add_argument("--rounds", type=int, default=5, help="transfers per path and engine")
    ap.add_argument("--runs", type=int, default=15, help="runs of `run --rm`")
    ap.add_argument("--parallel-rounds", type=int, default=3)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    sys.path.insert(0, os.path.join(REPO, "src"))
    from berth.network.netlink import host_routes

    taken: list[ipaddress.IPv4Network] = list(host_routes())
    work = tempfile.mkdtemp(prefix="berth-netbench-")
    berth = docker = None
    try:
        berth = Berth(f"{work}/berth", taken)
        if args.peer == "docker":
            docker = Docker(f"{work}/docker", taken, berth)
        if args.what in ("all", "run"):
            bench_run(args, berth, docker)
        if args.what in ("all", "throughput"):
            bench_throughput(args, berth, docker, taken)
    finally:
        for eng in (docker, berth):
            if eng is not None:
                eng.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
