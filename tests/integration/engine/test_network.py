"""`berth run` on networks (issue 7's library wired into the engine):
user-defined network with names, published ports, release on rm."""

import os
import subprocess
import time
import urllib.request

from tests.integration.conftest import live_processes, unique


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_user_network_names_and_published_port(berth):
    links = _links()
    net = unique("brt-e")
    berth("network", "create", "--subnet", "10.123.201.0/24", net, check=True)
    try:
        berth("run", "-d", "--name", "web", "--network", net, "-p", "127.0.0.1:18181:8080",
              "busybox", "sh", "-c", "echo hello-web > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
              check=True)
        # by name through the embedded DNS (busybox wget crashes on this
        # busybox build, even on the host: nc instead)
        p = berth("run", "--rm", "--network", net, "busybox", "sh", "-c",
                  "for i in 1 2 3 4 5 6 7 8 9 10; do "
                  "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 8080 | grep hello && break; "
                  "sleep 0.3; done")
        assert p.stdout == "hello-web\n", p.stderr
        body = b""
        for _ in range(20):
            try:
                with urllib.request.urlopen("http://127.0.0.1:18181/index.html", timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.2)
        assert body == b"hello-web\n"
        assert berth("port", "web", check=True).stdout.strip() == "8080/tcp -> 127.0.0.1:18181"
        inspect = berth("inspect", "--format", "{{json .NetworkSettings.Networks}}", "web", check=True).stdout
        assert net in inspect and "10.123.201." in inspect
        berth("rm", "-f", "web", check=True)
    finally:
        berth("rm", "-f", "web")
        berth("network", "rm", net)
    # veth, bridge, DNS server and nft rules released
    assert _links() == links
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "berth" not in out


def _nft_tables() -> set[str]:
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def _zygotes(berth) -> list[int]:
    """The engine's monitor zygotes (they serve its --state)."""
    prefix = berth.state.encode() + b"/"
    return live_processes(lambda argv, _comm: any(a.endswith(b"zygote.py") for a in argv)
                          and any(a.startswith(prefix) for a in argv))


def _wait_zygote_gone(berth, timeout: float = 15) -> None:
    """The default bridge and berth's rules outlive the last container while
    the zygote lives; it leaves after BERTH_ZYGOTE_IDLE without a monitor."""
    end = time.monotonic() + timeout
    while _zygotes(berth):
        assert time.monotonic() < end, f"zygote still there: {_zygotes(berth)}"
        time.sleep(0.05)


def test_default_bridge_network_as_docker(berth):
    """No --network: the default bridge, Docker's inspect shapes, all released at rm."""
    import json

    links, tables = _links(), _nft_tables()
    berth("run", "-d", "--name", "plain", "busybox", "sleep", "60", check=True)
    s = json.loads(berth.out("inspect", "--format", "{{json .NetworkSettings}}", "plain"))
    assert berth.out("inspect", "-f", "{{.HostConfig.NetworkMode}}", "plain").strip() == "bridge"
    assert list(s["Networks"]) == ["bridge"]
    br = s["Networks"]["bridge"]
    assert s["IPAddress"] == br["IPAddress"] and s["IPAddress"].startswith("10.124.")
    assert s["Gateway"] == br["Gateway"] and s["IPPrefixLen"] == 24 == br["IPPrefixLen"]
    assert s["MacAddress"] == br["MacAddress"] and s["EndpointID"] == br["EndpointID"] != ""
    assert len(s["EndpointID"]) == 64 and int(s["EndpointID"], 16) >= 0
    # a second container reaches the first over the bridge (no names on the default bridge)
    p = berth("run", "--rm", "busybox", "ping", "-c", "1", "-W", "3", s["IPAddress"])
    assert p.returncode == 0, p.stdout + p.stderr
    bridge = berth.env["BERTH_BRIDGE"]
    assert bridge in _links()
    berth("rm", "-f", "plain", check=True)
    _wait_zygote_gone(berth)
    assert _links() == links and _nft_tables() == tables


