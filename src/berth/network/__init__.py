"""Bridge networks, IPAM, NAT and published ports (nftables), embedded DNS.

Importing this package is cheap (stdlib only; links, addresses and routes
go through plain rtnetlink sockets in `netlink`), and nothing here is on
the runtime's path. The monitor zygote preloads it, so a container's start
helper and monitor attach and release without importing anything.

    from berth.network import NetworkManager, parse_port_spec
"""

_EXPORTS = {
    "Endpoint": "model",
    "Network": "model",
    "NetworkManager": "manager",
    "PortMapping": "model",
    "hosts_content": "files",
    "parse_port_spec": "model",
    "resolv_conf_content": "files",
}


def __getattr__(name: str) -> object:
    # lazily (PEP 562): `berth run` imports berth.network.attach, which must
    # not bring the manager, nft and DNS modules along
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'berth.network' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"berth.network.{module}"), name)


__all__ = [
    "Endpoint",
    "Network",
    "NetworkManager",
    "PortMapping",
    "hosts_content",
    "parse_port_spec",
    "resolv_conf_content",
]
