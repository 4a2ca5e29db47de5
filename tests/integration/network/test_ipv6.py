"""Networks created with --ipv6: dual-stack endpoints, IPv6 traffic on the
bridge, AAAA answers of the embedded DNS, NAT66 to another host, the ip6
nftables table, Docker's errors."""

from __future__ import annotations

import ipaddress
import random
import subprocess
import sys

import pytest

from berth.errors import ConflictError, InvalidArgumentError, UnavailableError
from berth.network.model import OPT_BRIDGE_NAME
from tests.integration.network.conftest import CLEAN_ENV, bridge_name, free_subnet, nft_tables

SERVER6 = r"""
import socket, sys
s = socket.socket(socket.AF_INET6); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1]))); s.listen(8)
print("listening", flush=True)
while True:
    c, peer = s.accept()
    c.sendall(("peer=%s\n" % peer[0]).encode())
    c.close()
"""
CLIENT6 = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
print(s.recv(200).decode().strip())
"""


def free_subnet6() -> str:
    """A random fd42:x:y:z::/64 no host route covers."""
    from berth.network.netlink import host_routes

    routes = host_routes(6)
    while True:
        x, y, z = (random.randrange(1, 0xffff) for _ in range(3))
        net = ipaddress.IPv6Network(f"fd42:{x:x}:{y:x}:{z:x}::/64")
        if not any(r.overlaps(net) for r in routes):
            return str(net)


def _net6(nm, name, **kw):
    return nm.create(name, subnet=[free_subnet(), free_subnet6()], ipv6=True,
                     options={OPT_BRIDGE_NAME: bridge_name()}, **kw)


def _serve6(box, port: int) -> None:
    p = subprocess.Popen(box._cmd(sys.executable, "-c", SERVER6, str(port)),
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=CLEAN_ENV)
    assert p.stdout.readline().strip() == b"listening"
    box.servers.append(p)


def _connect6(box, addr: str, port: int) -> str:
    p = box.run(sys.executable, "-c", CLIENT6, addr, str(port), timeout=15)
    return p.stdout.strip() if p.returncode == 0 else p.stderr.strip()[-200:]


def test_dual_stack_endpoints_and_traffic(nm, boxes):
    net = _net6(nm, "six")
    assert net.enable_ipv6 and net.gateway6 == net.subnet6.network_address + 1
    a, b = boxes("a"), boxes("b")
    ea = nm.attach("a" * 64, a.pid, "six", name="alpha")
    eb = nm.attach("b" * 64, b.pid, "six", name="beta", ip6=str(net.subnet6.network_address + 9))
    # in order after the gateway, or the one asked for
    assert ea.ip6 == net.subnet6.network_address + 2
    assert eb.ip6 == net.subnet6.network_address + 9 and eb.prefixlen6 == 64
    addrs = a.run("ip", "-6", "addr", "show", "eth0").stdout
    (line,) = [x for x in addrs.splitlines() if f"{ea.ip6}/64" in x]
    assert "tentative" not in line  # usable at once: no duplicate address detection
    assert f"default via {net.gateway6}" in a.run("ip", "-6", "route").stdout
    assert f"default via {net.gateway}" in a.run("ip", "-4", "route").stdout
    _serve6(b, 8066)
    assert _connect6(a, str(eb.ip6), 8066) == f"peer={ea.ip6}"
    p = a.run("busybox", "ping", "-6", "-c", "1", "-W", "3", str(net.gateway6))
    assert p.returncode == 0, p.stdout + p.stderr
    # the embedded DNS answers AAAA with the IPv6 address, A with the IPv4 one
    p = a.run("busybox", "nslookup", "-type=AAAA", "beta")
    assert str(eb.ip6) in p.stdout and str(eb.ip) not in p.stdout, p.stdout + p.stderr
    p = a.run("busybox", "nslookup", "-type=A", "beta")
    assert str(eb.ip) in p.stdout and str(eb.ip6) not in p.stdout, p.stdout + p.stderr
    # Docker's JSON
    info = nm.inspect(nm.get("six"))
    assert info["EnableIPv6"] is True
    assert {"Subnet": str(net.subnet6), "Gateway": str(net.gateway6)} in info["IPAM"]["Config"]
    assert info["Containers"]["a" * 64]["IPv6Address"] == f"{ea.ip6}/64"
    from berth.network.attach import network_settings

    s = network_settings(nm.paths, "a" * 64)["Networks"]["six"]
    assert (s["GlobalIPv6Address"], s["GlobalIPv6PrefixLen"], s["IPv6Gateway"]) == (
        str(ea.ip6), 64, str(net.gateway6))
    # NAT66 rules in berth's ip6 table while the network has endpoints
    assert f"ip6 {nm.table}" in {t.split(None, 1)[1] for t in nft_tables()}
    rules = subprocess.run(["nft", "list", "table", "ip6", nm.table], capture_output=True,
                           text=True).stdout
    assert f"ip6 saddr {net.subnet6} " in rules and "masquerade" in rules
    nm.release_all("a" * 64)
    nm.release_all("b" * 64)
    assert f"table ip6 {nm.table}" not in nft_tables()


def _outside_on_ipv6(outside):
    """Put the other host on IPv6 too: fdXX::1 on the host's side of its
    link, ::2 inside, its default route back through the host. Returns
    (host's address, other host's address)."""
    outer = ipaddress.IPv6Network(free_subnet6())
    host6, out6 = outer.network_address + 1, outer.network_address + 2
    subprocess.run(["ip", "-6", "addr", "add", f"{host6}/64", "dev", outside.link, "nodad"],
                   check=True)
    outside.box.run("ip", "-6", "addr", "add", f"{out6}/64", "dev", "eth0", "nodad")
    outside.box.run("ip", "-6", "route", "add", "default", "via", str(host6))
    return host6, out6


def test_nat66_to_another_host(nm, boxes, outside):
    net = _net6(nm, "six-out")
    host6, out6 = _outside_on_ipv6(outside)
    a = boxes("a")
    ea = nm.attach("a" * 64, a.pid, "six-out", name="alpha")
    assert ea.ip6 in net.subnet6
    _serve6(outside.box, 8067)
    # the other host sees the host's address, not the container's: masquerade
    assert _connect6(a, str(out6), 8067) == f"peer={host6}"
    nm.release_all("a" * 64)


def test_internal_ipv6_network_has_no_route_out(nm, boxes):
    net = _net6(nm, "six-in", internal=True)
    a = boxes("a")
    ea = nm.attach("a" * 64, a.pid, "six-in", name="alpha")
    assert ea.ip6 in net.subnet6 and ea.gateway6 is None
    assert "default" not in a.run("ip", "-6", "route").stdout
    nm.release_all("a" * 64)


@pytest.mark.parametrize("kw, err, msg", [
    ({"subnet": "fd42:1:2:3::/64"}, InvalidArgumentError, "needs --ipv6"),
    ({"ipv6": True}, UnavailableError, "non-overlapping IPv6 address pool"),
    ({"ipv6": True, "subnet": ["fd42:1:2:3::/64", "fd42:1:2:4::/64"]}, InvalidArgumentError,
     "one IPv4 and one IPv6 subnet"),
    ({"ipv6": True, "subnet": "fd42:1:2:3::/64", "gateway": "fd42:1:2:9::1"},
     InvalidArgumentError, "does not belong to subnet"),
    ({"subnet": "10.123.250.0/24", "gateway": "fd42::1"}, InvalidArgumentError,
     "no matching subnet for gateway"),
    ({"ipv6": True, "subnet": "fd42:1:2:3::/127"}, InvalidArgumentError, "too small"),
])
def test_bad_ipv6_input_changes_nothing(nm, kw, err, msg):
    before = [n.name for n in nm.list()]
    with pytest.raises(err, match=msg):
        nm.create("bad6", **kw)
    assert [n.name for n in nm.list()] == before


def test_overlapping_ipv6_subnets(nm):
    sub6 = free_subnet6()
    nm.create("six-a", subnet=sub6, ipv6=True)
    wider = str(ipaddress.IPv6Network(sub6).supernet(16))
    with pytest.raises(ConflictError, match="pool overlaps with other one on this address space"):
        nm.create("six-b", subnet=wider, ipv6=True)
    assert "six-b" not in [n.name for n in nm.list()]
    nm.remove("six-a")


def _host6() -> str:
    """A global IPv6 address of the host's own (not loopback, not link-local), or ""."""
    out = subprocess.run(["ip", "-6", "-o", "addr", "show", "scope", "global"],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        addr = line.split()[3].split("/")[0]
        if "tentative" not in line:
            return addr
    return ""


def _host_connect(addr: str, port: int, proto: str = "tcp", timeout: float = 3) -> str:
    """peer=ADDR from the server behind a published port, "" when unreachable."""
    import socket

    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    try:
        if proto == "tcp":
            with socket.create_connection((addr, port), timeout=timeout) as s:
                return s.recv(200).decode().strip()
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.sendto(b"hello", (addr, port))
            return s.recv(200).decode().strip()
    except OSError:
        return ""


UDP_SERVER6 = r"""
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.bind(("::", int(sys.argv[1])))
print("listening", flush=True)
while True:
    data, peer = s.recvfrom(4096)
    s.sendto(("peer=%s\n" % peer[0]).encode(), peer)
"""


def _free_port6(proto: str = "tcp") -> int:
    import socket

    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    while True:
        with socket.socket(socket.AF_INET, kind) as s4:
            s4.bind(("0.0.0.0", 0))
            port = s4.getsockname()[1]
            with socket.socket(socket.AF_INET6, kind) as s6:
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s6.bind(("::", port))
                except OSError:
                    continue
                return port


def test_published_ports_on_ipv6(nm, boxes, outside):
    """-p on an --ipv6 network publishes on the host's IPv6 addresses too, as
    Docker: DNAT from another host and from the host's own IPv6 address, and
    [::1] through the proxy (no DNAT from ::1); IPv4 as before; everything
    released with the container."""
    from berth.network import parse_port_spec
    from berth.network.attach import network_settings
    from tests.integration.network.conftest import dns_servers

    net = _net6(nm, "six-pub")
    host6, out6 = _outside_on_ipv6(outside)
    a = boxes("a")
    hp, hu = _free_port6(), _free_port6("udp")
    ep = nm.attach("a" * 64, a.pid, "six-pub", name="web6",
                   ports=[*parse_port_spec(f"{hp}:8080"), *parse_port_spec(f"{hu}:8081/udp")])
    _serve6(a, 8080)
    p = subprocess.Popen(a._cmd(sys.executable, "-c", UDP_SERVER6, "8081"),
                         stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=CLEAN_ENV)
    assert p.stdout.readline().strip() == b"listening"
    a.servers.append(p)
    # another host, on the host's IPv6 address: DNAT, the client's own address seen
    assert _connect6(outside.box, str(host6), hp) == f"peer={out6}"
    # the host itself: ::1 (the proxy: the container sees the bridge's address),
    # its own IPv6 addresses (DNAT in output), and IPv4 as before
    assert _host_connect("::1", hp) == f"peer={net.gateway6}"
    assert _host_connect("::1", hu, "udp") == f"peer={net.gateway6}"
    assert _host_connect(str(host6), hp) == f"peer={host6}"
    assert _host_connect(str(host6), hu, "udp") == f"peer={host6}"
    own = _host6()
    if own and own != str(host6):
        assert _host_connect(own, hp) == f"peer={own}"
    assert _host_connect("127.0.0.1", hp).startswith("peer=")
    # only the published ports
    assert _host_connect("::1", hp + 1 if hp < 65535 else hp - 1, timeout=1) == ""
    assert _host_connect(str(host6), 8080, timeout=1) == ""
    # Docker's view: 0.0.0.0 and :: for every published port
    ports = network_settings(nm.paths, "a" * 64)["Ports"]
    assert ports == {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(hp)},
                                  {"HostIp": "::", "HostPort": str(hp)}],
                     "8081/udp": [{"HostIp": "0.0.0.0", "HostPort": str(hu)},
                                  {"HostIp": "::", "HostPort": str(hu)}]}
    rules = subprocess.run(["nft", "list", "table", "ip6", nm.table], capture_output=True,
                           text=True).stdout
    assert f"dnat to [{ep.ip6}]:8080" in rules, rules
    assert len(dns_servers(nm.paths.database, b"berth.network.proxy")) == 1
    nm.release_all("a" * 64)
    assert dns_servers(nm.paths.database, b"berth.network.proxy") == []
    assert _host_connect("::1", hp, timeout=1) == ""
    assert _connect6(outside.box, str(host6), hp) != f"peer={out6}"