def test_default_bridge_kept_while_zygote_lives(berth):
    """The default bridge and berth's nft table outlive the last container
    while the monitor zygote lives (a `run` then neither makes nor deletes
    them), the veth does not, and all of it is gone once the zygote leaves."""
    from berth.network.nft import table_name

    berth.env["BERTH_ZYGOTE_IDLE"] = "3"
    links, tables = _links(), _nft_tables()
    bridge = berth.env["BERTH_BRIDGE"]
    table = f"table ip {table_name(berth.root)}"
    p = berth("run", "--rm", "busybox", "cat", "/sys/class/net/eth0/ifindex")
    assert p.returncode == 0, p.stderr
    zygotes = _zygotes(berth)
    assert len(zygotes) == 1
    # kept: the bridge and the table; the veth goes (with the container's
    # network namespace, or deleted by the monitor's child: not waited for)
    assert bridge in _links() and table in _nft_tables()
    end = time.monotonic() + 2
    while os.listdir(f"/sys/class/net/{bridge}/brif") and time.monotonic() < end:
        time.sleep(0.01)
    assert os.listdir(f"/sys/class/net/{bridge}/brif") == []
    with open(f"/sys/class/net/{bridge}/ifindex") as f:
        index = f.read()
    # a second run uses the same bridge, and reaches the host through it
    gw = berth.env["BERTH_BRIDGE_SUBNET"].rsplit(".", 1)[0] + ".1"
    p = berth("run", "--rm", "busybox", "ping", "-c", "1", "-W", "3", gw)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(f"/sys/class/net/{bridge}/ifindex") as f:
        assert f.read() == index
    assert _zygotes(berth) == zygotes
    _wait_zygote_gone(berth)
    assert _links() == links and _nft_tables() == tables


def test_ipv6_network_containers(berth):
    """--ipv6: two containers talk over IPv6 (ping6, nc to httpd), inspect shows it."""
    import ipaddress
    import json

    from tests.integration.network.test_ipv6 import free_subnet6

    links, tables = _links(), _nft_tables()
    net = unique("brt-6")
    sub6 = ipaddress.IPv6Network(free_subnet6())
    berth("network", "create", "--ipv6", "--subnet", "10.123.202.0/24", "--subnet", str(sub6),
          net, check=True)
    try:
        info = json.loads(berth.out("network", "inspect", net))[0]
        assert info["EnableIPv6"] is True
        assert info["IPAM"]["Config"][1] == {"Subnet": str(sub6),
                                              "Gateway": str(sub6.network_address + 1)}
        berth("run", "-d", "--name", "web6", "--network", net, "busybox", "sh", "-c",
              "echo hello-six > /tmp/index.html; exec httpd -f -p 8080 -h /tmp", check=True)
        nets = json.loads(berth.out("inspect", "-f", "{{json .NetworkSettings.Networks}}",
                                    "web6"))
        web6 = nets[net]["GlobalIPv6Address"]
        assert web6 == str(sub6.network_address + 2)
        assert nets[net]["GlobalIPv6PrefixLen"] == 64
        assert nets[net]["IPv6Gateway"] == str(sub6.network_address + 1)
        p = berth("run", "--rm", "--network", net, "busybox", "sh", "-c",
                  f"ping -6 -c 1 -W 3 {web6} >/dev/null && echo pinged; "
                  "for i in 1 2 3 4 5 6 7 8 9 10; do "
                  f"printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 {web6} 8080 "
                  "| grep hello && break; sleep 0.3; done")
        assert p.stdout == "pinged\nhello-six\n", p.stdout + p.stderr
        berth("rm", "-f", "web6", check=True)
    finally:
        berth("rm", "-f", "web6")
        berth("network", "rm", net)
    assert _links() == links and _nft_tables() == tables


