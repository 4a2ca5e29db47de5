"""Bridge networks, IPAM, NAT and published ports (nftables), embedded DNS.

Importing this package is cheap (stdlib only; links, addresses and routes
go through plain rtnetlink sockets in `netlink`), and nothing here is on
the runtime's path. The monitor zygote preloads it, so a container's start
helper and monitor attach and release without importing anything.

    from berth.network import NetworkManager, parse_port_spec
"""

from berth.network.files import hosts_content, resolv_conf_content
from berth.network.manager import NetworkManager
from berth.network.model import Endpoint, Network, PortMapping, parse_port_spec

__all__ = [
    "Endpoint",
    "Network",
    "NetworkManager",
    "PortMapping",
    "hosts_content",
    "parse_port_spec",
    "resolv_conf_content",
]
