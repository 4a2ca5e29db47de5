"""Bad input gets Docker's errors and leaves nothing half-created; IPAM
survives a restart of the engine (a new NetworkManager on the same root)."""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess

import pytest

from berth.errors import (
    AlreadyExistsError,
    ConflictError,
    InvalidArgumentError,
    UnavailableError,
)
from berth.network import NetworkManager, parse_port_spec
from berth.network.model import OPT_BRIDGE_NAME
from tests.integration.conftest import REPO
from tests.integration.network.conftest import (
    bridge_name,
    dns_servers,
    free_subnet,
    nft_tables,
    wait_for,
)


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def _net(nm, name: str, subnet: str | None = None, **kw):
    return nm.create(name, subnet=subnet or free_subnet(),
                     options={OPT_BRIDGE_NAME: bridge_name()}, **kw)


def _nothing_created(nm, links_before: set[str], tables_before: set[str]) -> None:
    assert _links() == links_before
    assert nft_tables() == tables_before
    assert nm.store.endpoints() == []
    assert dns_servers(nm.paths.database) == []


def test_overlapping_subnets_and_duplicate_names(nm):
    n1 = _net(nm, "n1")
    half = str(list(n1.subnet.subnets())[1])
    with pytest.raises(ConflictError, match="pool overlaps with other one on this address space"):
        _net(nm, "n2", subnet=half)
    with pytest.raises(AlreadyExistsError, match="network with name n1 already exists"):
        _net(nm, "n1")
    with pytest.raises(InvalidArgumentError, match="does not belong to subnet"):
        _net(nm, "n3", gateway="10.9.9.1")
    with pytest.raises(InvalidArgumentError, match="not within subnet"):
        _net(nm, "n4", ip_range="10.9.9.0/28")
    assert sorted(n.name for n in nm.list()) == ["bridge", "n1"]


def test_address_outside_subnet_or_taken(nm, boxes):
    net = _net(nm, "n1")
    a, b = boxes("a"), boxes("b")
    links, tables = _links(), nft_tables()
    with pytest.raises(InvalidArgumentError, match="does not belong to any of this network's"):
        nm.attach("a" * 64, a.pid, "n1", ip="10.9.9.9")
    _nothing_created(nm, links, tables)
    with pytest.raises(InvalidArgumentError, match="user defined networks only"):
        nm.attach("a" * 64, a.pid, ip=str(net.gateway + 5))
    _nothing_created(nm, links, tables)
    want = str(net.subnet.network_address + 77)
    ea = nm.attach("a" * 64, a.pid, "n1", ip=want)
    assert str(ea.ip) == want
    links2, tables2 = _links(), nft_tables()
    with pytest.raises(ConflictError, match=f"address already in use: {want}"):
        nm.attach("b" * 64, b.pid, "n1", ip=want)
    with pytest.raises(ConflictError, match="address already in use"):
        nm.attach("b" * 64, b.pid, "n1", ip=str(net.gateway))
    assert _links() == links2 and nft_tables() == tables2
    assert len(nm.store.endpoints()) == 1
    nm.release_all("a" * 64)


def test_host_port_in_use(nm, boxes):
    _net(nm, "n1")
    a, b = boxes("a"), boxes("b")
    links, tables = _links(), nft_tables()
    with socket.socket() as held:
        held.bind(("0.0.0.0", 0))
        held.listen(1)
        port = held.getsockname()[1]
        with pytest.raises(ConflictError, match=f"0.0.0.0:{port}: bind: address already in use"):
            nm.attach("a" * 64, a.pid, "n1", name="web", ports=parse_port_spec(f"{port}:80"))
    _nothing_created(nm, links, tables)
    # a port another container has published
    nm.attach("a" * 64, a.pid, "n1", name="web", ports=parse_port_spec(f"{port}:80"))
    links, tables = _links(), nft_tables()
    with pytest.raises(ConflictError, match=f"bind for 0.0.0.0:{port} failed: port is already"):
        nm.attach("b" * 64, b.pid, "n1", name="other", ports=parse_port_spec(f"{port}:80"))
    assert _links() == links and nft_tables() == tables
    assert len(nm.store.endpoints()) == 1
    nm.release_all("a" * 64)


def test_remove_network_with_endpoints(nm, boxes):
    net = _net(nm, "busy")
    a = boxes("a")
    nm.attach("a" * 64, a.pid, "busy")
    with pytest.raises(ConflictError, match=f"network busy id {net.id} has active endpoints"):
        nm.remove("busy")
    assert nm.get("busy").id == net.id
    assert nm.prune() == []
    nm.release_all("a" * 64)
    assert nm.prune() == ["busy"]
    with pytest.raises(ConflictError, match="pre-defined network"):
        nm.remove("bridge")


