"""Links, addresses, routes and sysctls through rtnetlink, on plain sockets.

A container start needs about ten rtnetlink messages (a veth pair created
with its peer already in the container's namespace, enslaved and up; an
address or two, loopback up, the default routes). pyroute2 would cost
~150 ms and ~20 MB to import for them in every container's start helper,
so they are built here with `struct` on an AF_NETLINK socket instead: the
message layouts are the kernel's (<linux/netlink.h>, <linux/rtnetlink.h>,
<linux/if_link.h>, <linux/if_addr.h>, <linux/veth.h>). pyroute2 stays in
the tests and benchmarks, which set up their own plumbing with it.

A container's network namespace is named by a pid (its /proc/PID/ns/net) or
by a path to a netns file; messages for it go through a socket opened in it
(setns there and back on this thread: a socket keeps the namespace it was
made in).
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Iterator, Sequence

from berth.errors import BerthError, NotFoundError, from_oserror

log = logging.getLogger(__name__)

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# <linux/netlink.h>
NETLINK_ROUTE = 0
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
# <linux/rtnetlink.h>
RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_NEWADDR = 20
RTM_NEWROUTE = 24
RTM_GETROUTE = 26
RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_TABLE = 15
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RT_SCOPE_UNIVERSE = 0
RTN_UNICAST = 1
# <linux/if_link.h>, <linux/veth.h>
IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_MASTER = 10
IFLA_LINKINFO = 18
IFLA_GROUP = 27
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
VETH_INFO_PEER = 1
# <linux/if_addr.h>
IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_BROADCAST = 4
IFA_F_NODAD = 0x02
# <linux/if.h>
IFF_UP = 0x1

CLONE_NEWNET = 0x40000000


def netns_path(netns: int | str) -> str:
    """/proc/PID/ns/net for a pid, or the path itself."""
    if isinstance(netns, int) or (isinstance(netns, str) and netns.isdigit()):
        return f"/proc/{int(netns)}/ns/net"
    return str(netns)


def _attr(kind: int, data: bytes) -> bytes:
    out = struct.pack("=HH", 4 + len(data), kind) + data
    return out + b"\0" * (-len(out) % 4)


def _name(name: str) -> bytes:
    return name.encode() + b"\0"


def _ifinfo(index: int = 0, flags: int = 0, change: int = 0) -> bytes:
    return struct.pack("=BxHiII", socket.AF_UNSPEC, 0, index, flags, change)


def _attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    off = 0
    while off + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, off)
        if length < 4:
            break
        yield kind & 0x3FFF, data[off + 4:off + length]
        off += (length + 3) & ~3


class _Rtnl:
    """One NETLINK_ROUTE socket: requests acknowledged one by one, dumps."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_ROUTE)
        self.sock.bind((0, 0))
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def _send(self, kind: int, flags: int, body: bytes) -> int:
        self.seq += 1
        self.sock.send(struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | flags,
                                   self.seq, 0) + body)
        return self.seq

    def request(self, kind: int, flags: int, body: bytes) -> None:
        """Send one request and wait for its acknowledgement; OSError(errno) on failure."""
        seq = self._send(kind, NLM_F_ACK | flags, body)
        while True:
            data = self.sock.recv(65536)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, off)
                if mseq == seq and mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", data, off + 16)[0]
                    if code:
                        raise OSError(code, os.strerror(code))
                    return
                off += (length + 3) & ~3

    def dump(self, kind: int, body: bytes) -> list[tuple[int, bytes]]:
        """Every message of a dump, as (type, payload)."""
        seq = self._send(kind, NLM_F_DUMP, body)
        out = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                length, mtype, _flags, mseq, _pid = struct.unpack_from("=IHHII", data, off)
                payload = data[off + 16:off + length]
                off += (length + 3) & ~3
                if mseq != seq:
                    continue
                if mtype == NLMSG_DONE:
                    return out
                if mtype == NLMSG_ERROR:
                    code = -struct.unpack_from("=i", payload)[0]
                    raise OSError(code, os.strerror(code))
                out.append((mtype, payload))

    # helpers over requests

    def index(self, name: str) -> int | None:
        """The index of link `name`, None when there is none."""
        seq = self._send(RTM_GETLINK, 0, _ifinfo() + _attr(IFLA_IFNAME, _name(name)))
        while True:
            data = self.sock.recv(65536)
            _length, mtype, _f, mseq, _p = struct.unpack_from("=IHHII", data)
            if mseq != seq:
                continue
            if mtype == NLMSG_ERROR:
                code = -struct.unpack_from("=i", data, 16)[0]
                if code == errno.ENODEV:
                    return None
                raise OSError(code, os.strerror(code))
            return struct.unpack_from("=i", data, 16 + 4)[0]

    def link_names(self) -> set[str]:
        names = set()
        for _, payload in self.dump(RTM_GETLINK, _ifinfo()):
            for kind, value in _attrs(payload[16:]):
                if kind == IFLA_IFNAME:
                    names.add(value.rstrip(b"\0").decode())
        return names

    def set_up(self, index: int) -> None:
        self.request(RTM_NEWLINK, 0, _ifinfo(index, IFF_UP, IFF_UP))

    def add_address(self, index: int, address: IPInterface) -> None:
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        net = address.network
        # IPv6: no duplicate address detection, or the address stays
        # "tentative" (unusable) for a second or more after the start
        flags = IFA_F_NODAD if address.version == 6 else 0
        body = struct.pack("=BBBBI", family, net.prefixlen, flags, RT_SCOPE_UNIVERSE, index)
        body += _attr(IFA_LOCAL, address.ip.packed) + _attr(IFA_ADDRESS, address.ip.packed)
        if address.version == 4 and net.prefixlen <= 30:
            body += _attr(IFA_BROADCAST, net.broadcast_address.packed)
        self.request(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, body)

    def add_default_route(self, index: int, gateway: IPAddress) -> bool:
        """The default route through `gateway`; False when one exists already
        (the first network keeps the default route, as Docker)."""
        family = socket.AF_INET if gateway.version == 4 else socket.AF_INET6
        body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, RT_TABLE_MAIN, RTPROT_BOOT,
                           RT_SCOPE_UNIVERSE, RTN_UNICAST, 0)
        body += _attr(RTA_GATEWAY, gateway.packed) + _attr(RTA_OIF, struct.pack("=i", index))
        try:
            self.request(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, body)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise
        return True

    def routes(self, family: int) -> list[tuple[int, int, bytes | None]]:
        """(table, dst_len, dst) of every unicast route of `family`."""
        out = []
        body = struct.pack("=BBBBBBBBI", family, 0, 0, 0, 0, 0, 0, 0, 0)
        for _, payload in self.dump(RTM_GETROUTE, body):
            _fam, dst_len, _s, _tos, table, _proto, _scope, rtype, _fl = struct.unpack_from(
                "=BBBBBBBBI", payload)
            if rtype != RTN_UNICAST:
                continue
            dst = None
            for kind, value in _attrs(payload[12:]):
                if kind == RTA_TABLE:
                    table = struct.unpack("=I", value)[0]
                elif kind == RTA_DST:
                    dst = value
            out.append((table, dst_len, dst))
        return out


