"""Real traffic between namespaces on berth's bridges: by address and by
name, TCP and UDP, NAT to another host, isolation, --internal, and the
embedded DNS server's lifetime."""

from __future__ import annotations

import subprocess

from berth.network.model import OPT_BRIDGE_NAME
from tests.integration.network.conftest import bridge_name, dns_servers, free_subnet


def _net(nm, name, **kw):
    return nm.create(name, subnet=free_subnet(),
                     options={OPT_BRIDGE_NAME: bridge_name(), **kw.pop("options", {})}, **kw)


def test_same_network_by_ip_and_by_name_tcp_and_udp(nm, boxes):
    _net(nm, "front")
    a, b = boxes("a"), boxes("b")
    ea = nm.attach("a" * 64, a.pid, "front", name="alpha", aliases=("web",))
    eb = nm.attach("b" * 64, f"/proc/{b.pid}/ns/net", "front", name="beta", aliases=("db",))
    assert ea.ip != eb.ip and ea.ifname == "eth0"
    b.serve("tcp", 80)
    b.serve("udp", 53000)
    # by address
    assert a.tcp(str(eb.ip), 80) == f"peer={ea.ip}"
    assert a.udp(str(eb.ip), 53000) == f"peer={ea.ip}"
    # by name and alias through the embedded DNS (resolv.conf: 127.0.0.11)
    assert a.tcp("beta", 80) == f"peer={ea.ip}"
    assert a.udp("db", 53000) == f"peer={ea.ip}"
    p = a.run("busybox", "nslookup", "beta")
    assert p.returncode == 0 and str(eb.ip) in p.stdout, p.stdout + p.stderr
    p = a.run("busybox", "wget", "-q", "-O", "-", "http://db/")
    assert p.stdout.strip() == f"peer={ea.ip}", p.stdout + p.stderr
    p = a.run("busybox", "sh", "-c", "echo hi | busybox nc -w 3 beta 80")
    assert f"peer={ea.ip}" in p.stdout, p.stdout + p.stderr
    # the container's own id resolves too; an unknown name goes upstream
    assert str(ea.ip) in a.run("busybox", "nslookup", "a" * 12).stdout
    assert len(dns_servers(nm.paths.database)) == 2
    nm.release_all("a" * 64)
    nm.release_all("b" * 64)
    assert dns_servers(nm.paths.database) == []


def test_unknown_names_forwarded_to_upstream(nm, boxes, resolver):
    _net(nm, "fwd")
    a = boxes("a")
    nm.attach("a" * 64, a.pid, "fwd", name="alpha")
    p = a.run("busybox", "nslookup", "elsewhere.test")
    assert resolver.ANSWER in p.stdout, p.stdout + p.stderr
    assert "elsewhere.test" in resolver.questions
    nm.release_all("a" * 64)


def test_default_bridge_has_no_names(nm, boxes):
    a, b = boxes("a"), boxes("b")
    ea = nm.attach("a" * 64, a.pid, name="alpha")
    eb = nm.attach("b" * 64, b.pid, name="beta")
    assert ea.network == "bridge" and ea.ip in nm.get("bridge").subnet
    b.serve("tcp", 80)
    assert a.tcp(str(eb.ip), 80) == f"peer={ea.ip}"
    assert dns_servers(nm.paths.database) == []
    # no DNS server: nothing answers on 127.0.0.11
    p = a.run("busybox", "nslookup", "beta", timeout=30)
    assert str(eb.ip) not in p.stdout and p.returncode != 0
    nm.release_all("a" * 64)
    nm.release_all("b" * 64)


def test_nat_to_another_host(nm, boxes, outside):
    _net(nm, "out")
    a = boxes("a")
    ea = nm.attach("a" * 64, a.pid, "out", name="alpha")
    outside.box.serve("tcp", 8000)
    outside.box.serve("udp", 8001)
    # the other host sees the host's address, not the container's: masquerade
    assert a.tcp(outside.addr, 8000) == f"peer={outside.host_addr}"
    assert a.udp(outside.addr, 8001) == f"peer={outside.host_addr}"
    assert str(ea.ip) not in a.tcp(outside.addr, 8000)
    nm.release_all("a" * 64)


def test_two_networks_are_isolated(nm, boxes, outside):
    _net(nm, "n1")
    _net(nm, "n2")
    a, b, c = boxes("a"), boxes("b"), boxes("c")
    ea = nm.attach("a" * 64, a.pid, "n1", name="alpha")
    eb = nm.attach("b" * 64, b.pid, "n2", name="beta")
    ec = nm.attach("c" * 64, c.pid, "n1", name="gamma")
    b.serve("tcp", 80)
    c.serve("tcp", 80)
    assert a.tcp(str(ec.ip), 80) == f"peer={ea.ip}"  # same network: yes
    assert a.tcp(str(eb.ip), 80, timeout=1) == ""  # other network: no
    assert str(eb.ip) not in a.run("busybox", "nslookup", "beta").stdout  # nor its name
    # both still reach the outside
    outside.box.serve("tcp", 8000)
    assert b.tcp(outside.addr, 8000) == f"peer={outside.host_addr}"
    for cid in ("a", "b", "c"):
        nm.release_all(cid * 64)


def test_internal_network_has_no_route_out(nm, boxes, outside):
    _net(nm, "priv", internal=True)
    a, b = boxes("a"), boxes("b")
    ea = nm.attach("a" * 64, a.pid, "priv", name="alpha")
    eb = nm.attach("b" * 64, b.pid, "priv", name="beta")
    assert ea.gateway is None
    routes = a.run("ip", "route").stdout
    assert "default" not in routes, routes
    b.serve("tcp", 80)
    assert a.tcp("beta", 80) == f"peer={ea.ip}"
    outside.box.serve("tcp", 8000)
    assert a.tcp(outside.addr, 8000, timeout=1) == ""
    # even with a route added by hand, the forward chain drops it
    a.run("ip", "route", "add", "default", "via", str(nm.get("priv").gateway))
    assert a.tcp(outside.addr, 8000, timeout=1) == ""
    del eb
    nm.release_all("a" * 64)
    nm.release_all("b" * 64)