def test_published_port_on_ipv6_network(berth):
    """`run -p` on an --ipv6 network: reachable on [::1] (proxy), on the
    host's IPv6 address of the bridge (DNAT) and on 127.0.0.1; Docker's
    0.0.0.0 and [::] bindings in `port` and inspect; all gone with rm."""
    import ipaddress
    import json
    import socket

    from tests.integration.network.test_ipv6 import _free_port6, free_subnet6

    links, tables = _links(), _nft_tables()
    net = unique("brt-p6")
    sub6 = ipaddress.IPv6Network(free_subnet6())
    gw6 = str(sub6.network_address + 1)
    port = _free_port6()
    berth("network", "create", "--ipv6", "--subnet", "10.123.204.0/24", "--subnet", str(sub6),
          net, check=True)
    try:
        berth("run", "-d", "--name", "web6p", "--network", net, "-p", f"{port}:8080",
              "busybox", "sh", "-c",
              "echo hello-v6 > /tmp/index.html; exec httpd -f -p 8080 -h /tmp", check=True)

        def get(host: str) -> bytes:
            for _ in range(30):
                try:
                    with urllib.request.urlopen(f"http://{host}:{port}/index.html",
                                                timeout=2) as r:
                        return r.read()
                except OSError:
                    time.sleep(0.2)
            return b""

        assert get("[::1]") == b"hello-v6\n"
        assert get(f"[{gw6}]") == b"hello-v6\n"
        assert get("127.0.0.1") == b"hello-v6\n"
        assert berth.out("port", "web6p").splitlines() == [
            f"8080/tcp -> 0.0.0.0:{port}", f"8080/tcp -> [::]:{port}"]
        ports = json.loads(berth.out("inspect", "-f", "{{json .NetworkSettings.Ports}}",
                                     "web6p"))
        assert ports == {"8080/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)},
                                      {"HostIp": "::", "HostPort": str(port)}]}
        berth("rm", "-f", "web6p", check=True)
        with socket.socket(socket.AF_INET6) as s:
            s.settimeout(1)
            assert s.connect_ex(("::1", port)) != 0
    finally:
        berth("rm", "-f", "web6p")
        berth("network", "rm", net)
    assert _links() == links and _nft_tables() == tables


def test_ipv6_bad_input(berth):
    before = berth.out("network", "ls", "-q")
    p = berth("network", "create", "--subnet", "fd42:1:2:3::/64", unique("n"))
    assert p.returncode == 1 and "--ipv6" in p.stderr, p.stderr
    p = berth("network", "create", "--ipv6", unique("n"))
    assert p.returncode == 1 and p.stderr == (
        "Error response from daemon: could not find an available, non-overlapping IPv6 "
        "address pool among the defaults to assign to the network\n")
    assert berth.out("network", "ls", "-q") == before


def test_predefined_networks_as_docker(berth):
    """`network ls` lists bridge, host and none (drivers bridge, host, null)
    as Docker does; host and none inspect, and refuse removal."""
    import json

    rows = [line.split() for line in berth.out("network", "ls").splitlines()]
    assert rows[0] == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
    assert {tuple(r[1:]) for r in rows[1:]} >= {("bridge", "bridge", "local"), ("host", "host", "local"),
                                                ("none", "null", "local")}
    none_id = berth.out("network", "ls", "-q", "--filter", "driver=null").strip()
    assert len(none_id) == 12
    assert berth.out("network", "ls", "--filter", "type=builtin", "--format", "{{.Name}}").split() == [
        "bridge", "host", "none"]
    doc = json.loads(berth.out("network", "inspect", "none", "host"))
    assert [(d["Name"], d["Driver"]) for d in doc] == [("none", "null"), ("host", "host")]
    assert doc[0]["Id"].startswith(none_id) and len(doc[0]["Id"]) == 64
    for name in ("host", "none"):
        p = berth("network", "rm", name)
        assert p.returncode == 1
        assert p.stderr == f"Error response from daemon: {name} is a pre-defined network and cannot be removed\n"


def test_static_ipv6_address(berth):
    """--ip6 on a --ipv6 network, as docker run --ip6; refused on the default
    bridge and outside the network's IPv6 subnet, with nothing created."""
    import ipaddress
    import json

    from tests.integration.network.test_ipv6 import free_subnet6

    links, tables = _links(), _nft_tables()
    net = unique("brt-s6")
    sub6 = ipaddress.IPv6Network(free_subnet6())
    want = str(sub6.network_address + 0x99)
    berth("network", "create", "--ipv6", "--subnet", "10.123.203.0/24", "--subnet", str(sub6),
          net, check=True)
    try:
        p = berth("run", "--rm", "--network", net, "--ip6", want, "busybox", "ip", "-6", "addr", "show", "eth0")
        assert p.returncode == 0 and f"inet6 {want}/64" in p.stdout, p.stdout + p.stderr
        before = berth.out("ps", "-aq")
        p = berth("run", "--rm", "--ip6", want, "busybox", "true")
        assert p.returncode == 125
        assert "user specified ip address is supported on user defined networks only" in p.stderr
        p = berth("run", "--rm", "--network", net, "--ip6", "fd00:dead::1", "busybox", "true")
        assert p.returncode == 125 and "fd00:dead::1" in p.stderr, p.stderr
        assert berth.out("ps", "-aq") == before
        doc = json.loads(berth.out("network", "inspect", net))[0]
        assert doc["Containers"] == {}
    finally:
        berth("network", "rm", net)
    assert _links() == links and _nft_tables() == tables


