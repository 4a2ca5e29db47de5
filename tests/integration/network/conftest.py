"""Network test fixtures: a NetworkManager in the test's own roots, "boxes"
(a network namespace plus a private mount namespace whose /etc/resolv.conf
and /etc/hosts are the test's, so a name looked up inside never reaches the
host's resolvers), an "outside" namespace standing in for another host, and
a fake upstream resolver on the host's 127.0.0.1.

Traffic stays on this machine: boxes reach only addresses the tests give
them (berth's bridges, the outside namespace, the host's own addresses).
"""

from __future__ import annotations

import ipaddress
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from tests.integration.conftest import live_processes, unique

# a TCP server answering each connection (raw or HTTP) with the peer's address,
# and a UDP server answering each datagram the same way
TCP_SERVER = r"""
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(16)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.settimeout(2)
    try:
        c.recv(4096)
    except OSError:
        pass
    c.sendall(("HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\npeer=%s\n" % peer[0]).encode())
    c.close()
"""
UDP_SERVER = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    s.sendto(("peer=%s\n" % peer[0]).encode(), peer)
"""
UDP_CLIENT = r"""
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(float(sys.argv[3]))
s.sendto(b"hello", (sys.argv[1], int(sys.argv[2])))
print(s.recvfrom(4096)[0].decode(), end="")
"""
TCP_CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
s.sendall(b"GET / HTTP/1.0\r\n\r\n")
out = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    out += b
print(out.decode().split("\r\n\r\n", 1)[-1], end="")
"""

CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C"}


def host_routes() -> list[ipaddress.IPv4Network]:
    from berth.network.netlink import host_routes as routes

    return routes()


_used: set[int] = set()


def free_subnet() -> str:
    """A 10.123.N.0/24 no host route and no other test of this run uses."""
    routes = host_routes()
    for _ in range(500):
        n = random.randrange(10, 240)
        net = ipaddress.IPv4Network(f"10.123.{n}.0/24")
        if n not in _used and not any(r.overlaps(net) for r in routes):
            _used.add(n)
            return str(net)
    raise RuntimeError("no free 10.123.x.0/24")


def bridge_name() -> str:
    return unique("brt-")[:13]


class Box:
    """A network namespace (and private mount namespace) kept by `sleep`."""

    def __init__(self, workdir: str, name: str) -> None:
        self.name = name
        self.dir = os.path.join(workdir, f"box-{name}")
        os.makedirs(self.dir)
        self.write_etc("nameserver 127.0.0.11\noptions ndots:0\n", "127.0.0.1\tlocalhost\n")
        script = (f"mount --bind {self.dir}/resolv.conf /etc/resolv.conf && "
                  f"mount --bind {self.dir}/hosts /etc/hosts && echo ready && "
                  "exec sleep infinity")
        self.proc = subprocess.Popen(
            ["unshare", "--net", "--mount", "--propagation", "private", "sh", "-c", script],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=CLEAN_ENV)
        line = self.proc.stdout.readline()
        assert line.strip() == b"ready", line
        self.pid = self.proc.pid
        self.netns_inode = os.stat(f"/proc/{self.pid}/ns/net").st_ino
        self.servers: list[subprocess.Popen] = []
        self.run("ip", "link", "set", "lo", "up")

    def write_etc(self, resolv: str, hosts: str) -> None:
        # written in place: the bind mounts keep the inode
        for name, text in (("resolv.conf", resolv), ("hosts", hosts)):
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)

    def _cmd(self, *argv: str) -> list[str]:
        return ["nsenter", "-t", str(self.pid), "-n", "-m", *argv]

    def run(self, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return subprocess.run(self._cmd(*argv), capture_output=True, text=True,
                              timeout=timeout, env=CLEAN_ENV, stdin=subprocess.DEVNULL)

    def sh(self, script: str, timeout: float = 20) -> subprocess.CompletedProcess:
        return self.run("sh", "-c", script, timeout=timeout)

    def serve(self, proto: str, port: int, addr: str = "0.0.0.0") -> None:
        code = TCP_SERVER if proto == "tcp" else UDP_SERVER
        p = subprocess.Popen(self._cmd(sys.executable, "-c", code, addr, str(port)),
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=CLEAN_ENV)
        assert p.stdout.readline().strip() == b"listening"
        self.servers.append(p)

    def tcp(self, host: str, port: int, timeout: float = 3) -> str:
        """The server's answer (peer=ADDR) or "" when it cannot be reached."""
        p = self.run(sys.executable, "-c", TCP_CLIENT, host, str(port), str(timeout),
                     timeout=timeout + 10)
        return p.stdout.strip() if p.returncode == 0 else ""

    def udp(self, host: str, port: int, timeout: float = 3) -> str:
        p = self.run(sys.executable, "-c", UDP_CLIENT, host, str(port), str(timeout),
                     timeout=timeout + 10)
        return p.stdout.strip() if p.returncode == 0 else ""

    def close(self) -> None:
        for p in self.servers:
            p.kill()
            p.wait()
        self.proc.kill()
        self.proc.wait()
        # anything else started inside (busybox daemons); never the DNS server,
        # whose lifetime the tests check
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                if os.stat(f"/proc/{name}/ns/net").st_ino != self.netns_inode:
                    continue
                with open(f"/proc/{name}/cmdline", "rb") as f:
                    if b"berth.network.dns" in f.read():
                        continue
                os.kill(int(name), signal.SIGKILL)
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue


@pytest.fixture
def boxes(workdir):
    made: list[Box] = []

    def make(name: str | None = None) -> Box:
        b = Box(workdir, name or f"b{len(made)}")
        made.append(b)
        return b

    yield make
    for b in reversed(made):
        b.close()


def dns_servers(database: str, module: bytes = b"berth.network.dns") -> list[int]:
    """The embedded DNS servers (or, with module berth.network.proxy, the
    [::1] port proxies) of the engine whose database this is."""
    db = database.encode()
    return live_processes(lambda argv, _comm: module in argv and db in argv)


def nft_tables() -> set[str]:
    p = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True)
    return {line.strip() for line in p.stdout.splitlines() if line.strip()}


