"""NetworkManager: the network subsystem as the engine and the CLI see it.

    nm = NetworkManager(paths)
    nm.create("front", subnet="10.123.1.0/24")
    ep = nm.attach(cid, pid, "front", aliases=("web",), ports=parse_port_spec("8080:80"),
                   name="web1")
    ...
    nm.release_all(cid)          # on stop / rm

A network's bridge exists while the network has endpoints; berth's nftables
table exists while any network does, and is rewritten from the database as
a whole after every change that alters it (see nft.py). Every public
operation holds one file lock, so two berth processes never interleave
their kernel changes.

With `keep_default=True` (a container's monitor, forked by the monitor
zygote, see attach.keep_bridges) the default network's bridge and its rules
outlive its last container: the next `berth run` then neither creates nor
deletes a bridge, and writes no nft rule when it publishes no port. They go
when the zygote leaves (`release_unused`), or with a later last container
released with `keep_default=False`. The host end of a veth released there
is deleted by a short-lived child, so the container's exit is reported
without waiting for the kernel's RCU grace period (~15-30 ms here).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import logging
import os
import random
import secrets
import socket
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from berth.errors import (
    BerthError,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
)
from berth.network import dnsctl, nft, proxy
from berth.network.model import (
    DEFAULT_MTU,
    DEFAULT_NETWORK,
    OPT_BRIDGE_NAME,
    OPT_MTU,
    Endpoint,
    Network,
    PortMapping,
    check_bridge_name,
    check_network_name,
    default_bridge_name,
    parse_address,
    parse_address6,
    parse_mtu,
    parse_subnet,
)
from berth.network.store import NetworkStore
from berth.paths import Paths

log = logging.getLogger(__name__)

# Docker's default address pools: 172.17-31/16, then 192.168.0.0/16 in /20s
_POOLS = [ipaddress.IPv4Network(f"172.{i}.0.0/16") for i in range(17, 32)] + [
    ipaddress.IPv4Network(f"192.168.{i}.0/20") for i in range(0, 256, 16)
]
RANDOM_PORTS = range(49153, 65536)


def _values(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [v for v in value if v]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class NetworkManager:
    def __init__(
        self,
        paths: Paths,
        *,
        dns_upstreams: Sequence[str] | None = None,
        default_bridge: str | None = None,
        default_subnet: str | None = None,
        keep_default: bool = False,
        store: NetworkStore | None = None,
    ) -> None:
        self.paths = paths
        self.store = store or NetworkStore(paths.database)  # closed by close()
        self.table = nft.table_name(paths.root)
        # digest and generation of the last nft transaction (nft.start)
        self.nft_state = os.path.join(paths.root, "network.nft")
        self.keep_default = keep_default
        env = os.environ.get("BERTH_DNS_UPSTREAMS")
        self.dns_upstreams = list(dns_upstreams) if dns_upstreams is not None else (
            env.split(",") if env else None)
        self.default_bridge = (default_bridge or os.environ.get("BERTH_BRIDGE")
                               or default_bridge_name(paths.root))
        self.default_subnet = default_subnet or os.environ.get("BERTH_BRIDGE_SUBNET")

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> NetworkManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        os.makedirs(self.paths.root, exist_ok=True)
        fd = os.open(f"{self.paths.root}/network.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                     0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # networks

    def _pick_subnet(self) -> ipaddress.IPv4Network:
        from berth.network.netlink import host_routes

        taken = [n.subnet for n in self.store.networks()] + host_routes()
        for pool in _POOLS:
            if not any(pool.overlaps(t) for t in taken):
                return pool
        raise UnavailableError("create network: all predefined address pools have been "
                               "fully subnetted")

    def create(
        self,
        name: str,
        *,
        subnet: str | Sequence[str] | None = None,
        gateway: str | Sequence[str] | None = None,
        ip_range: str | Sequence[str] | None = None,
        internal: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        driver: str = "bridge",
        ipv6: bool = False,
    ) -> Network:
        """`docker network create`: validated fully before anything is recorded;
        the kernel is touched only when a container attaches. `subnet`,
        `gateway` and `ip_range` may each hold one IPv4 and (with `ipv6`) one
        IPv6 value; a gateway or range belongs to the subnet that contains it."""
        check_network_name(name)
        if driver != "bridge":
            raise NotFoundError(f"plugin \"{driver}\" not found", driver=driver)
        if name in ("host", "none"):
            raise ConflictError(f"operation is not permitted on predefined {name} network")
        options = dict(options or {})
        net_id = secrets.token_hex(32)
        bridge = options.get(OPT_BRIDGE_NAME) or (
            self.default_bridge if name == DEFAULT_NETWORK else f"br-{net_id[:12]}")
        check_bridge_name(bridge)
        mtu = parse_mtu(options[OPT_MTU]) if OPT_MTU in options else DEFAULT_MTU
        subnets = [parse_subnet(s) for s in _values(subnet)]
        v4 = [n for n in subnets if n.version == 4]
        v6 = [n for n in subnets if n.version == 6]
        if len(v4) > 1 or len(v6) > 1:
            raise InvalidArgumentError("create network: berth supports one IPv4 and one IPv6 "
                                       "subnet per network")
        if v6 and not ipv6:
            raise InvalidArgumentError(
                f"invalid subnet {v6[0]}: an IPv6 subnet needs --ipv6 (EnableIPv6)")
        if ipv6 and not v6:
            raise UnavailableError("could not find an available, non-overlapping IPv6 address "
                                   "pool among the defaults to assign to the network")
        gateways: dict[int, ipaddress.IPv4Address | ipaddress.IPv6Address] = {}
        ranges: dict[int, ipaddress.IPv4Network | ipaddress.IPv6Network] = {}
        for g in _values(gateway):
            if not subnets:
                raise InvalidArgumentError("gateway with no subnet: every ip-range or gateway "
                                           "must have a corresponding subnet")
            try:
                gw = ipaddress.ip_address(g)
            except ValueError:
                raise InvalidArgumentError(f"invalid gateway: {g}") from None
            owner = next((n for n in subnets if n.version == gw.version), None)
            if owner is None:
                raise InvalidArgumentError(f"no matching subnet for gateway {gw}")
            if gw not in owner:
                raise InvalidArgumentError(
                    f"invalid gateway {gw}: it does not belong to subnet {owner}")
            gateways[gw.version] = gw
        for r in _values(ip_range):
            if not subnets:
                raise InvalidArgumentError("ip-range with no subnet: every ip-range or gateway "
                                           "must have a corresponding subnet")
            rng = parse_subnet(r)
            owner = next((n for n in subnets if n.version == rng.version), None)
            if owner is None:
                raise InvalidArgumentError(f"no matching subnet for range {rng}")
            if not rng.subnet_of(owner):
                raise InvalidArgumentError(
                    f"invalid ip range {rng}: it is not within subnet {owner}")
            ranges[rng.version] = rng
        with self._locked():
            net = v4[0] if v4 else self._pick_subnet()
            assert isinstance(net, ipaddress.IPv4Network)
            gw4 = gateways.get(4) or next(net.hosts())
            net6 = v6[0] if v6 else None
            gw6 = gateways.get(6) or (net6.network_address + 1 if net6 is not None else None)
            network = Network(id=net_id, name=name, subnet=net, gateway=gw4,
                              bridge=bridge, ip_range=ranges.get(4), internal=internal,
                              mtu=mtu, labels=dict(labels or {}), options=options,
                              created=_now(), subnet6=net6, gateway6=gw6,
                              ip_range6=ranges.get(6), auto_subnet=not v4)
            self.store.insert_network(network)
        return network

    def ensure_default(self) -> Network:
        """The default `bridge` network (bridge berth0), made on first use with
        a subnet that collides with no host route."""
        try:
            return self.store.find_network(DEFAULT_NETWORK)
        except NotFoundError:
            pass
        try:
            return self.create(DEFAULT_NETWORK, subnet=self.default_subnet,
                               options={OPT_BRIDGE_NAME: self.default_bridge})
        except BerthError:
            with contextlib.suppress(NotFoundError):
                return self.store.find_network(DEFAULT_NETWORK)  # another engine won the race
            raise

    def get(self, ref: str) -> Network:
        if ref in ("bridge", "default"):
            return self.ensure_default()
        return self.store.find_network(ref)

    def list(self) -> list[Network]:
        self.ensure_default()
        return self.store.networks()

    def remove(self, ref: str) -> Network:
        if ref in ("host", "none", DEFAULT_NETWORK):
            raise ConflictError(f"{ref} is a pre-defined network and cannot be removed")
        nft.nft_binary()
        with self._locked():
            net = self.store.find_network(ref)
            self._collect_garbage()
            self.store.delete_network(net.id)
            self._remove_bridge_if_unused(net)
            self._sync_firewall()
        return net

    def prune(self) -> list[str]:
        self.collect_garbage()
        removed = []
        for net in self.store.networks():
            if net.is_default or self.store.endpoints(network_id=net.id):
                continue
            with contextlib.suppress(ConflictError, NotFoundError):
                self.remove(net.id)
                removed.append(net.name)
        return removed

    def inspect(self, net: Network) -> dict[str, Any]:
        """Docker's JSON for `network inspect`."""
        ipam_cfg: dict[str, str] = {"Subnet": str(net.subnet), "Gateway": str(net.gateway)}
        if net.ip_range:
            ipam_cfg["IPRange"] = str(net.ip_range)
        config = [ipam_cfg]
        if net.subnet6 is not None:
            cfg6 = {"Subnet": str(net.subnet6), "Gateway": str(net.gateway6)}
            if net.ip_range6:
                cfg6["IPRange"] = str(net.ip_range6)
            config.append(cfg6)
        containers = {
            ep.container_id: {
                "Name": ep.name,
                "EndpointID": ep.id,
                "MacAddress": ep.mac,
                "IPv4Address": ep.cidr,
                "IPv6Address": ep.cidr6,
            }
            for ep in self.store.endpoints(network_id=net.id)
        }
        options = dict(net.options)
        if net.is_default:
            options.setdefault(OPT_BRIDGE_NAME, net.bridge)
        return {
            "Name": net.name,
            "Id": net.id,
            "Created": net.created,
            "Scope": "local",
            "Driver": "bridge",
            "EnableIPv6": net.enable_ipv6,
            "IPAM": {"Driver": "default", "Options": {}, "Config": config},
            "Internal": net.internal,
            "Attachable": False,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": options,
            "Labels": dict(net.labels),
        }

    # endpoints

    def endpoints(self, container_id: str) -> list[Endpoint]:
        return self.store.endpoints(container_id=container_id)

    def attach(
        self,
        container_id: str,
        netns: int | str,
        network: str = DEFAULT_NETWORK,
        *,
        ip: str | None = None,
        ip6: str | None = None,
        aliases: Iterable[str] = (),
        ports: Iterable[PortMapping] = (),
        name: str = "",
        mac: str | None = None,
        dns: Sequence[str] = (),
    ) -> Endpoint:
        """Connect the container whose network namespace is `netns` (its pid,
        or a netns path) to `network`: an address, a veth pair, the default
        route (first network), published ports, and the embedded DNS server on
        user-defined networks. All of it, or nothing on failure."""
        from berth.network import netlink

        nft.nft_binary()  # fail before touching anything when nft is missing
        net = self.get(network)
        want_ip = parse_address(ip) if ip else None
        want_ip6 = parse_address6(ip6) if ip6 else None
        if (want_ip is not None or want_ip6 is not None) and net.is_default:
            raise InvalidArgumentError(
                "user specified ip address is supported on user defined networks only")
        if not isinstance(netns, int) and str(netns).isdigit():
            netns = int(netns)
        path = netlink.netns_path(netns)
        if not os.path.exists(path):
            raise NotFoundError(f"attach {container_id[:12]} to network {net.name}: "
                                f"network namespace {path} not found", path=path)
        ports = list(ports)
        if ports and net.internal:
            ports = []  # Docker: nothing is published from an internal network
        errors: list[str] = []
        try:
            with contextlib.ExitStack() as outer:
                with self._locked():
                    self._collect_garbage()
                    self._attach_locked(net, container_id, netns, path, want_ip, want_ip6, mac,
                                        aliases,
                                        name, ports, errors)
                    outer.callback(self._quiet, lambda: self.detach(
                        container_id, net.name, force=True), errors)
                    start_dns = net.has_dns and dnsctl.claim(self.store, container_id)
                    ep = self.store.endpoints(network_id=net.id, container_id=container_id)[0]
                if start_dns:
                    # spawned outside the lock: parallel starts on one network overlap here
                    dnsctl.start(self.store, self.paths.database, container_id, path,
                                 netns if isinstance(netns, int) else None,
                                 self._upstreams(dns))
                maps = self._proxy_maps(ep)
                if maps:
                    proxy.start(self.store, self.paths.database, container_id,
                                netns if isinstance(netns, int) else None, maps)
                outer.pop_all()
        except BaseException as exc:
            for e in errors:
                exc.add_note(f"undo: {e}")
            raise
        return ep

    def _attach_locked(self, net: Network, container_id: str, netns: int | str, path: str,
                       want_ip: ipaddress.IPv4Address | None,
                       want_ip6: ipaddress.IPv6Address | None, mac: str | None,
                       aliases: Iterable[str], name: str, ports: list[PortMapping],
                       errors: list[str]) -> Endpoint:
        from berth.network import netlink

        bridge_exists = netlink.link_exists(net.bridge)
        if not bridge_exists:
            net = self._check_routes(net)
        with contextlib.ExitStack() as undo:
            undo.callback(self._quiet, self._sync_firewall, errors)
            host_veth = "veth" + secrets.token_hex(4)[:7]
            ep = self.store.allocate(
                net, container_id, ip=want_ip, ip6=want_ip6, mac=mac, ifname="",
                host_veth=host_veth,
                aliases=aliases, name=name, netns=path)
            undo.callback(self._quiet, lambda: self.store.release(ep.id), errors)
            resolved = self._resolve_ports(ep, ports)
            self.store.set_ports(ep.id, resolved)
            if not resolved and bridge_exists and (
                    net.is_default or self.store.has_endpoints(net.id, but=ep.id)) and (
                    nft.unchanged(self.nft_state)):
                # the network has its rules, which an endpoint without ports
                # does not change, and nothing was committed since they went in
                firewall = nft.Pending(None)
            else:
                # the rules go in while the links are made (they name links, which
                # may come later); waited for before any other nft transaction
                firewall = nft.start(self._firewall_commands(), self.nft_state)
            undo.callback(self._quiet, firewall.wait, errors)
            bridge_addrs: list[Any] = [
                ipaddress.IPv4Interface(f"{net.gateway}/{net.subnet.prefixlen}")]
            addrs: list[Any] = [ipaddress.IPv4Interface(ep.cidr)]
            gateways: list[Any] = [] if net.internal else [net.gateway]
            if net.subnet6 is not None and ep.ip6 is not None:
                bridge_addrs.append(ipaddress.IPv6Interface(
                    f"{net.gateway6}/{net.subnet6.prefixlen}"))
                addrs.append(ipaddress.IPv6Interface(ep.cidr6))
                if not net.internal:
                    gateways.append(net.gateway6)
            if netlink.ensure_bridge(net.bridge, bridge_addrs, net.mtu):
                undo.callback(self._quiet, lambda: self._remove_bridge_if_unused(net), errors)
            if not net.internal:
                netlink.write_sysctl("net/ipv4/ip_forward", "1")
                if net.subnet6 is not None:
                    # as Docker with IPv6: the host routes between its links
                    netlink.write_sysctl("net/ipv6/conf/all/forwarding", "1")
            ifname = netlink.add_veth(host_veth, net.bridge, netns, addrs, gateways, net.mtu,
                                      ep.mac)
            undo.callback(self._quiet, lambda: netlink.delete_link(host_veth), errors)
            self.store.set_ifname(ep.id, ifname)
            if resolved:
                # a container reaching its own published port (hairpin NAT) comes
                # back out of the bridge port it came in by
                netlink.set_hairpin(host_veth)
            if any(p.host_ip in ("", "127.0.0.1") for p in resolved):
                # DNAT of 127.0.0.1 to a container routes a loopback source out of the
                # bridge, which the kernel drops as martian without this
                netlink.write_sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet", "1")
            firewall.wait()
            undo.pop_all()
        return ep

    def _check_routes(self, net: Network) -> Network:
        """`net` as its bridge can be made: its subnets collide with no host
        route. A subnet berth picked itself moves to a free one while the
        network has no endpoint (another engine root's bridge took it since:
        each root picks from the same pools, knowing only its own networks
        and the routes of the moment); one given with --subnet or
        BERTH_BRIDGE_SUBNET stays, and is refused."""
        from berth.network.netlink import host_routes

        for r in host_routes():
            if r.overlaps(net.subnet):
                if net.auto_subnet and not self.store.has_endpoints(net.id):
                    new = self._pick_subnet()
                    log.info("network %s: subnet %s taken by route %s, moved to %s",
                             net.name, net.subnet, r, new)
                    self.store.move_network(net.id, new, next(new.hosts()))
                    return self._check_routes(self.store.find_network(net.id))
                raise ConflictError(f"create bridge {net.bridge}: subnet {net.subnet} of network"
                                    f" {net.name} overlaps host route {r}")
        if net.subnet6 is not None:
            for r6 in host_routes(6):
                if r6.overlaps(net.subnet6):
                    raise ConflictError(f"create bridge {net.bridge}: subnet {net.subnet6} of "
                                        f"network {net.name} overlaps host route {r6}")
        return net

    @staticmethod
    def _quiet(fn: Callable[[], object], errors: list[str]) -> None:
        try:
            fn()
        except (BerthError, OSError) as exc:
            errors.append(str(exc))
            log.warning("undo: %s", exc)

    def _resolve_ports(self, ep: Endpoint, ports: Iterable[PortMapping]) -> list[PortMapping]:
        """Host ports picked for 0 and ranges, each checked free on the host."""
        taken = {(p.proto, p.host_port) for p in self.store.all_ports()}
        out: list[PortMapping] = []
        for m in ports:
            if m.host_port and not m.host_port_end:
                self._check_bindable(m.proto, m.host_ip, m.host_port, ep)
                out.append(m)
                continue
            if m.host_port_end:
                candidates = list(range(m.host_port, m.host_port_end + 1))
            else:
                start = random.choice(RANDOM_PORTS)
                candidates = list(range(start, RANDOM_PORTS.stop)) + list(
                    range(RANDOM_PORTS.start, start))
            for port in candidates:
                if (m.proto, port) in taken or any(
                        o.proto == m.proto and o.host_port == port for o in out):
                    continue
                try:
                    self._check_bindable(m.proto, m.host_ip, port, ep)
                except ConflictError:
                    continue
                out.append(PortMapping(m.container_port, port, m.proto, m.host_ip))
                break
            else:
                raise ConflictError(f"allocate host port for {m.key}: all ports are allocated")
        return out

    @staticmethod
    def _check_bindable(proto: str, host_ip: str, port: int, ep: Endpoint) -> None:
        """The host port is free on `host_ip` ("" every address: IPv4's and,
        for an endpoint with IPv6, IPv6's too)."""
        from berth.network.model import join_host_port

        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        name = ep.name or ep.container_id[:12]
        if ":" in host_ip and ep.ip6 is None:
            raise InvalidArgumentError(
                f"driver failed programming external connectivity on endpoint {name}: "
                f"cannot publish on {join_host_port(host_ip, port)}: network {ep.network} "
                "has no IPv6 (created without --ipv6)")
        addrs = [host_ip] if host_ip else ["0.0.0.0"] + (["::"] if ep.ip6 is not None else [])
        for addr in addrs:
            v6 = ":" in addr
            with socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, kind) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if v6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                try:
                    s.bind((addr, port))
                except OSError as exc:
                    where = f"listen {proto}{6 if v6 else 4} {join_host_port(addr, port)}"
                    if exc.errno == errno.EADDRNOTAVAIL:
                        raise InvalidArgumentError(
                            f"driver failed programming external connectivity on endpoint "
                            f"{name}: {where}: bind: cannot assign requested address") from exc
                    raise ConflictError(
                        f"driver failed programming external connectivity on endpoint "
                        f"{name}: {where}: bind: address already in use") from exc

    @staticmethod
    def _proxy_maps(ep: Endpoint) -> list[tuple[str, int, str, int]]:
        """What the [::1] proxy of `ep` serves (proxy.py): its ports published
        on every IPv6 address or on ::1, when it has an IPv6 address."""
        if ep.ip6 is None:
            return []
        return [(p.proto, p.host_port, str(ep.ip6), p.container_port) for p in ep.ports
                if p.host_ip in ("", "::", "::1")]

    def detach(self, container_id: str, network: str, *, force: bool = False) -> None:
        """Disconnect the container from `network`: its veth, address, ports
        and (with its last user-defined network) its DNS server go."""
        nft.nft_binary()
        with self._locked():
            net = self.store.find_network(network) if network not in (
                "bridge", "default") else self.ensure_default()
            eps = self.store.endpoints(network_id=net.id, container_id=container_id)
            if not eps:
                if force:
                    return
                raise NotFoundError(f"container {container_id[:12]} is not connected to "
                                    f"network {net.name}")
            self._detach(eps[0], net)

    def release_all(self, container_id: str) -> None:
        """Everything the container got, on stop or rm; safe to call twice."""
        if self.store.endpoints(container_id=container_id):
            nft.nft_binary()
        elif not self.store.dns_server(container_id) and not self.store.port_proxy(
                container_id):
            return  # nothing to release (a first start)
        with self._locked():
            for ep in self.store.endpoints(container_id=container_id):
                self._detach(ep, self.store.find_network(ep.network_id))
            dnsctl.stop(self.store, container_id)
            proxy.stop(self.store, container_id)

    def _detach(self, ep: Endpoint, net: Network) -> None:
        from berth.network import netlink

        last = not self.store.has_endpoints(net.id, but=ep.id)
        keep = not last or (self.keep_default and net.is_default)
        if keep and not ep.ports:
            firewall = nft.Pending(None)  # no rule names this endpoint
        else:
            # the rules without this endpoint go in while its links are deleted
            firewall = nft.start(self._firewall_commands(
                without=ep.id, dropping=() if keep else (net.id,)), self.nft_state)
        try:
            if not keep:  # the network's last endpoint: its bridge goes too, in one batch
                netlink.delete_links([ep.host_veth, net.bridge])
            elif self.keep_default:
                netlink.delete_link_later(ep.host_veth)
            else:
                netlink.delete_link(ep.host_veth)
            self.store.release(ep.id)
        except BaseException as exc:
            try:
                firewall.wait()
            except BerthError as also:
                exc.add_note(str(also))
            raise
        firewall.wait()
        if ep.ports:
            proxy.stop(self.store, ep.container_id)
        if not any(self.store.find_network(e.network_id).has_dns
                   for e in self.store.endpoints(container_id=ep.container_id)):
            dnsctl.stop(self.store, ep.container_id)

    def _remove_bridge_if_unused(self, net: Network) -> None:
        from berth.network import netlink

        if not self.store.endpoints(network_id=net.id) and not (
                self.keep_default and net.is_default):
            netlink.delete_link(net.bridge)

    def release_unused(self) -> list[str]:
        """Delete the bridges of networks without endpoints (the default one
        kept by `keep_default`) and write the rules without them; returns
        the bridges deleted. The monitor zygote calls it as it leaves."""
        from berth.network import netlink

        with self._locked():
            gone = [n.bridge for n in self.store.networks()
                    if netlink.link_exists(n.bridge)
                    and not self.store.endpoints(network_id=n.id)]
            if gone:
                netlink.delete_links(gone)
            self._sync_firewall()
        return gone

    def collect_garbage(self) -> list[str]:
        """Release endpoints whose container went without a release (its
        engine was killed, the host rebooted): the host end of a veth dies
        with the container's network namespace. Returns the containers freed."""
        with self._locked():
            return self._collect_garbage()

    def _collect_garbage(self) -> list[str]:
        from berth.network import netlink

        freed = []
        for ep in self.store.endpoints():
            if netlink.link_exists(ep.host_veth):
                continue
            log.info("release stale endpoint %s of %s", ep.host_veth, ep.container_id[:12])
            self._detach(ep, self.store.find_network(ep.network_id))
            freed.append(ep.container_id)
        return freed

    # ports

    def ports(self, container_id: str) -> list[PortMapping]:
        return [p for ep in self.store.endpoints(container_id=container_id) for p in ep.ports]

    def change_ports(self, container_id: str, add: Iterable[PortMapping] = (),
                     remove: Iterable[PortMapping] = ()) -> list[PortMapping]:
        """`berth port add/rm`: published ports of a running container changed
        in one transaction; the firewall follows or, on failure, keeps its
        previous rules. Returns the mappings added."""
        from berth.network import netlink

        nft.nft_binary()
        add, remove = list(add), list(remove)
        with self._locked():
            eps = [e for e in self.store.endpoints(container_id=container_id)
                   if not self.store.find_network(e.network_id).internal]
            if not eps:
                raise ConflictError(f"publish ports of {container_id[:12]}: container is not "
                                    "connected to a bridge network")
            ep = eps[0]
            current = {(p.proto, p.container_port, p.host_port) for p in ep.ports}
            for m in remove:
                if not any(p[0] == m.proto and p[1] == m.container_port and
                           (not m.host_port or p[2] == m.host_port) for p in current):
                    raise NotFoundError(f"unpublish {m.key} of {container_id[:12]}: "
                                        "no such port mapping")
            resolved = self._resolve_ports(ep, add)
            before = self.store.endpoints(network_id=ep.network_id, container_id=container_id)[0]
            self.store.set_ports(ep.id, resolved, remove)
            try:
                if any(p.host_ip in ("", "127.0.0.1") for p in resolved):
                    net = self.store.find_network(ep.network_id)
                    netlink.write_sysctl(f"net/ipv4/conf/{net.bridge}/route_localnet", "1")
                if resolved:
                    netlink.set_hairpin(ep.host_veth)
                self._sync_firewall()
                after = self.store.endpoints(network_id=ep.network_id,
                                             container_id=container_id)[0]
                if self._proxy_maps(after) != self._proxy_maps(before):
                    self._restart_proxy(after, self._proxy_maps(before))
            except BaseException as exc:
                # every mapping of the endpoint out, its previous ones back in
                self.store.set_ports(ep.id, before.ports, [*before.ports, *resolved])
                try:
                    self._sync_firewall()
                except BerthError as also:
                    exc.add_note(f"restore rules: {also}")
                raise
        return resolved

    def _restart_proxy(self, ep: Endpoint, old_maps: list[tuple[str, int, str, int]]) -> None:
        """The [::1] proxy of `ep` after its ports changed (the old one back on failure)."""
        netns = self.store.netns_of(ep.id)
        parts = netns.split("/")
        watch = int(parts[2]) if netns.startswith("/proc/") and parts[2].isdigit() else None
        proxy.stop(self.store, ep.container_id)
        maps = self._proxy_maps(ep)
        try:
            if maps:
                proxy.start(self.store, self.paths.database, ep.container_id, watch, maps)
        except BaseException:
            if old_maps:
                with contextlib.suppress(BerthError):
                    proxy.start(self.store, self.paths.database, ep.container_id, watch,
                                old_maps)
            raise

    # firewall

    def _sync_firewall(self) -> None:
        """Make berth's table match the database (or delete it when unused)."""
        nft.apply(self._firewall_commands(), self.nft_state)

    def _firewall_commands(self, without: str = "",
                           dropping: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The nft transaction for the database as it is, less endpoint
        `without` and networks `dropping` (their bridges are being deleted):
        the rules of every network with endpoints, and of the default
        network while its bridge is kept without any."""
        from berth.network.netlink import link_exists

        bridges, dnat = [], []
        for net in self.store.networks():
            if net.id in dropping:
                continue
            eps = [e for e in self.store.endpoints(network_id=net.id) if e.id != without]
            if not eps and not (net.is_default and link_exists(net.bridge)):
                continue
            bridges.append(nft.BridgeRules(net.bridge, net.subnet, net.internal, net.subnet6))
            for ep in eps:
                for p in ep.ports:
                    dnat.append(nft.DnatRule(net.bridge, p.proto, p.host_ip, p.host_port,
                                             str(ep.ip), p.container_port,
                                             str(ep.ip6) if ep.ip6 is not None else ""))
        if bridges:
            return nft.ruleset(self.table, bridges, dnat)
        return nft.delete_commands(self.table)  # one transaction, table or not

    # embedded DNS (its processes: dnsctl.py)

    def _upstreams(self, dns: Sequence[str]) -> list[str]:
        if dns:
            return [d if ":" in d else f"{d}:53" for d in dns]
        if self.dns_upstreams is not None:
            return list(self.dns_upstreams)
        from berth.network.dns import host_resolvers

        return [f"{h}:{p}" for h, p in host_resolvers()]