def test_two_roots_have_their_own_default_bridge(berth, workdir, busybox_template):
    """Engines on different --root get different default bridges (berth0 is
    the default root's; others berth-<8 hex of the root>) and nft tables, so
    both run bridge containers at once, and one releasing its bridge leaves
    the other's alone."""
    import json

    from berth.network.model import default_bridge_name
    from berth.network.nft import table_name
    from tests.integration.engine.conftest import _make, free_subnet

    links, tables = _links(), _nft_tables()
    os.makedirs(os.path.join(workdir, "second"))
    other = _make(os.path.join(workdir, "second"), busybox_template, "berth")
    engines = [berth, other]
    try:
        for b in engines:
            del b.env["BERTH_BRIDGE"]  # the bridge name each root derives
        other.env["BERTH_BRIDGE_SUBNET"] = free_subnet()
        while other.env["BERTH_BRIDGE_SUBNET"] == berth.env["BERTH_BRIDGE_SUBNET"]:
            other.env["BERTH_BRIDGE_SUBNET"] = free_subnet()
        bridges = [default_bridge_name(b.root) for b in engines]
        assert bridges[0] != bridges[1] and "berth0" not in bridges
        assert all(n not in links for n in bridges)  # nothing of the tests' shared
        ips = []
        for b in engines:
            b("run", "-d", "--name", "keep", "busybox", "sleep", "60", check=True)
            s = json.loads(b.out("inspect", "--format", "{{json .NetworkSettings}}", "keep"))
            ips.append(s["IPAddress"])
            doc = json.loads(b.out("network", "inspect", "bridge"))[0]
            assert doc["Options"]["com.docker.network.bridge.name"] == default_bridge_name(b.root)
        now = _links()
        assert set(bridges) <= now
        for b, ip, gw in zip(engines, ips, bridges, strict=True):
            # each container on its own root's bridge
            assert len(os.listdir(f"/sys/class/net/{gw}/brif")) == 1
            p = b("exec", "keep", "ip", "route")
            gw_ip = b.env["BERTH_BRIDGE_SUBNET"].rsplit(".", 1)[0] + ".1"
            assert f"default via {gw_ip}" in p.stdout, p.stdout + p.stderr
            assert ip.startswith(b.env["BERTH_BRIDGE_SUBNET"].rsplit(".", 1)[0] + ".")
        assert {f"table ip {table_name(b.root)}" for b in engines} <= _nft_tables()
        # the first engine lets go of its container and bridge: the second's
        # container keeps its network (reaches its gateway, its table intact)
        before = subprocess.run(["nft", "list", "table", "ip", table_name(other.root)],
                                capture_output=True, text=True).stdout
        berth("rm", "-f", "keep", check=True)
        _wait_zygote_gone(berth)
        assert bridges[0] not in _links() and bridges[1] in _links()
        assert f"table ip {table_name(berth.root)}" not in _nft_tables()
        gw_ip = other.env["BERTH_BRIDGE_SUBNET"].rsplit(".", 1)[0] + ".1"
        p = other("exec", "keep", "ping", "-c", "1", "-W", "3", gw_ip)
        assert p.returncode == 0, p.stdout + p.stderr
        assert subprocess.run(["nft", "list", "table", "ip", table_name(other.root)],
                              capture_output=True, text=True).stdout == before
        other("rm", "-f", "keep", check=True)
        _wait_zygote_gone(other)
    finally:
        for b in engines:
            b.cleanup()
            _wait_zygote_gone(b)
    assert _links() == links and _nft_tables() == tables