def test_missing_nft_changes_nothing(nm, boxes, monkeypatch):
    _net(nm, "n1")
    a = boxes("a")
    links, tables = _links(), nft_tables()
    monkeypatch.setenv("BERTH_NFT", "/nonexistent/nft")
    with pytest.raises(UnavailableError, match="nft not found"):
        nm.attach("a" * 64, a.pid, "n1", ports=parse_port_spec("80"))
    _nothing_created(nm, links, tables)


def test_ipam_survives_restart_and_reuses_released(nm, boxes, workdir):
    net = _net(nm, "n1")
    a, b, c = boxes("a"), boxes("b"), boxes("c")
    ea = nm.attach("a" * 64, a.pid, "n1")
    eb = nm.attach("b" * 64, b.pid, "n1")
    first = net.subnet.network_address + 2
    assert (ea.ip, eb.ip) == (first, first + 1)
    # a second engine on the same root sees both addresses taken
    with NetworkManager(nm.paths, dns_upstreams=[]) as other:
        ec = other.attach("c" * 64, c.pid, "n1")
        assert ec.ip == first + 2
        other.detach("a" * 64, "n1")
    assert {e.ip for e in nm.store.endpoints()} == {first + 1, first + 2}
    # the released address is handed out again; nothing twice
    ea2 = nm.attach("a" * 64, a.pid, "n1")
    assert ea2.ip == first
    assert len({e.ip for e in nm.store.endpoints()}) == 3
    for cid in "abc":
        nm.release_all(cid * 64)


def test_default_subnet_avoids_host_routes(nm, outside):
    """With no subnet given, berth picks a pool no host route overlaps."""
    from berth.network.netlink import host_routes

    fresh = NetworkManager(nm.paths.__class__(nm.paths.root + "2", nm.paths.state + "2"),
                           default_bridge=bridge_name())
    try:
        net = fresh.ensure_default()
        assert not any(r.overlaps(net.subnet) for r in host_routes())
        auto = fresh.create("auto", options={OPT_BRIDGE_NAME: bridge_name()})
        assert not auto.subnet.overlaps(net.subnet)
        assert isinstance(auto.subnet, ipaddress.IPv4Network)
    finally:
        fresh.close()


def test_cli_network_commands(workdir):
    berth = os.path.join(REPO, ".venv", "bin", "berth")
    env = {**os.environ, "BERTH_ROOT": os.path.join(workdir, "cli-root"),
           "BERTH_STATE": os.path.join(workdir, "cli-state"),
           "BERTH_BRIDGE": bridge_name(), "BERTH_BRIDGE_SUBNET": free_subnet()}

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([berth, *args], env=env, capture_output=True, text=True,
                              timeout=60)

    subnet = free_subnet()
    p = run("network", "create", "--subnet", subnet, "--label", "team=a", "-o",
            f"{OPT_BRIDGE_NAME}={bridge_name()}", "--internal", "front")
    assert p.returncode == 0 and len(p.stdout.strip()) == 64, p.stderr
    p = run("network", "create", "--subnet", subnet, "other")
    assert p.returncode == 1
    assert p.stderr.startswith("Error response from daemon: invalid pool request")
    p = run("network", "ls")
    assert p.stdout.splitlines()[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert {line.split()[1] for line in p.stdout.splitlines()[1:]} == {"bridge", "front", "host", "none"}
    p = run("network", "inspect", "front")
    import json

    (doc,) = json.loads(p.stdout)
    assert doc["IPAM"]["Config"] == [{"Subnet": subnet,
                                      "Gateway": str(next(ipaddress.ip_network(subnet).hosts()))}]
    assert doc["Internal"] is True and doc["Labels"] == {"team": "a"}
    assert run("network", "ls", "-q", "--filter", "label=team=a").stdout.strip() == doc["Id"][:12]
    p = run("network", "inspect", "nosuch")
    assert p.returncode == 1 and "network nosuch not found" in p.stderr
    p = run("network", "rm", "front", "nosuch")
    assert p.returncode == 1 and p.stdout == "front\n"
    assert run("network", "prune", "-f").returncode == 0


def test_container_gone_without_release_is_collected(nm, boxes):
    """An engine killed before it released a container: the next operation
    frees the address, the ports and the DNS server."""
    net = _net(nm, "n1")
    a, b = boxes("a"), boxes("b")
    ea = nm.attach("a" * 64, a.pid, "n1", name="alpha", ports=parse_port_spec("80"))
    a.close()  # the container dies; nobody calls release_all
    # its DNS server follows it (pidfd) and the kernel then frees the netns and the veth
    assert wait_for(lambda: dns_servers(nm.paths.database) == [], 10)
    assert wait_for(lambda: not os.path.exists(f"/sys/class/net/{ea.host_veth}"), 10)
    assert nm.prune() == ["n1"]  # the stale endpoint released first, n1 is unused
    assert nm.store.endpoints() == []
    assert dns_servers(nm.paths.database) == []
    net = _net(nm, "n1", subnet=str(net.subnet))
    eb = nm.attach("b" * 64, b.pid, "n1", name="beta")
    assert eb.ip == ea.ip
    nm.release_all("b" * 64)
