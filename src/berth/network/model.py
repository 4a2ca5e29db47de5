"""Network values and pure parsers: port specs, subnets, Docker's option names.

Nothing here does I/O, so it is unit-tested without root.
"""

from __future__ import annotations

from berth.errors import InvalidArgumentError
from berth.paths import DEFAULT_ROOT
from berth.structs import dataclass, field  # not dataclasses: model is on `berth run`'s path

TYPE_CHECKING = False  # ipaddress (~2 ms) is imported where it is used: `berth run`
if TYPE_CHECKING:     # of a container with no -p or --ip needs none of it
    import ipaddress

DEFAULT_NETWORK = "bridge"
DEFAULT_BRIDGE = "berth0"  # the default root's; other roots: default_bridge_name
OPT_BRIDGE_NAME = "com.docker.network.bridge.name"
OPT_MTU = "com.docker.network.driver.mtu"
DEFAULT_MTU = 1500
PROTOCOLS = ("tcp", "udp")


@dataclass(frozen=True)
class PortMapping:
    """One published port: host_ip:host_port/proto -> container_port."""

    container_port: int
    host_port: int
    proto: str = "tcp"
    # "" = every host address (Docker's 0.0.0.0, and [::] on an --ipv6
    # network); "::" every IPv6 one; otherwise one IPv4 or IPv6 address
    host_ip: str = ""
    # `-p 8000-8010:80`: host_port..host_port_end are candidates, the first free is taken
    host_port_end: int = 0

    @property
    def key(self) -> str:
        return f"{self.container_port}/{self.proto}"

    @property
    def ipv6_host(self) -> bool:
        """Published on IPv6 host addresses only ([::], [::1], ...)."""
        return ":" in self.host_ip

    def host_addresses(self, ipv6: bool) -> list[str]:
        """The host addresses as Docker shows them (HostIp), on an endpoint
        with (`ipv6`) or without an IPv6 address."""
        if not self.host_ip:
            return ["0.0.0.0", "::"] if ipv6 else ["0.0.0.0"]
        return [self.host_ip]

    def __str__(self) -> str:
        return f"{self.key} -> {join_host_port(self.host_ip or '0.0.0.0', self.host_port)}"


def join_host_port(host: str, port: int | str) -> str:
    """Go's net.JoinHostPort, as docker prints a binding: [::1]:8080."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Network:
    id: str
    name: str
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    bridge: str
    ip_range: ipaddress.IPv4Network | None = None
    internal: bool = False
    mtu: int = DEFAULT_MTU
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, str] = field(default_factory=dict)
    created: str = ""
    # `--ipv6`: dual stack, the IPv6 subnet given with --subnet
    subnet6: ipaddress.IPv6Network | None = None
    gateway6: ipaddress.IPv6Address | None = None
    ip_range6: ipaddress.IPv6Network | None = None
    # the IPv4 subnet was picked by berth, not given: it may move while the
    # network has no endpoint (another engine's bridge took it meanwhile)
    auto_subnet: bool = False

    @property
    def enable_ipv6(self) -> bool:
        return self.subnet6 is not None

    @property
    def is_default(self) -> bool:
        return self.name == DEFAULT_NETWORK

    @property
    def has_dns(self) -> bool:
        """Docker: embedded DNS on user-defined networks only."""
        return not self.is_default


@dataclass(frozen=True)
class Endpoint:
    """A container's attachment to one network."""

    id: str
    network_id: str
    network: str
    container_id: str
    ip: ipaddress.IPv4Address
    prefixlen: int
    gateway: ipaddress.IPv4Address | None
    mac: str
    ifname: str
    host_veth: str
    aliases: tuple[str, ...] = ()
    name: str = ""
    ports: tuple[PortMapping, ...] = ()
    ip6: ipaddress.IPv6Address | None = None
    prefixlen6: int = 0
    gateway6: ipaddress.IPv6Address | None = None

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"

    @property
    def cidr6(self) -> str:
        return f"{self.ip6}/{self.prefixlen6}" if self.ip6 is not None else ""


def _port_range(text: str, what: str, spec: str) -> tuple[int, int]:
    lo, _, hi = text.partition("-")
    try:
        a, b = int(lo), int(hi or lo)
    except ValueError:
        raise InvalidArgumentError(f"invalid {what} port in '{spec}'")
    if not (1 <= a <= 65535 and 1 <= b <= 65535) or b < a:
        raise InvalidArgumentError(f"invalid range specified for {what} port: {text}")
    return a, b


