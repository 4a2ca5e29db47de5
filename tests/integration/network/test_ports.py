"""Published ports: DNAT from another host, from the host itself on
127.0.0.1 and on its own address, random host ports, a firewall rule that
blocks a published port, and `port add/rm` on a running container."""

from __future__ import annotations

import socket
import subprocess

import pytest

from berth.errors import ConflictError, NotFoundError
from berth.network import parse_port_spec
from berth.network.model import OPT_BRIDGE_NAME
from tests.integration.network.conftest import bridge_name, free_subnet, host_address


def free_port(proto: str = "tcp") -> int:
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def host_tcp(addr: str, port: int, timeout: float = 3) -> str:
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            out = b""
            while chunk := s.recv(4096):
                out += chunk
    except OSError:
        return ""
    return out.decode().split("\r\n\r\n", 1)[-1].strip()


def _net(nm, name: str):
    return nm.create(name, subnet=free_subnet(), options={OPT_BRIDGE_NAME: bridge_name()})


def test_published_port_from_another_host_and_from_the_host(nm, boxes, outside):
    _net(nm, "pub")
    a = boxes("a")
    hp, hu = free_port(), free_port("udp")
    ep = nm.attach("a" * 64, a.pid, "pub", name="web",
                   ports=[*parse_port_spec(f"{hp}:80"), *parse_port_spec(f"{hu}:81/udp")])
    a.serve("tcp", 80)
    a.serve("udp", 81)
    # another host reaches it on the host's address, and the container sees
    # the client's own address (DNAT, no proxy)
    assert outside.box.tcp(outside.host_addr, hp) == f"peer={outside.addr}"
    assert outside.box.udp(outside.host_addr, hu) == f"peer={outside.addr}"
    # the host itself, on 127.0.0.1 and on its own addresses
    assert host_tcp("127.0.0.1", hp).startswith("peer=")
    assert host_tcp(outside.host_addr, hp).startswith("peer=")
    own = host_address()
    if own:
        assert host_tcp(own, hp).startswith("peer=")
    # only the published port: the container's other ports are not reachable
    assert outside.box.tcp(outside.host_addr, hp + 1 if hp < 65535 else hp - 1,
                           timeout=1) == ""
    # route_localnet only on this bridge
    with open(f"/proc/sys/net/ipv4/conf/{nm.get('pub').bridge}/route_localnet") as f:
        assert f.read().strip() == "1"
    assert sorted(str(m) for m in nm.ports(ep.container_id)) == sorted(
        [f"80/tcp -> 0.0.0.0:{hp}", f"81/udp -> 0.0.0.0:{hu}"])
    nm.release_all("a" * 64)
    assert outside.box.tcp(outside.host_addr, hp, timeout=1) == ""


def test_random_host_port_range_and_host_ip(nm, boxes, outside):
    _net(nm, "pub")
    a = boxes("a")
    lo = free_port()
    ep = nm.attach("a" * 64, a.pid, "pub", name="web",
                   ports=[*parse_port_spec("80"), *parse_port_spec("127.0.0.1::80"),
                          *parse_port_spec(f"{lo}-{lo}:81")])
    a.serve("tcp", 80)
    a.serve("tcp", 81)
    m_any, m_lo, m_range = nm.ports(ep.container_id)
    assert 49153 <= m_any.host_port <= 65535 and m_lo.host_ip == "127.0.0.1"
    assert m_range.host_port == lo
    assert outside.box.tcp(outside.host_addr, m_any.host_port) == f"peer={outside.addr}"
    assert host_tcp("127.0.0.1", m_lo.host_port).startswith("peer=")
    # bound to 127.0.0.1: not reachable on the host's other addresses
    assert outside.box.tcp(outside.host_addr, m_lo.host_port, timeout=1) == ""
    assert outside.box.tcp(outside.host_addr, lo) == f"peer={outside.addr}"
    nm.release_all("a" * 64)


def test_firewall_rule_blocks_published_port(nm, boxes, outside):
    """The documented way (nft.py): a drop in a chain hooked at prerouting
    before dstnat blocks the host port and the published port alike."""
    _net(nm, "pub")
    a = boxes("a")
    hp = free_port()
    nm.attach("a" * 64, a.pid, "pub", name="web", ports=parse_port_spec(f"{hp}:80"))
    a.serve("tcp", 80)
    assert outside.box.tcp(outside.host_addr, hp) == f"peer={outside.addr}"
    table = bridge_name().replace("-", "_")
    rules = (f"table inet {table} {{\n chain pre {{\n"
             f"  type filter hook prerouting priority -150;\n  tcp dport {hp} drop\n }}\n}}\n")
    subprocess.run(["nft", "-f", "-"], input=rules, text=True, check=True)
    try:
        assert outside.box.tcp(outside.host_addr, hp, timeout=1) == ""
    finally:
        subprocess.run(["nft", "delete", "table", "inet", table], check=True)
    assert outside.box.tcp(outside.host_addr, hp) == f"peer={outside.addr}"
    nm.release_all("a" * 64)


def test_port_add_and_rm_on_running_container(nm, boxes, outside):
    _net(nm, "pub")
    a, b = boxes("a"), boxes("b")
    ea = nm.attach("a" * 64, a.pid, "pub", name="web")
    hb = free_port()
    nm.attach("b" * 64, b.pid, "pub", name="other", ports=parse_port_spec(f"{hb}:80"))
    a.serve("tcp", 80)
    a.serve("tcp", 90)
    hp = free_port()
    assert outside.box.tcp(outside.host_addr, hp, timeout=1) == ""
    added = nm.change_ports(ea.container_id, add=parse_port_spec(f"{hp}:80"))
    assert [m.host_port for m in added] == [hp]
    assert outside.box.tcp(outside.host_addr, hp) == f"peer={outside.addr}"
    # a host port another container has: refused, and nothing changes
    with pytest.raises(ConflictError, match="port is already allocated"):
        nm.change_ports(ea.container_id, add=[*parse_port_spec("9"), *parse_port_spec(
            f"{hb}:90")])
    assert [m.host_port for m in nm.ports(ea.container_id)] == [hp]
    assert outside.box.tcp(outside.host_addr, hp) == f"peer={outside.addr}"
    with pytest.raises(NotFoundError):
        nm.change_ports(ea.container_id, remove=parse_port_spec("81"))
    nm.change_ports(ea.container_id, remove=parse_port_spec("80"))
    assert nm.ports(ea.container_id) == []
    assert outside.box.tcp(outside.host_addr, hp, timeout=1) == ""
    nm.release_all("a" * 64)
    nm.release_all("b" * 64)


def test_hairpin_and_container_to_published_port(nm, boxes, outside):
    """A container reaches its own published port, and another container's,
    on the host's address (DNAT back into the bridge, masqueraded)."""
    _net(nm, "pub")
    a, b = boxes("a"), boxes("b")
    hp = free_port()
    nm.attach("a" * 64, a.pid, "pub", name="web", ports=parse_port_spec(f"{hp}:80"))
    nm.attach("b" * 64, b.pid, "pub", name="client")
    a.serve("tcp", 80)
    gw = str(nm.get("pub").gateway)
    res_b = b.tcp(outside.host_addr, hp)
    res_a = a.tcp(outside.host_addr, hp)
    assert (res_a, res_b) == (f"peer={gw}", f"peer={gw}")
    nm.release_all("a" * 64)
    nm.release_all("b" * 64)