def test_ipv6_host_addresses_and_port_add(nm, boxes):
    """-p [::1]:P:80 serves ::1 only, -p [::]:P:80 IPv6 only; `port add` of an
    IPv6 binding on a running container starts its proxy; a host port taken
    on [::] or an IPv6 address on an IPv4-only network are refused, nothing
    published."""
    import socket

    from berth.network import parse_port_spec
    from tests.integration.network.conftest import dns_servers

    net = _net6(nm, "six-hosts")
    a = boxes("a")
    p1, p2, p3 = _free_port6(), _free_port6(), _free_port6()
    nm.attach("a" * 64, a.pid, "six-hosts", name="web",
              ports=[*parse_port_spec(f"[::1]:{p1}:8080"), *parse_port_spec(f"[::]:{p2}:8080")])
    _serve6(a, 8080)
    gw6 = str(net.gateway6)
    assert _host_connect("::1", p1) == f"peer={gw6}"
    assert _host_connect(gw6, p1, timeout=1) == ""  # ::1 only
    assert _host_connect("127.0.0.1", p1, timeout=1) == ""
    assert _host_connect(gw6, p2) == f"peer={gw6}"
    assert _host_connect("::1", p2) == f"peer={gw6}"
    assert _host_connect("127.0.0.1", p2, timeout=1) == ""  # IPv6 only
    assert sorted(str(m) for m in nm.ports("a" * 64)) == sorted(
        [f"8080/tcp -> [::1]:{p1}", f"8080/tcp -> [::]:{p2}"])
    # port add on the running container: the proxy follows
    added = nm.change_ports("a" * 64, add=parse_port_spec(f"{p3}:8080"))
    assert [m.host_port for m in added] == [p3]
    assert _host_connect("::1", p3) == f"peer={gw6}"
    assert _host_connect(gw6, p3) == f"peer={gw6}"
    assert len(dns_servers(nm.paths.database, b"berth.network.proxy")) == 1
    nm.change_ports("a" * 64, remove=parse_port_spec(f"{p3}:8080"))
    assert _host_connect("::1", p3, timeout=1) == ""
    assert _host_connect("::1", p1) == f"peer={gw6}"
    # a host port in use on [::] is refused as Docker does
    with socket.socket(socket.AF_INET6) as taken:
        taken.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        taken.bind(("::", 0))
        taken.listen(1)
        busy = taken.getsockname()[1]
        with pytest.raises(ConflictError, match=rf"listen tcp6 \[::\]:{busy}: bind: address "
                                                 "already in use"):
            nm.change_ports("a" * 64, add=parse_port_spec(f"{busy}:8080"))
    assert sorted(m.host_port for m in nm.ports("a" * 64)) == sorted([p1, p2])
    nm.release_all("a" * 64)
    assert dns_servers(nm.paths.database, b"berth.network.proxy") == []
    # an IPv6 host address needs a network with IPv6
    nm.create("four", subnet=free_subnet(), options={OPT_BRIDGE_NAME: bridge_name()})
    b = boxes("b")
    with pytest.raises(InvalidArgumentError, match="has no IPv6"):
        nm.attach("b" * 64, b.pid, "four", ports=parse_port_spec(f"[::1]:{p1}:80"))
    assert nm.endpoints("b" * 64) == []