def parse_port_spec(spec: str) -> list[PortMapping]:
    """`[ip:][host[-end]:]container[-end][/proto]` as `docker run -p`; host
    port 0 means "pick one". Ranges expand to one mapping per port."""
    body, _, proto = spec.strip().partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgumentError(f"invalid proto: {proto}")
    import ipaddress

    host_ip = ""
    if body.startswith("["):  # an IPv6 host address: [::1]:8080:80, [::]::80
        addr, sep, body = body[1:].partition("]:")
        if not sep or not body:
            raise InvalidArgumentError(f"invalid port format '{spec}'")
        try:
            if "%" in addr:
                raise ValueError(addr)  # no zone: a published port is on every link
            host_ip = str(ipaddress.IPv6Address(addr))
        except ValueError:
            raise InvalidArgumentError(f"invalid ip address: {addr}")
        parts = [host_ip, *body.split(":")]
        if len(parts) != 3:
            raise InvalidArgumentError(f"invalid port format '{spec}'")
    else:
        parts = body.split(":")
        if len(parts) > 3 or not parts[-1]:
            raise InvalidArgumentError(f"invalid port format '{spec}'")
        host_ip = parts[0] if len(parts) == 3 else ""
        if host_ip:
            try:
                ipaddress.IPv4Address(host_ip)
            except ValueError:
                raise InvalidArgumentError(f"invalid ip address: {host_ip}")
    host = parts[-2] if len(parts) >= 2 else ""
    cont = parts[-1]
    if not cont:
        raise InvalidArgumentError(f"invalid port format '{spec}'")
    # "" is every address: 0.0.0.0 and, on a network with IPv6, [::] too
    if host_ip == "0.0.0.0":
        host_ip = ""
    c_lo, c_hi = _port_range(cont, "container", spec)
    if not host:
        return [PortMapping(p, 0, proto, host_ip) for p in range(c_lo, c_hi + 1)]
    h_lo, h_hi = _port_range(host, "host", spec)
    n = c_hi - c_lo + 1
    if h_hi - h_lo + 1 != n:
        if n == 1:  # a host range for one container port: Docker takes the first free
            return [PortMapping(c_lo, h_lo, proto, host_ip, host_port_end=h_hi)]
        raise InvalidArgumentError(f"invalid ranges specified for container and host ports: {spec}")
    return [PortMapping(c_lo + i, h_lo + i, proto, host_ip) for i in range(n)]


def parse_subnet(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An IPv4 or IPv6 subnet (`--subnet`, `--ip-range`)."""
    import ipaddress

    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise InvalidArgumentError(f"invalid subnet {text}: invalid CIDR address")
    if net.prefixlen > (30 if net.version == 4 else 126):
        raise InvalidArgumentError(f"invalid subnet {text}: too small for a bridge network")
    return net


def parse_address(text: str, what: str = "ip address") -> ipaddress.IPv4Address:
    import ipaddress

    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgumentError(f"invalid {what}: {text}")


def parse_address6(text: str, what: str = "ip address") -> ipaddress.IPv6Address:
    import ipaddress

    try:
        return ipaddress.IPv6Address(text)
    except ValueError:
        raise InvalidArgumentError(f"invalid {what}: {text}")


_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME_CHARS = _ALNUM | frozenset("_.-")


def check_network_name(name: str) -> None:
    """[a-zA-Z0-9][a-zA-Z0-9_.-]* (without re, which `berth run` does not import)."""
    if not name or name[0] not in _ALNUM or not set(name) <= _NAME_CHARS:
        raise InvalidArgumentError(
            f"invalid network name \"{name}\", only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )


def check_bridge_name(name: str) -> None:
    if not (1 <= len(name) <= 15) or not set(name) <= _NAME_CHARS:
        raise InvalidArgumentError(f"invalid bridge name {name!r}: 1 to 15 of [a-zA-Z0-9_.-]")


def parse_mtu(text: str) -> int:
    try:
        mtu = int(text)
    except ValueError:
        raise InvalidArgumentError(f"invalid mtu {text!r}")
    if not 68 <= mtu <= 65535:
        raise InvalidArgumentError(f"invalid mtu {mtu}: must be between 68 and 65535")
    return mtu


def default_bridge_name(root: str) -> str:
    """The default network's bridge for engine root `root`: `berth0` for the
    default root (/var/lib/berth, as Docker's docker0), `berth-` and 8 hex
    digits of the root's SHA-1 for any other, so engines on different roots
    never share a bridge (stable per root, within the 15 characters of an
    interface name)."""
    if root.rstrip("/") == DEFAULT_ROOT:
        return DEFAULT_BRIDGE
    import hashlib

    return "berth-" + hashlib.sha1(root.rstrip("/").encode()).hexdigest()[:8]


def mac_for(ip: ipaddress.IPv4Address) -> str:
    """Docker's scheme: 02:42 followed by the IPv4 address."""
    b = ip.packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)