def test_connect_second_network_and_disconnect(nm, boxes):
    _net(nm, "n1")
    _net(nm, "n2")
    a, b = boxes("a"), boxes("b")
    nm.attach("a" * 64, a.pid, "n1", name="alpha")
    e2 = nm.attach("a" * 64, a.pid, "n2", name="alpha", ip=None, aliases=("second",))
    assert e2.ifname == "eth1"
    eb = nm.attach("b" * 64, b.pid, "n2", name="beta")
    b.serve("tcp", 80)
    assert b.run("busybox", "nslookup", "second").stdout.count(str(e2.ip)) == 1
    assert a.tcp(str(eb.ip), 80) == f"peer={e2.ip}"
    nm.detach("a" * 64, "n2")
    assert "eth1" not in a.run("ip", "-br", "link").stdout
    assert a.tcp(str(eb.ip), 80, timeout=1) == ""
    assert len(dns_servers(nm.paths.database)) == 2  # a still on n1
    nm.release_all("a" * 64)
    nm.release_all("b" * 64)


def test_bridge_and_table_exist_only_while_used(nm, boxes):
    from berth.network.netlink import link_exists
    from tests.integration.network.conftest import nft_tables

    net = _net(nm, "lazy", options={"com.docker.network.driver.mtu": "1400"})
    assert not link_exists(net.bridge)
    a = boxes("a")
    nm.attach("a" * 64, a.pid, "lazy", name="alpha")
    assert link_exists(net.bridge)
    with open(f"/sys/class/net/{net.bridge}/mtu") as f:
        assert f.read().strip() == "1400"
    assert "mtu 1400" in a.run("ip", "link", "show", "eth0").stdout
    assert f"table ip {nm.table}" in nft_tables()
    nm.release_all("a" * 64)
    assert not link_exists(net.bridge)
    assert f"table ip {nm.table}" not in nft_tables()
    p = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True)
    assert net.bridge not in p.stdout


def test_custom_gateway_and_ip_range(nm, boxes):
    import ipaddress

    subnet = ipaddress.IPv4Network(free_subnet())
    gw = str(subnet.network_address + 254)
    rng = f"{subnet.network_address + 64}/26"
    net = nm.create("custom", subnet=str(subnet), gateway=gw, ip_range=rng,
                    options={OPT_BRIDGE_NAME: bridge_name()})
    a, b = boxes("a"), boxes("b")
    ea = nm.attach("a" * 64, a.pid, "custom")
    assert str(ea.ip) == str(subnet.network_address + 64)
    assert f"default via {gw} " in a.run("ip", "route").stdout
    p = subprocess.run(["ip", "-4", "-o", "addr", "show", net.bridge], capture_output=True,
                       text=True)
    assert f"{gw}/{subnet.prefixlen}" in p.stdout
    # a static address outside the range but inside the subnet is allowed
    eb = nm.attach("b" * 64, b.pid, "custom", ip=str(subnet.network_address + 9))
    b.serve("tcp", 80)
    assert a.tcp(str(eb.ip), 80) == f"peer={ea.ip}"
    nm.release_all("a" * 64)
    nm.release_all("b" * 64)


def test_default_subnets_of_two_roots_do_not_collide(workdir, boxes, resolver):
    """Two engine roots pick their default subnet from the same pools, each
    knowing only its own networks and the routes of the moment: when the
    other root's bridge has taken it since, an unused picked subnet moves
    to a free one as the bridge is made; a subnet given explicitly does not
    move, and the attach is refused with nothing made."""
    import os

    import pytest

    from berth.errors import ConflictError
    from berth.network import NetworkManager
    from berth.network.netlink import delete_link
    from berth.paths import Paths

    ms = [NetworkManager(Paths(os.path.join(workdir, f"root{i}"), os.path.join(workdir, f"st{i}")),
                         dns_upstreams=[f"127.0.0.1:{resolver.port}"],
                         default_bridge=bridge_name()) for i in range(3)]
    try:
        nets = [m.ensure_default() for m in ms[:2]]
        assert nets[0].auto_subnet and nets[0].subnet == nets[1].subnet  # neither bridge yet
        a, b = boxes("a"), boxes("b")
        ea = ms[0].attach("a" * 64, a.pid)
        eb = ms[1].attach("b" * 64, b.pid)
        moved = ms[1].get("bridge")
        assert not moved.subnet.overlaps(nets[0].subnet) and eb.ip in moved.subnet
        assert ea.ip in nets[0].subnet
        for box, gw in ((a, nets[0].gateway), (b, moved.gateway)):
            p = box.run("busybox", "ping", "-c", "1", "-W", "3", str(gw))
            assert p.returncode == 0, p.stdout + p.stderr
        # given explicitly (BERTH_BRIDGE_SUBNET, --subnet): refused, nothing made
        ms[2].default_subnet = str(nets[0].subnet)
        c = boxes("c")
        with pytest.raises(ConflictError, match="overlaps host route"):
            ms[2].attach("c" * 64, c.pid)
        assert ms[2].endpoints("c" * 64) == [] and ms[2].get("bridge").subnet == nets[0].subnet
        assert ms[2].default_bridge not in os.listdir("/sys/class/net")
    finally:
        for m, cid in zip(ms, ("a" * 64, "b" * 64, "c" * 64), strict=True):
            m.release_all(cid)
            delete_link(m.default_bridge)
            m.close()
