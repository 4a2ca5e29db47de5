"""Links, addresses, routes and sysctls through netlink (pyroute2).

The only module of berth that imports pyroute2, and only inside functions that
need it, so importing `berth.network` stays cheap and the runtime never pays
for it. A container's network namespace is named by a pid (its
/proc/PID/ns/net) or by a path to a netns file.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
from collections.abc import Iterator
from typing import Any

from berth.errors import BerthError, InternalError, NotFoundError, from_oserror

log = logging.getLogger(__name__)


def netns_path(netns: int | str) -> str:
    """/proc/PID/ns/net for a pid, or the path itself."""
    if isinstance(netns, int) or (isinstance(netns, str) and netns.isdigit()):
        return f"/proc/{int(netns)}/ns/net"
    return str(netns)


def _netlink_error(exc: Exception, operation: str, obj: str) -> BerthError:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None) or 0
    if code:
        return from_oserror(OSError(code, os.strerror(code)), operation, obj)
    return InternalError(f"{operation} {obj}: {exc}")


@contextlib.contextmanager
def _ipr(netns: int | str | None = None) -> Iterator[Any]:
    from pyroute2 import IPRoute

    if netns is None:
        ipr = IPRoute()
    else:
        path = netns_path(netns)
        if not os.path.exists(path):
            raise NotFoundError(f"open network namespace {path}: no such file or directory",
                                path=path)
        ipr = IPRoute(netns=path)
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: Any, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def host_routes() -> list[ipaddress.IPv4Network]:
    """The destinations of the host's IPv4 routes (main table), default route excluded."""
    out = []
    with _ipr() as ipr:
        for r in ipr.get_routes(family=2, table=254):
            dst = r.get("RTA_DST")
            if dst is None or r["dst_len"] == 0:
                continue
            out.append(ipaddress.IPv4Network(f"{dst}/{r['dst_len']}", strict=False))
    return out


def ensure_bridge(name: str, gateway: ipaddress.IPv4Interface, mtu: int) -> bool:
    """Create bridge `name` with address `gateway` and bring it up; return
    whether it was created (an existing one is left as it is)."""
    from pyroute2 import NetlinkError

    with _ipr() as ipr:
        if _index(ipr, name) is not None:
            return False
        try:
            ipr.link("add", ifname=name, kind="bridge", mtu=mtu)
        except NetlinkError as exc:
            raise _netlink_error(exc, "create bridge", name) from exc
        try:
            idx = _index(ipr, name)
            ipr.addr("add", index=idx, address=str(gateway.ip), prefixlen=gateway.network.prefixlen)
            ipr.link("set", index=idx, state="up")
        except NetlinkError as exc:
            err = _netlink_error(exc, "configure bridge", name)
            with contextlib.suppress(NetlinkError):
                ipr.link("del", index=_index(ipr, name))
            raise err from exc
    return True


def delete_link(name: str) -> bool:
    """Delete link `name` (a bridge or the host end of a veth, which takes its
    peer along); return whether it existed.

    One RTM_DELLINK by name on a plain netlink socket rather than pyroute2:
    this runs when a container stops, in its long-lived monitor, where
    importing pyroute2 (~250 ms, ~20 MB) for one message would cost more than
    the rest of the stop."""
    import socket
    import struct

    if not link_exists(name):
        return False
    raw = name.encode() + b"\0"
    attr = struct.pack("=HH", 4 + len(raw), IFLA_IFNAME) + raw
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + attr  # struct ifinfomsg, AF_UNSPEC
    msg = struct.pack("=IHHII", 16 + len(body), RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, 1, 0)
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE) as sock:
        sock.bind((0, 0))
        sock.send(msg + body)
        reply = sock.recv(65536)
    kind = struct.unpack_from("=H", reply, 4)[0]
    code = -struct.unpack_from("=i", reply, 16)[0] if kind == NLMSG_ERROR else 0
    if code == errno.ENODEV:
        return False
    if code:
        raise from_oserror(OSError(code, os.strerror(code)), "delete link", name)
    return True


