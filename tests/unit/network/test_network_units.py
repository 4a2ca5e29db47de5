"""Pure parts of berth.network: port specs, the nftables ruleset, DNS
messages, /etc files, and IPAM against a temporary database (no root)."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from berth.errors import AlreadyExistsError, ConflictError, InvalidArgumentError
from berth.network import nft
from berth.network.dns import build_answer, parse_question
from berth.network.files import hosts_content, resolv_conf_content
from berth.network.model import Network, PortMapping, parse_port_spec
from berth.network.store import NetworkStore


@pytest.mark.parametrize("spec,want", [
    ("80", [PortMapping(80, 0)]),
    ("8080:80", [PortMapping(80, 8080)]),
    ("127.0.0.1:8080:80/udp", [PortMapping(80, 8080, "udp", "127.0.0.1")]),
    ("127.0.0.1::80", [PortMapping(80, 0, "tcp", "127.0.0.1")]),
    ("0.0.0.0:1:2", [PortMapping(2, 1)]),
    ("8000-8001:80-81", [PortMapping(80, 8000), PortMapping(81, 8001)]),
    ("8000-8010:80", [PortMapping(80, 8000, host_port_end=8010)]),
    ("80-81", [PortMapping(80, 0), PortMapping(81, 0)]),
    ("[::1]:8080:80", [PortMapping(80, 8080, "tcp", "::1")]),
    ("[::]::53/udp", [PortMapping(53, 0, "udp", "::")]),
    ("[fd42:0::0:1]:1-2:3-4", [PortMapping(3, 1, "tcp", "fd42::1"),
                               PortMapping(4, 2, "tcp", "fd42::1")]),
])
def test_parse_port_spec(spec, want):
    assert parse_port_spec(spec) == want


@pytest.mark.parametrize("spec,msg", [
    ("80/sctp", "invalid proto"),
    ("1.2.3:80:80", "invalid ip address"),
    ("8000-8002:80-81", "invalid ranges"),
    ("70000:80", "invalid range specified for host port"),
    ("a:b:c:d", "invalid port format"),
    ("80-79", "invalid range"),
    ("[::1]:80", "invalid port format"),
    ("[::1:80:80", "invalid port format"),
    ("[::g]:80:80", "invalid ip address"),
    ("[fe80::1%eth0]:80:80", "invalid ip address"),
    ("::1:80:80", "invalid port format"),
])
def test_parse_port_spec_errors(spec, msg):
    with pytest.raises(InvalidArgumentError, match=msg):
        parse_port_spec(spec)


def test_ruleset_shape():
    br = [nft.BridgeRules("brt-a", ipaddress.IPv4Network("10.1.0.0/24"), False),
          nft.BridgeRules("brt-b", ipaddress.IPv4Network("10.2.0.0/24"), True)]
    dn = [nft.DnatRule("brt-a", "tcp", "", 8080, "10.1.0.2", 80)]
    cmds = nft.ruleset("t", br, dn)
    assert cmds[0] == {"add": {"table": {"family": "ip", "name": "t"}}}
    assert cmds[1] == {"flush": {"table": {"family": "ip", "name": "t"}}}
    rules = [c["add"]["rule"] for c in cmds if "rule" in c.get("add", {})]
    by_chain: dict[str, list] = {}
    for r in rules:
        by_chain.setdefault(r["chain"], []).append(r["expr"])
    (dnat,) = by_chain["ports"]
    assert dnat[-1] == {"dnat": {"addr": "10.1.0.2", "port": 80}}
    # masquerade for the non-internal network only; loopback masquerade where ports are
    post = by_chain["postrouting"]
    assert sum(1 for e in post if "10.2.0.0" in str(e) and "masquerade" in str(e)) == 0
    assert any("127.0.0.0" in str(e) for e in post)
    # isolation both ways plus the internal network kept in
    fwd = by_chain["forward"]
    assert len(fwd) == 4
    assert nft.table_name("/var/lib/berth") == "berth"
    assert nft.table_name("/tmp/x").startswith("berth_")


def _query(name: str, qtype: int = 1) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + q + struct.pack("!HH", qtype, 1)


def test_dns_answer():
    msg = _query("web.local")
    q = parse_question(msg)
    assert q is not None and q.name == "web.local" and q.qtype == 1
    ans = build_answer(msg, q, ["10.1.0.2", "10.1.0.3"])
    ident, flags, qd, an = struct.unpack("!HHHH", ans[:8])
    assert (ident, qd, an) == (0x1234, 1, 2) and flags & 0x8000 and flags & 0x0F == 0
    assert ans.endswith(ipaddress.IPv4Address("10.1.0.3").packed)
    aaaa = _query("web", 28)
    q6 = parse_question(aaaa)
    assert struct.unpack("!H", build_answer(aaaa, q6, ["10.1.0.2"])[6:8])[0] == 0
    assert parse_question(b"\x00" * 5) is None
    assert parse_question(build_answer(msg, q, [])) is None  # a response is no question


def test_files(tmp_path):
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\nnameserver 10.0.0.1\nsearch example.org\n")
    assert resolv_conf_content(embedded_dns=True, host_resolv_conf=str(host)) == (
        "nameserver 127.0.0.11\nsearch example.org\noptions ndots:0\n")
    assert resolv_conf_content(embedded_dns=False, host_resolv_conf=str(host)) == (
        "nameserver 10.0.0.1\nsearch example.org\n")
    assert resolv_conf_content(embedded_dns=False, dns=["1.1.1.1"], dns_search=["a"],
                               dns_options=["rotate"], host_resolv_conf=str(host)) == (
        "nameserver 1.1.1.1\nsearch a\noptions rotate\n")
    h = hosts_content("box", [], ["db:10.0.0.9", "x=10.0.0.8"])
    assert "10.0.0.9\tdb\n" in h and "10.0.0.8\tx\n" in h and h.startswith("127.0.0.1\tlocalhost")


def _network(name: str, subnet: str, **kw) -> Network:
    net = ipaddress.IPv4Network(subnet)
    return Network(id=name * 8, name=name, subnet=net, gateway=next(net.hosts()),
                   bridge=f"brt-{name}", created="t", **kw)


def test_ipam(tmp_path):
    s = NetworkStore(str(tmp_path / "db"))
    n = _network("a", "10.5.0.0/29", ip_range=ipaddress.IPv4Network("10.5.0.4/30"))
    s.insert_network(n)
    with pytest.raises(ConflictError):
        s.insert_network(_network("b", "10.5.0.0/24"))
    with pytest.raises(AlreadyExistsError):
        s.insert_network(_network("a", "10.6.0.0/24"))

    def alloc(cid: str, ip: str | None = None):
        return s.allocate(n, cid, ip=ipaddress.IPv4Address(ip) if ip else None, mac=None,
                          ifname="eth0", host_veth=f"veth{cid}", aliases=(), name=cid,
                          netns="/x")

    eps = [alloc(c) for c in "pqr"]
    assert [str(e.ip) for e in eps] == ["10.5.0.4", "10.5.0.5", "10.5.0.6"]
    assert all(len(e.id) == 64 for e in eps) and len({e.id for e in eps}) == 3  # Docker's EndpointID
    with pytest.raises(ConflictError, match="no available ip"):
        alloc("s")  # .7 is the broadcast address
    with pytest.raises(ConflictError, match="address already in use"):
        alloc("t", "10.5.0.5")
    assert str(alloc("u", "10.5.0.2").ip) == "10.5.0.2"  # static: whole subnet, not the range
    s.release(eps[1].id)
    assert str(alloc("v").ip) == "10.5.0.5"
    s.close()
    again = NetworkStore(str(tmp_path / "db"))
    assert sorted(str(e.ip) for e in again.endpoints()) == [
        "10.5.0.2", "10.5.0.4", "10.5.0.5", "10.5.0.6"]
    again.close()


def test_start_request_from_docker_fields():
    from berth.network.attach import mappings, port_bindings, start_request

    bindings, exposed = port_bindings(["8080:80", "127.0.0.1::53/udp"])
    assert bindings == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}],
                        "53/udp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    assert exposed == {"80/tcp": {}, "53/udp": {}}
    assert mappings(bindings) == [PortMapping(80, 8080), PortMapping(53, 0, "udp", "127.0.0.1")]
    # -P: every exposed port not bound already, on a random host port
    assert mappings({}, {"443/tcp": {}}, publish_all=True) == [PortMapping(443, 0)]
    req = start_request({"NetworkMode": "default", "PortBindings": bindings, "Dns": ["1.1.1.1"],
                         "ExtraHosts": ["db:10.0.0.9"]},
                        {"Hostname": "web"}, "/web",
                        {"default": {"Aliases": ["front"]},
                         "back": {"IPAMConfig": {"IPv4Address": "10.9.0.5"}}})
    assert [n["name"] for n in req["networks"]] == ["bridge", "back"]
    assert req["networks"][0]["aliases"] == ["front"]
    assert req["networks"][1]["ip"] == "10.9.0.5"
    assert req["name"] == "web" and req["dns"] == ["1.1.1.1"]
    assert len(req["ports"]) == 2 and req["ports"][0]["host_port"] == 8080
    for mode in ("none", "host", "container:abc"):
        assert start_request({"NetworkMode": mode}, {}, "x") is None


def test_dns_server_answers_and_forwards_on_loopback():
    """The serving loop on 127.0.0.1 sockets (no namespaces): local names over
    UDP and TCP, other names forwarded to an upstream, answers matched by id."""
    import os
    import socket
    import threading

    from berth.network.dns import Server

    def udp() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        return s

    upstream_server = udp()

    def fake_upstream() -> None:
        msg, peer = upstream_server.recvfrom(4096)
        upstream_server.sendto(build_answer(msg, parse_question(msg), ["192.0.2.77"]), peer)

    threading.Thread(target=fake_upstream, daemon=True).start()
    listen_udp, forward = udp(), udp()
    listen_tcp = socket.socket()
    listen_tcp.bind(("127.0.0.1", 0))
    listen_tcp.listen(4)
    r, w = os.pipe()
    srv = Server(listen_udp, listen_tcp, forward, [upstream_server.getsockname()],
                 lambda name: ["10.1.0.2"] if name == "web" else [], r)
    t = threading.Thread(target=srv.serve, daemon=True)
    t.start()
    client = udp()
    client.settimeout(5)
    client.sendto(_query("web"), listen_udp.getsockname())
    assert client.recv(4096).endswith(ipaddress.IPv4Address("10.1.0.2").packed)
    client.sendto(_query("example.test"), listen_udp.getsockname())
    ans = client.recv(4096)
    assert ans[:2] == b"\x12\x34"  # the client's own id, not the forwarder's
    assert ans.endswith(ipaddress.IPv4Address("192.0.2.77").packed)
    with socket.create_connection(listen_tcp.getsockname(), timeout=5) as c:
        q = _query("web")
        c.sendall(struct.pack("!H", len(q)) + q)
        n = struct.unpack("!H", c.recv(2))[0]
        data = b""
        while len(data) < n:
            data += c.recv(n - len(data))
    assert data.endswith(ipaddress.IPv4Address("10.1.0.2").packed)
    os.write(w, b"x")  # the watched process "exits": the loop returns
    t.join(5)
    assert not t.is_alive()
    for s in (listen_udp, listen_tcp, forward, client, upstream_server):
        s.close()
    os.close(r)
    os.close(w)


def test_port_mapping_host_addresses():
    from berth.network.model import join_host_port

    assert PortMapping(80, 8080).host_addresses(ipv6=False) == ["0.0.0.0"]
    assert PortMapping(80, 8080).host_addresses(ipv6=True) == ["0.0.0.0", "::"]
    assert PortMapping(80, 8080, host_ip="::1").host_addresses(ipv6=True) == ["::1"]
    assert str(PortMapping(80, 8080, host_ip="::")) == "80/tcp -> [::]:8080"
    assert join_host_port("127.0.0.1", 1) == "127.0.0.1:1"


def test_default_bridge_name_per_root():
    from berth.network.model import default_bridge_name

    assert default_bridge_name("/var/lib/berth") == "berth0"
    a, b = default_bridge_name("/srv/a"), default_bridge_name("/srv/b")
    assert a != b and a.startswith("berth-") and len(a) <= 15
    assert default_bridge_name("/srv/a/") == a  # stable


def test_ruleset6_published_ports():
    br = [nft.BridgeRules("brt-a", ipaddress.IPv4Network("10.1.0.0/24"), False,
                          ipaddress.IPv6Network("fd42::/64"))]
    dn = [nft.DnatRule("brt-a", "tcp", "", 8080, "10.1.0.2", 80, "fd42::2"),
          nft.DnatRule("brt-a", "udp", "::1", 53, "10.1.0.2", 53, "fd42::2")]
    cmds = nft.ruleset("t", br, dn)
    rules = [c["add"]["rule"] for c in cmds if "rule" in c.get("add", {})]
    v4 = [r["expr"] for r in rules if r["family"] == "ip" and r["chain"] == "ports"]
    v6 = [r["expr"] for r in rules if r["family"] == "ip6" and r["chain"] == "ports"]
    # IPv4 DNAT for the "every address" mapping only; both in the ip6 table
    assert [e[-1] for e in v4] == [{"dnat": {"addr": "10.1.0.2", "port": 80}}]
    assert [e[-1] for e in v6] == [{"dnat": {"addr": "fd42::2", "port": 80}},
                                   {"dnat": {"addr": "fd42::2", "port": 53}}]
    # the output hook leaves ::1 to the proxy
    (out,) = [r["expr"] for r in rules if r["family"] == "ip6" and r["chain"] == "output"]
    assert out[0] == {"match": {"op": "!=", "left": {"payload": {"protocol": "ip6",
                                                                 "field": "daddr"}},
                                "right": "::1"}}