class FakeResolver:
    """An upstream resolver on the host's 127.0.0.1 answering every A
    question with ANSWER (and counting questions)."""

    ANSWER = "10.123.254.254"

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.questions: list[str] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from berth.network.dns import build_answer, parse_question

        while True:
            try:
                msg, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            q = parse_question(msg)
            if q is None:
                continue
            self.questions.append(q.name)
            try:
                self.sock.sendto(build_answer(msg, q, [self.ANSWER]), peer)
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def resolver():
    r = FakeResolver()
    yield r
    r.close()


@pytest.fixture
def nm(workdir, resolver):
    """A NetworkManager in the test's roots; its default bridge and subnet
    are the test's own. Afterwards: every endpoint released, berth's table
    gone, no DNS server left."""
    from berth.network import NetworkManager
    from berth.paths import Paths

    paths = Paths(os.path.join(workdir, "root"), os.path.join(workdir, "state"))
    before = nft_tables()
    m = NetworkManager(paths, dns_upstreams=[f"127.0.0.1:{resolver.port}"],
                       default_bridge=bridge_name(), default_subnet=free_subnet())
    yield m
    problems = []
    eps = m.store.endpoints()
    if eps:
        problems.append(f"endpoints left: {[e.host_veth for e in eps]}")
    for cid in {e.container_id for e in eps}:
        m.release_all(cid)
    if f"table ip {m.table}" in nft_tables() - before:
        problems.append(f"nftables table {m.table} left")
        subprocess.run(["nft", "delete", "table", "ip", m.table], capture_output=True)
    for module in (b"berth.network.dns", b"berth.network.proxy"):
        left = dns_servers(paths.database, module)
        if left:
            problems.append(f"{module.decode()} processes left: {left}")
            for pid in left:
                os.kill(pid, signal.SIGKILL)
    for net in m.store.networks():
        from berth.network.netlink import delete_link

        delete_link(net.bridge)
    m.close()
    assert not problems, "; ".join(problems)


class Outside:
    """Another host: a box joined to the host by a veth pair, 10.123.N.1 on
    the host's side, 10.123.N.2 in the box, default route back to the host."""

    def __init__(self, box: Box) -> None:
        from pyroute2 import IPRoute

        self.box = box
        net = ipaddress.IPv4Network(free_subnet())
        self.host_addr = str(net.network_address + 1)
        self.addr = str(net.network_address + 2)
        self.link = bridge_name().replace("brt-", "brt-o")[:13]
        with IPRoute() as ipr:
            ipr.link("add", ifname=self.link, kind="veth", peer={"ifname": self.link + "p"})
            idx = ipr.link_lookup(ifname=self.link)[0]
            peer = ipr.link_lookup(ifname=self.link + "p")[0]
            ipr.addr("add", index=idx, address=self.host_addr, prefixlen=24)
            ipr.link("set", index=idx, state="up")
            ipr.link("set", index=peer, net_ns_pid=box.pid)
        box.run("ip", "link", "set", self.link + "p", "name", "eth0")
        box.run("ip", "addr", "add", f"{self.addr}/24", "dev", "eth0")
        box.run("ip", "link", "set", "eth0", "up")
        box.run("ip", "route", "add", "default", "via", self.host_addr)

    def close(self) -> None:
        from berth.network.netlink import delete_link

        delete_link(self.link)


@pytest.fixture
def outside(boxes):
    o = Outside(boxes("outside"))
    yield o
    o.close()


def host_address() -> str:
    """An address of the host's own that is not loopback (the one of its
    default route), for connections from the host to itself."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        # connect() on UDP sends nothing: it only picks the source address
        try:
            s.connect(("192.0.2.123", 9))
            return s.getsockname()[0]
        except OSError:
            return ""


def wait_for(pred, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return pred()