# <linux/netlink.h>, <linux/rtnetlink.h>, <linux/if_link.h>
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLM_F_REQUEST = 1
NLM_F_ACK = 4
RTM_DELLINK = 17
IFLA_IFNAME = 3


def bridge_ports(name: str) -> list[str]:
    try:
        return os.listdir(f"/sys/class/net/{name}/brif")
    except FileNotFoundError:
        return []


def add_veth(
    host_name: str,
    bridge: str,
    netns: int | str,
    address: ipaddress.IPv4Interface,
    gateway: ipaddress.IPv4Address | None,
    mtu: int,
    mac: str,
) -> str:
    """A veth pair: `host_name` enslaved to `bridge`, its peer moved into
    `netns` as the first free ethN with `address`, `mac`, `mtu`, loopback up
    and, when `gateway` is given and the namespace has no default route yet,
    the default route through it. Returns the name inside. Undone on failure."""
    from pyroute2 import NetlinkError

    path = netns_path(netns)
    peer_tmp = "p" + host_name[1:] if host_name[0] != "p" else "q" + host_name[1:]
    with contextlib.ExitStack() as undo, _ipr() as ipr:
        try:
            ipr.link("add", ifname=host_name, kind="veth", peer={"ifname": peer_tmp, "mtu": mtu},
                     mtu=mtu)
        except NetlinkError as exc:
            raise _netlink_error(exc, "create veth", host_name) from exc
        undo.callback(delete_link, host_name)
        try:
            br = _index(ipr, bridge)
            if br is None:
                raise NotFoundError(f"attach {host_name} to bridge {bridge}: no such device")
            idx = _index(ipr, host_name)
            peer = _index(ipr, peer_tmp)
            ipr.link("set", index=idx, master=br)
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                ipr.link("set", index=peer, net_ns_fd=fd)
            finally:
                os.close(fd)
        except NetlinkError as exc:
            raise _netlink_error(exc, "move veth into", path) from exc
        except OSError as exc:
            raise from_oserror(exc, "open network namespace", path) from exc
        ifname = "eth0"
        try:
            with _ipr(path) as ns:
                names = {link.get("ifname") for link in ns.get_links()}
                n = 0
                while f"eth{n}" in names:
                    n += 1
                ifname = f"eth{n}"
                if gateway is not None and any(
                        r["dst_len"] == 0 for r in ns.get_routes(family=2, table=254)):
                    gateway = None  # the first network keeps the default route, as Docker
                idx_in = _index(ns, peer_tmp)
                ns.link("set", index=idx_in, ifname=ifname, address=mac, mtu=mtu)
                ns.addr("add", index=idx_in, address=str(address.ip),
                        prefixlen=address.network.prefixlen)
                ns.link("set", index=idx_in, state="up")
                lo = _index(ns, "lo")
                if lo is not None:
                    ns.link("set", index=lo, state="up")
                if gateway is not None:
                    ns.route("replace", dst="0.0.0.0/0", gateway=str(gateway), oif=idx_in)
        except NetlinkError as exc:
            raise _netlink_error(exc, f"configure {ifname} in", path) from exc
        try:
            ipr.link("set", index=_index(ipr, host_name), state="up")
        except NetlinkError as exc:
            raise _netlink_error(exc, "bring up", host_name) from exc
        undo.pop_all()
    return ifname


def set_hairpin(port: str) -> None:
    """Hairpin mode on a bridge port (sysfs: the one knob pyroute2 is not needed for)."""
    path = f"/sys/class/net/{port}/brport/hairpin_mode"
    try:
        with open(path, "w") as f:
            f.write("1")
    except OSError as exc:
        raise from_oserror(exc, "set hairpin mode on", port) from exc


def write_sysctl(key: str, value: str) -> None:
    """`key` under /proc/sys: net/ipv4/ip_forward (slashes, as a link name may hold dots)."""
    path = "/proc/sys/" + key
    try:
        with open(path) as f:
            if f.read().strip() == value:
                return
        with open(path, "w") as f:
            f.write(value)
    except OSError as exc:
        raise from_oserror(exc, f"set sysctl {key}={value}", path) from exc
