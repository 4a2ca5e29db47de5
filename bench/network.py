"""Network throughput: berth's bridge path against a peer, same machine, same run.

    sudo .venv/bin/python bench/network.py [--mb 1024] [--rounds 5] [--peer kernel|docker]

- `ns-to-ns tcp`: a client in one network namespace streams to a server in
  another over berth's bridge (user network, embedded DNS, nftables table in
  place); the peer is the same over a plain Linux bridge with no rules
  (`kernel`), or two containers on a docker network (`docker`, dockerd
  started on a private socket and data root with --iptables=false so it
  leaves the host firewall alone).
- `host-to-published-port tcp`: a client on the host streams to the host's
  own address on a port berth publishes (DNAT in the output hook); the peer
  is the client streaming straight to the server's address (`kernel`), or to
  a port docker publishes (`docker`: with --iptables=false that is docker's
  userland proxy, which is said in the output).

The client and server are the same small Python socket loops everywhere,
run inside each namespace with nsenter. Traffic stays on this machine.
Prints `name: berth X MB/s, peer Y MB/s, ratio Z` (ratio > 1: berth faster).
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
from common import REPO

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


class NS:
    """A network namespace kept by `sleep`."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(["unshare", "--net", "sleep", "infinity"])
        for _ in range(200):
            if os.readlink(f"/proc/{self.proc.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
                break
            time.sleep(0.01)
        self.pid = self.proc.pid
        self.servers: list[subprocess.Popen] = []

    def cmd(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", *argv]

    def close(self) -> None:
        for p in self.servers:
            p.kill()
            p.wait()
        self.proc.kill()
        self.proc.wait()


def serve(cmd_prefix: list[str], port: int) -> subprocess.Popen:
    p = subprocess.Popen([*cmd_prefix, sys.executable, "-c", SERVER, str(port)],
                         stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == b"listening"
    return p


def stream(cmd_prefix: list[str], host: str, port: int, nbytes: int) -> float:
    p = subprocess.run([*cmd_prefix, sys.executable, "-c", CLIENT, host, str(port), str(nbytes)],
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


class BerthSide:
    def __init__(self, workdir: str, taken: list[ipaddress.IPv4Network]) -> None:
        from berth.network import NetworkManager, parse_port_spec
        from berth.paths import Paths

        self.nm = NetworkManager(Paths(f"{workdir}/root", f"{workdir}/state"), dns_upstreams=[])
        self.nm.create("bench", subnet=str(free_subnet(taken)),
                       options={"com.docker.network.bridge.name": "brt-bench"})
        self.a, self.b = NS(), NS()
        self.port = free_port()
        self.nm.attach("a" * 64, self.a.pid, "bench", name="client")
        self.eb = self.nm.attach("b" * 64, self.b.pid, "bench", name="server",
                                 ports=parse_port_spec(f"{self.port}:5001"))
        self.b.servers.append(serve(self.b.cmd(), 5001))

    def ns_to_ns(self, nbytes: int) -> float:
        return stream(self.a.cmd(), str(self.eb.ip), 5001, nbytes)

    def host_to_port(self, nbytes: int) -> float:
        return stream([], host_address(), self.port, nbytes)

    def close(self) -> None:
        for cid in ("a" * 64, "b" * 64):
            self.nm.release_all(cid)
        self.a.close()
        self.b.close()
        self.nm.remove("bench")
        self.nm.close()


class KernelSide:
    """The floor: a Linux bridge and veths with addresses, no berth, no rules."""

    label = "kernel bridge"
    port_label = "kernel (direct to the server's address)"

    def __init__(self, taken: list[ipaddress.IPv4Network]) -> None:
        from pyroute2 import IPRoute

        net = free_subnet(taken)
        self.ip_a, self.ip_b = str(net.network_address + 2), str(net.network_address + 3)
        self.a, self.b = NS(), NS()
        with IPRoute() as ipr:
            ipr.link("add", ifname="brt-kbench", kind="bridge")
            br = ipr.link_lookup(ifname="brt-kbench")[0]
            ipr.addr("add", index=br, address=str(net.network_address + 1),
                     prefixlen=net.prefixlen)
            ipr.link("set", index=br, state="up")
            for ns, ip, name in ((self.a, self.ip_a, "vethkba"), (self.b, self.ip_b, "vethkbb")):
                ipr.link("add", ifname=name, kind="veth", peer={"ifname": name + "p"})
                idx = ipr.link_lookup(ifname=name)[0]
                ipr.link("set", index=idx, master=br, state="up")
                ipr.link("set", index=ipr.link_lookup(ifname=name + "p")[0],
                         net_ns_pid=ns.pid)
                for argv in (["ip", "link", "set", name + "p", "name", "eth0"],
                             ["ip", "addr", "add", f"{ip}/{net.prefixlen}", "dev", "eth0"],
                             ["ip", "link", "set", "eth0", "up"],
                             ["ip", "link", "set", "lo", "up"]):
                    subprocess.run(ns.cmd(*argv), check=True)
        self.b.servers.append(serve(self.b.cmd(), 5001))

    def ns_to_ns(self, nbytes: int) -> float:
        return stream(self.a.cmd(), self.ip_b, 5001, nbytes)

    def host_to_port(self, nbytes: int) -> float:
        return stream([], self.ip_b, 5001, nbytes)

    def close(self) -> None:
        self.a.close()
        self.b.close()
        from berth.network.netlink import delete_link

        delete_link("brt-kbench")


class DockerSide:
    """Two busybox containers on a docker network, dockerd on a private socket
    and data root with --iptables=false --bridge=none (the host firewall is
    left alone; published ports then go through docker-proxy)."""

    label = "docker"
    port_label = "docker (docker-proxy: --iptables=false)"

    def __init__(self, workdir: str, taken: list[ipaddress.IPv4Network]) -> None:

        os.makedirs(workdir, exist_ok=True)
        self.dir = workdir
        self.sock = f"{workdir}/docker.sock"
        self.log = open(f"{workdir}/dockerd.log", "w")  # noqa: SIM115 (lives with dockerd)
        self.proc = subprocess.Popen(
            ["dockerd", "--data-root", f"{workdir}/docker-data", "--exec-root",
             f"{workdir}/docker-exec", "-H", f"unix://{self.sock}", "--pidfile",
             f"{workdir}/docker.pid", "--iptables=false", "--ip-forward=false",
             "--ip-masq=false", "--bridge=none",
             "--default-ulimit", "nofile=1024:1024", "--default-ulimit", "nproc=1000:1000"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.server: subprocess.Popen | None = None
        try:
            self._setup(workdir, taken)
        except BaseException:
            self.close()
            raise

    def _setup(self, workdir: str, taken: list[ipaddress.IPv4Network]) -> None:
        from berth.image.busybox import make_busybox_rootfs

        for _ in range(300):
            if self.docker("version", check=False).returncode == 0:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError("dockerd did not start; see " + f"{workdir}/dockerd.log")
        rootfs = f"{workdir}/bb-rootfs"
        make_busybox_rootfs(rootfs)
        subprocess.run(f"tar -C {rootfs} -c . | docker -H unix://{self.sock} import - "
                       "bench-busybox", shell=True, check=True, stdout=subprocess.DEVNULL)
        net = free_subnet(taken)
        self.docker("network", "create", "--subnet", str(net), "-o",
                    "com.docker.network.bridge.name=brt-dbench", "bench")
        self.port = free_port()
        self.docker("run", "-d", "--name", "bench-a", "--network", "bench", "bench-busybox",
                    "sleep", "3600")
        self.docker("run", "-d", "--name", "bench-b", "--network", "bench", "-p",
                    f"{self.port}:5001", "bench-busybox", "sleep", "3600")
        self.pid_a = self.docker("inspect", "-f", "{{.State.Pid}}", "bench-a").stdout.strip()
        self.pid_b = self.docker("inspect", "-f", "{{.State.Pid}}", "bench-b").stdout.strip()
        self.ip_b = self.docker("inspect", "-f",
                                "{{.NetworkSettings.Networks.bench.IPAddress}}",
                                "bench-b").stdout.strip()
        self.server = serve(["nsenter", "-t", self.pid_b, "-n"], 5001)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(["docker", "-H", f"unix://{self.sock}", *args],
                           capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)}: {p.stderr.strip()}")
        return p

    def ns_to_ns(self, nbytes: int) -> float:
        return stream(["nsenter", "-t", self.pid_a, "-n"], self.ip_b, 5001, nbytes)

    def host_to_port(self, nbytes: int) -> float:
        return stream([], host_address(), self.port, nbytes)

    def close(self) -> None:
        if self.server is not None:
            self.server.kill()
            self.server.wait()
        self.docker("rm", "-f", "bench-a", "bench-b", check=False)
        self.docker("network", "rm", "bench", check=False)
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self.log.close()
        subprocess.run(["umount", "-R", f"{self.dir}/docker-data"], capture_output=True)
        subprocess.run(["umount", "-R", f"{self.dir}/docker-exec"], capture_output=True)


def bench_run(args: argparse.Namespace, taken: list[ipaddress.IPv4Network]) -> None:
    from common import alternate, report

    berth = os.path.join(REPO, ".venv", "bin", "berth")
    work = tempfile.mkdtemp(prefix="berth-netbench-run-")
    env = {**os.environ, "BERTH_ROOT": f"{work}/root", "BERTH_STATE": f"{work}/state",
           "BERTH_BRIDGE": "brt-rbench", "BERTH_BRIDGE_SUBNET": str(free_subnet(taken))}
    os.environ.update(env)
    docker = None
    try:
        subprocess.run([berth, "image", "bootstrap", "busybox"], check=True, capture_output=True)
        subprocess.run([berth, "network", "create", "--subnet", str(free_subnet(taken)), "-o",
                        "com.docker.network.bridge.name=brt-rbench2", "many"], check=True,
                       capture_output=True)
        cmds = {"berth": [berth, "run", "--rm", "busybox", "true"]}
        if args.peer == "docker":
            docker = DockerSide(f"{work}/docker-side", taken)
            cmds["docker"] = ["docker", "-H", f"unix://{docker.sock}", "run", "--rm",
                              "--network", "bench", "bench-busybox", "true"]
        else:
            cmds["none"] = [berth, "run", "--rm", "--network", "none", "busybox", "true"]
        res = alternate(cmds, runs=args.runs, warmup=3)
        peer = "docker" if docker else "none"
        report(f"run --rm (default bridge vs {peer})", res["berth"], peer, res[peer])

        def parallel(argv_for) -> float:
            t0 = time.perf_counter()
            procs = [subprocess.Popen(argv_for(i), stdout=subprocess.DEVNULL)
                     for i in range(20)]
            for p in procs:
                if p.wait() != 0:
                    raise RuntimeError("a parallel run -d failed")
            return (time.perf_counter() - t0) * 1000

        b_times, p_times = [], []
        for r in range(3):
            b_times.append(parallel(lambda i, r=r: [berth, "run", "-d", "--network", "many",
                                                    "--name", f"m{r}-{i}", "busybox",
                                                    "sleep", "600"]))
            subprocess.run(f"{berth} rm -f $({berth} ps -aq)", shell=True, capture_output=True)
            if docker:
                p_times.append(parallel(lambda i, r=r: [
                    "docker", "-H", f"unix://{docker.sock}", "run", "-d", "--network", "bench",
                    "--name", f"m{r}-{i}", "bench-busybox", "sleep", "600"]))
                docker.docker("rm", "-f", *[f"m{r}-{i}" for i in range(20)], check=False)
        if docker:
            report("20 containers started in parallel on one network", b_times, "docker",
                   p_times)
        else:
            print(f"20 containers started in parallel on one network: berth "
                  f"{statistics.median(b_times):.0f} ms (median of 3; no peer)")
    finally:
        subprocess.run(f"{berth} rm -f $({berth} ps -aq)", shell=True, capture_output=True)
        subprocess.run([berth, "network", "rm", "many"], capture_output=True)
        if docker:
            docker.close()
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--what", choices=["throughput", "run"], default="throughput")
    ap.add_argument("--mb", type=int, default=1024, help="megabytes per transfer")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=15, help="runs of `run --rm` (--what run)")
    ap.add_argument("--peer", choices=["kernel", "docker"], default="kernel")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root")
    sys.path.insert(0, os.path.join(REPO, "src"))
    from berth.network.netlink import host_routes

    taken = host_routes()
    if args.what == "run":
        bench_run(args, taken)
        return
    nbytes = args.mb * 1_000_000
    work = tempfile.mkdtemp(prefix="berth-netbench-")
    berth = peer = None
    try:
        berth = BerthSide(f"{work}/berth", taken)
        if args.peer == "docker":
            if not shutil.which("dockerd"):
                sys.exit("dockerd is not installed (apt-get install docker.io)")
            peer = DockerSide(work, taken)
        else:
            peer = KernelSide(taken)
        results: dict[str, list[float]] = {k: [] for k in ("bn", "pn", "bh", "ph")}
        berth.ns_to_ns(nbytes // 8)  # warm-up
        peer.ns_to_ns(nbytes // 8)
        for _ in range(args.rounds):
            results["bn"].append(berth.ns_to_ns(nbytes))
            results["pn"].append(peer.ns_to_ns(nbytes))
            results["bh"].append(berth.host_to_port(nbytes))
            results["ph"].append(peer.host_to_port(nbytes))
        for name, b, p, label in (
                ("ns-to-ns tcp", "bn", "pn", peer.label),
                ("host-to-published-port tcp", "bh", "ph", peer.port_label)):
            bm, pm = statistics.median(results[b]), statistics.median(results[p])
            print(f"{name}: berth {bm:.0f} MB/s, {label} {pm:.0f} MB/s, ratio {bm / pm:.2f} "
                  f"(medians of {args.rounds} x {args.mb} MB)", flush=True)
    finally:
        for side in (peer, berth):
            if side is not None:
                side.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
