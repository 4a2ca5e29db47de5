"""/etc/hosts and /etc/resolv.conf of a container, as Docker writes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from berth.network.dns import LISTEN_ADDR, host_resolvers
from berth.network.model import Endpoint

_HOSTS_BASE = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""

# Docker's fallback when the host has no resolver a container can reach
FALLBACK_DNS = ("8.8.8.8", "8.8.4.4")


def hosts_content(hostname: str, endpoints: Sequence[Endpoint] = (),
                  extra_hosts: Iterable[str] = ()) -> str:
    """`extra_hosts` as `--add-host name:ip` (or name=ip)."""
    out = _HOSTS_BASE
    for spec in extra_hosts:
        name, sep, ip = spec.partition(":") if "=" not in spec else spec.partition("=")
        if sep and name and ip:
            out += f"{ip.strip('[]')}\t{name}\n"
    if endpoints and hostname:
        out += f"{endpoints[0].ip}\t{hostname}\n"
        if endpoints[0].ip6 is not None:
            out += f"{endpoints[0].ip6}\t{hostname}\n"
    return out


def resolv_conf_content(*, embedded_dns: bool, dns: Sequence[str] = (),
                        dns_search: Sequence[str] = (), dns_options: Sequence[str] = (),
                        host_resolv_conf: str = "/etc/resolv.conf") -> str:
    """With the embedded DNS (user-defined networks): 127.0.0.11, which
    forwards to `dns` or the host's resolvers. Otherwise `dns` or the host's
    resolvers that are reachable from another network namespace (not loopback)."""
    search = list(dns_search)
    options = list(dns_options)
    if not search:
        try:
            with open(host_resolv_conf) as f:
                for line in f:
                    parts = line.split()
                    if parts and parts[0] == "search":
                        search = parts[1:]
        except FileNotFoundError:
            pass
    if embedded_dns:
        servers = [LISTEN_ADDR]
        if "ndots:0" not in options and not any(o.startswith("ndots:") for o in options):
            options.append("ndots:0")
    else:
        servers = list(dns) or [h for h, _ in host_resolvers(host_resolv_conf)
                                if not h.startswith("127.")] or list(FALLBACK_DNS)
    out = "".join(f"nameserver {s}\n" for s in servers)
    if search:
        out += "search " + " ".join(search) + "\n"
    if options:
        out += "options " + " ".join(options) + "\n"
    return out