@contextlib.contextmanager
def _rtnl(netns: int | str | None = None) -> Iterator[_Rtnl]:
    """A socket in this network namespace, or in `netns`."""
    if netns is None:
        s = _Rtnl()
    else:
        from berth.linux import libc

        path = netns_path(netns)
        try:
            target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            raise NotFoundError(f"open network namespace {path}: no such file or directory",
                                path=path) from exc
        except OSError as exc:
            raise from_oserror(exc, "open network namespace", path) from exc
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            libc.setns(target, CLONE_NEWNET)
            try:
                s = _Rtnl()
            finally:
                libc.setns(own, CLONE_NEWNET)
        finally:
            os.close(target)
            os.close(own)
    try:
        yield s
    finally:
        s.close()


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def host_routes(version: int = 4) -> list[ipaddress.IPv4Network] | list[ipaddress.IPv6Network]:
    """The destinations of the host's routes (main table) of IP `version`,
    default routes and IPv6 link-local excluded."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    net_type = ipaddress.IPv4Network if version == 4 else ipaddress.IPv6Network
    size = 4 if version == 4 else 16
    out = []
    with _rtnl() as nl:
        try:
            routes = nl.routes(family)
        except OSError as exc:
            if version == 6 and exc.errno == errno.EAFNOSUPPORT:
                return []
            raise
    for table, dst_len, dst in routes:
        if table != RT_TABLE_MAIN or dst_len == 0 or dst is None:
            continue
        n = net_type((int.from_bytes(dst[:size], "big"), dst_len), strict=False)
        if n.is_link_local:
            continue
        out.append(n)
    return out


def ensure_bridge(name: str, gateways: IPInterface | Sequence[IPInterface], mtu: int) -> bool:
    """Create bridge `name` with the `gateways` addresses and bring it up;
    return whether it was created (an existing one is left as it is)."""
    if not isinstance(gateways, Sequence):
        gateways = [gateways]
    if link_exists(name):
        return False
    with _rtnl() as nl:
        linkinfo = _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"bridge"))
        try:
            nl.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                       _ifinfo() + _attr(IFLA_IFNAME, _name(name)) +
                       _attr(IFLA_MTU, struct.pack("=I", mtu)) + linkinfo)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                return False
            raise from_oserror(exc, "create bridge", name) from exc
        try:
            idx = nl.index(name)
            if idx is None:
                raise NotFoundError(f"configure bridge {name}: no such device")
            for gw in gateways:
                nl.add_address(idx, gw)
            nl.set_up(idx)
        except (OSError, BerthError) as exc:
            err = exc if isinstance(exc, BerthError) else from_oserror(
                exc, "configure bridge", name)
            try:
                delete_link(name)
            except BerthError as cleanup:
                err.add_note(f"delete bridge {name}: {cleanup}")
            raise err from exc
    return True


def delete_link(name: str) -> bool:
    """Delete link `name` (a bridge or the host end of a veth, which takes its
    peer along); return whether it existed."""
    if not link_exists(name):
        return False
    with _rtnl() as nl:
        try:
            nl.request(RTM_DELLINK, 0, _ifinfo() + _attr(IFLA_IFNAME, _name(name)))
        except OSError as exc:
            if exc.errno == errno.ENODEV:
                return False
            raise from_oserror(exc, "delete link", name) from exc
    return True


def delete_link_later(name: str) -> None:
    """Delete link `name` from a child process and return at once: deleting
    a veth waits for an RCU grace period (~15-30 ms here), which the caller
    (a monitor reporting its container's exit) need not wait for. The child
    is reaped by whoever reaps this process's children (a monitor reaps its
    orphans as subreaper), or by init once this process has left."""
    if not link_exists(name):
        return
    try:
        pid = os.fork()
    except OSError:
        delete_link(name)
        return
    if pid == 0:
        code = 0
        try:
            # nothing of the caller's held open meanwhile (a CLI's stdout, a
            # status pipe: their readers would wait for this child's exit)
            os.closerange(3, os.sysconf("SC_OPEN_MAX"))
            delete_link(name)
        except BaseException as exc:  # nobody to raise it to
            code = 1
            with contextlib.suppress(OSError):
                os.write(2, f"berth: delete link {name}: {exc}\n".encode())
        finally:
            os._exit(code)


def delete_links(names: Sequence[str]) -> None:
    """Delete links `names` (those that exist) as one batch: the kernel pays
    its RCU grace periods once for the batch, not once per link (~20-40 ms
    each here). They are put in a link group of their own, and the group is
    deleted (RTM_DELLINK by IFLA_GROUP)."""
    names = [n for n in names if link_exists(n)]
    if len(names) < 2:
        for n in names:
            delete_link(n)
        return
    group = int.from_bytes(os.urandom(4), "little") | 0x80000000
    with _rtnl() as nl:
        for n in names:
            try:
                nl.request(RTM_NEWLINK, 0, _ifinfo() + _attr(IFLA_IFNAME, _name(n)) +
                           _attr(IFLA_GROUP, struct.pack("=I", group)))
            except OSError as exc:
                if exc.errno != errno.ENODEV:
                    raise from_oserror(exc, "delete link", n) from exc
        try:
            nl.request(RTM_DELLINK, 0, _ifinfo() + _attr(IFLA_GROUP, struct.pack("=I", group)))
        except OSError as exc:
            if exc.errno != errno.ENODEV:
                raise from_oserror(exc, "delete links", " ".join(names)) from exc


def bridge_ports(name: str) -> list[str]:
    try:
        return os.listdir(f"/sys/class/net/{name}/brif")
    except FileNotFoundError:
        return []


def add_veth(
    host_name: str,
    bridge: str,
    netns: int | str,
    addresses: IPInterface | Sequence[IPInterface],
    gateways: IPAddress | Sequence[IPAddress] | None,
    mtu: int,
    mac: str,
) -> str:
    """A veth pair: `host_name` enslaved to `bridge` and up, its peer made
    directly in `netns` as the first free ethN with `mac`, `mtu` and
    `addresses`, loopback up and, for each of `gateways` whose family has no
    default route in the namespace yet, the default route through it.
    Returns the name inside. Undone on failure."""
    if not isinstance(addresses, Sequence):
        addresses = [addresses]
    if gateways is None:
        gateways = []
    elif not isinstance(gateways, Sequence):
        gateways = [gateways]
    path = netns_path(netns)
    with contextlib.ExitStack() as undo, _rtnl() as nl, _rtnl(path) as ns:
        try:
            br = nl.index(bridge)
        except OSError as exc:
            raise from_oserror(exc, "look up bridge", bridge) from exc
        if br is None:
            raise NotFoundError(f"attach {host_name} to bridge {bridge}: no such device")
        try:
            names = ns.link_names()
        except OSError as exc:
            raise from_oserror(exc, "list links in", path) from exc
        n = 0
        while f"eth{n}" in names:
            n += 1
        ifname = f"eth{n}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise from_oserror(exc, "open network namespace", path) from exc
        try:
            mtu_attr = _attr(IFLA_MTU, struct.pack("=I", mtu))
            peer = (_ifinfo() + _attr(IFLA_IFNAME, _name(ifname)) + mtu_attr +
                    _attr(IFLA_ADDRESS, bytes.fromhex(mac.replace(":", ""))) +
                    _attr(IFLA_NET_NS_FD, struct.pack("=I", fd)))
            linkinfo = _attr(IFLA_LINKINFO, _attr(IFLA_INFO_KIND, b"veth") +
                             _attr(IFLA_INFO_DATA, _attr(VETH_INFO_PEER, peer)))
            nl.request(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL,
                       _ifinfo(0, IFF_UP, IFF_UP) + _attr(IFLA_IFNAME, _name(host_name)) +
                       mtu_attr + _attr(IFLA_MASTER, struct.pack("=I", br)) + linkinfo)
        except OSError as exc:
            raise from_oserror(exc, "create veth", host_name) from exc
        finally:
            os.close(fd)
        undo.callback(delete_link, host_name)
        try:
            idx = ns.index(ifname)
            if idx is None:
                raise NotFoundError(f"configure {ifname} in {path}: no such device")
            for a in addresses:
                ns.add_address(idx, a)
            ns.set_up(idx)
            lo = ns.index("lo")
            if lo is not None:
                ns.set_up(lo)
            for gw in gateways:
                ns.add_default_route(idx, gw)
        except OSError as exc:
            raise from_oserror(exc, f"configure {ifname} in", path) from exc
        undo.pop_all()
    return ifname


def set_hairpin(port: str) -> None:
    """Hairpin mode on a bridge port (sysfs)."""
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
