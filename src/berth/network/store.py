"""Networks, endpoints, published ports and IPAM, in the engine's database.

Addresses are unique per network by a UNIQUE constraint, so two engines
racing for one address cannot both get it; host ports are unique per
(protocol, host address, port) the same way. Everything lives in the
database, so allocations survive an engine restart.
"""

from __future__ import annotations

import ipaddress
import os
import sqlite3
from collections.abc import Iterable

from berth import db, jsonio  # not json, which imports re (~5 ms on `berth run`)
from berth.errors import AlreadyExistsError, ConflictError, InvalidArgumentError, NotFoundError
from berth.network.model import Endpoint, Network, PortMapping

SCHEMA = [
    """
    CREATE TABLE networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        subnet TEXT NOT NULL,
        gateway TEXT NOT NULL,
        ip_range TEXT,
        bridge TEXT NOT NULL UNIQUE,
        internal INTEGER NOT NULL DEFAULT 0,
        mtu INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        created TEXT NOT NULL
    );
    CREATE TABLE endpoints (
        id TEXT PRIMARY KEY,
        network_id TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL,
        ip TEXT NOT NULL,
        mac TEXT NOT NULL,
        ifname TEXT NOT NULL,
        host_veth TEXT NOT NULL UNIQUE,
        aliases TEXT NOT NULL DEFAULT '[]',
        name TEXT NOT NULL DEFAULT '',
        netns TEXT NOT NULL,
        UNIQUE (network_id, ip),
        UNIQUE (network_id, container_id)
    );
    CREATE TABLE ports (
        endpoint_id TEXT NOT NULL REFERENCES endpoints(id) ON DELETE CASCADE,
        proto TEXT NOT NULL,
        host_ip TEXT NOT NULL,
        host_port INTEGER NOT NULL,
        container_port INTEGER NOT NULL,
        UNIQUE (proto, host_ip, host_port)
    );
    CREATE TABLE dns_servers (
        container_id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        starttime TEXT NOT NULL
    );
    """,
    # networks created with --ipv6: their IPv6 subnet, and each endpoint's address in it
    """
    ALTER TABLE networks ADD COLUMN subnet6 TEXT;
    ALTER TABLE networks ADD COLUMN gateway6 TEXT;
    ALTER TABLE networks ADD COLUMN ip_range6 TEXT;
    ALTER TABLE endpoints ADD COLUMN ip6 TEXT;
    CREATE UNIQUE INDEX endpoints_ip6 ON endpoints (network_id, ip6);
    """,
    # the [::1] proxy of a container's ports published on IPv6 (proxy.py)
    """
    CREATE TABLE port_proxies (
        container_id TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        starttime TEXT NOT NULL
    );
    """,
    # a subnet berth picked (no --subnet): it may move while unused (manager)
    """
    ALTER TABLE networks ADD COLUMN auto_subnet INTEGER NOT NULL DEFAULT 0;
    """,
]


def _network(row: sqlite3.Row) -> Network:
    return Network(
        id=row["id"],
        name=row["name"],
        subnet=ipaddress.IPv4Network(row["subnet"]),
        gateway=ipaddress.IPv4Address(row["gateway"]),
        bridge=row["bridge"],
        ip_range=ipaddress.IPv4Network(row["ip_range"]) if row["ip_range"] else None,
        internal=bool(row["internal"]),
        mtu=row["mtu"],
        labels=jsonio.loads(row["labels"]),
        options=jsonio.loads(row["options"]),
        created=row["created"],
        subnet6=ipaddress.IPv6Network(row["subnet6"]) if row["subnet6"] else None,
        gateway6=ipaddress.IPv6Address(row["gateway6"]) if row["gateway6"] else None,
        ip_range6=ipaddress.IPv6Network(row["ip_range6"]) if row["ip_range6"] else None,
        auto_subnet=bool(row["auto_subnet"]),
    )


class NetworkStore:
    """Tables `networks`, `endpoints`, `ports`, `dns_servers`, `port_proxies`."""

    def __init__(self, database: str, conn: sqlite3.Connection | None = None) -> None:
        self.conn = conn or db.connect(database)  # a connection of db.connect's, taken over
        db.migrate(self.conn, "network", SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # networks

    def insert_network(self, n: Network) -> None:
        with db.transaction(self.conn):
            if self.conn.execute("SELECT 1 FROM networks WHERE name = ?", (n.name,)).fetchone():
                raise AlreadyExistsError(f"network with name {n.name} already exists", name=n.name)
            for other in self._networks():
                for mine, theirs in ((n.subnet, other.subnet), (n.subnet6, other.subnet6)):
                    if mine is not None and theirs is not None and mine.overlaps(theirs):
                        raise ConflictError(
                            f"invalid pool request: pool overlaps with other one on this "
                            f"address space ({mine} overlaps {theirs} of network {other.name})"
                        )
                if other.bridge == n.bridge:
                    raise ConflictError(f"bridge {n.bridge} is used by network {other.name}")
            self.conn.execute(
                "INSERT INTO networks (id, name, subnet, gateway, ip_range, bridge, internal, mtu,"
                " labels, options, created, subnet6, gateway6, ip_range6, auto_subnet)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (n.id, n.name, str(n.subnet), str(n.gateway),
                 str(n.ip_range) if n.ip_range else None, n.bridge, int(n.internal), n.mtu,
                 jsonio.dumps(n.labels), jsonio.dumps(n.options), n.created,
                 str(n.subnet6) if n.subnet6 else None, str(n.gateway6) if n.gateway6 else None,
                 str(n.ip_range6) if n.ip_range6 else None, int(n.auto_subnet)),
            )

    def _networks(self) -> list[Network]:
        return [_network(r) for r in self.conn.execute("SELECT * FROM networks ORDER BY created")]

    def networks(self) -> list[Network]:
        return self._networks()

    def find_network(self, ref: str) -> Network:
        """By exact name, exact id, or unique id prefix (Docker's order)."""
        row = self.conn.execute("SELECT * FROM networks WHERE name = ?", (ref,)).fetchone()
        if row is None:
            row = self.conn.execute("SELECT * FROM networks WHERE id = ?", (ref,)).fetchone()
        if row is None and ref:
            rows = self.conn.execute(
                "SELECT * FROM networks WHERE id LIKE ?", (ref.replace("%", "") + "%",)
            ).fetchall()
            if len(rows) > 1:
                raise ConflictError(f"network {ref} is ambiguous ({len(rows)} matches found)")
            row = rows[0] if rows else None
        if row is None:
            raise NotFoundError(f"network {ref} not found", name=ref)
        return _network(row)

    def move_network(self, network_id: str, subnet: ipaddress.IPv4Network,
                     gateway: ipaddress.IPv4Address) -> None:
        """A new IPv4 subnet and gateway for a network without endpoints."""
        with db.transaction(self.conn):
            if self.conn.execute("SELECT 1 FROM endpoints WHERE network_id = ?",
                                 (network_id,)).fetchone():
                raise ConflictError(f"move network {network_id[:12]}: it has endpoints")
            self.conn.execute("UPDATE networks SET subnet = ?, gateway = ? WHERE id = ?",
                              (str(subnet), str(gateway), network_id))

    def delete_network(self, network_id: str) -> None:
        with db.transaction(self.conn):
            n = self.conn.execute(
                "SELECT COUNT(*) FROM endpoints WHERE network_id = ?", (network_id,)
            ).fetchone()[0]
            if n:
                row = self.conn.execute(
                    "SELECT name FROM networks WHERE id = ?", (network_id,)
                ).fetchone()
                raise ConflictError(
                    f"error while removing network: network {row['name'] if row else network_id}"
                    f" id {network_id} has active endpoints"
                )
            self.conn.execute("DELETE FROM networks WHERE id = ?", (network_id,))

    # endpoints and IPAM

    def allocate(
        self,
        network: Network,
        container_id: str,
        *,
        ip: ipaddress.IPv4Address | None,
        ip6: ipaddress.IPv6Address | None = None,
        mac: str | None,
        ifname: str,
        host_veth: str,
        aliases: Iterable[str],
        name: str,
        netns: str,
    ) -> Endpoint:
        """Record an endpoint with `ip` or the lowest free address of the
        network's range, in one transaction."""
        from berth.network.model import mac_for

        with db.transaction(self.conn):
            if self.conn.execute(
                "SELECT 1 FROM endpoints WHERE network_id = ? AND container_id = ?",
                (network.id, container_id),
            ).fetchone():
                raise ConflictError(
                    f"endpoint with name {name or container_id[:12]} already exists in network "
                    f"{network.name}"
                )
            used = {
                ipaddress.IPv4Address(r[0])
                for r in self.conn.execute(
                    "SELECT ip FROM endpoints WHERE network_id = ?", (network.id,)
                )
            }
            if ip is not None:
                if ip not in network.subnet:
                    raise InvalidArgumentError(
                        f"invalid address {ip}: it does not belong to any of this network's "
                        f"subnets ({network.subnet})"
                    )
                if ip in used or ip == network.gateway or ip in (
                    network.subnet.network_address, network.subnet.broadcast_address
                ):
                    raise ConflictError(f"address already in use: {ip}")
            else:
                ip = _first_free(network, used)
            if network.subnet6 is not None:
                used6 = {
                    ipaddress.IPv6Address(r[0])
                    for r in self.conn.execute(
                        "SELECT ip6 FROM endpoints WHERE network_id = ? AND ip6 IS NOT NULL",
                        (network.id,))
                }
                if ip6 is not None:
                    if ip6 not in network.subnet6:
                        raise InvalidArgumentError(
                            f"invalid address {ip6}: it does not belong to any of this "
                            f"network's subnets ({network.subnet6})")
                    if ip6 in used6 or ip6 in (network.gateway6, network.subnet6.network_address):
                        raise ConflictError(f"address already in use: {ip6}")
                else:
                    ip6 = _first_free6(network, used6)
            elif ip6 is not None:
                raise InvalidArgumentError(
                    f"invalid address {ip6}: network {network.name} has no ipv6 subnet")
            ep = Endpoint(
                id=os.urandom(32).hex(),  # Docker's EndpointID: 64 hex
                network_id=network.id,
                network=network.name,
                container_id=container_id,
                ip=ip,
                prefixlen=network.subnet.prefixlen,
                gateway=None if network.internal else network.gateway,
                mac=mac or mac_for(ip),
                ifname=ifname,
                host_veth=host_veth,
                aliases=tuple(aliases),
                name=name,
                ip6=ip6,
                prefixlen6=network.subnet6.prefixlen if network.subnet6 else 0,
                gateway6=None if network.internal else network.gateway6,
            )
            self.conn.execute(
                "INSERT INTO endpoints (id, network_id, container_id, ip, mac, ifname, host_veth,"
                " aliases, name, netns, ip6) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (ep.id, network.id, container_id, str(ip), ep.mac, ifname, host_veth,
                 jsonio.dumps(list(ep.aliases)), name, netns, str(ip6) if ip6 else None),
            )
        return ep

    def set_ifname(self, endpoint_id: str, ifname: str) -> None:
        self.conn.execute("UPDATE endpoints SET ifname = ? WHERE id = ?", (ifname, endpoint_id))

    def release(self, endpoint_id: str) -> None:
        with db.transaction(self.conn):
            self.conn.execute("DELETE FROM ports WHERE endpoint_id = ?", (endpoint_id,))
            self.conn.execute("DELETE FROM endpoints WHERE id = ?", (endpoint_id,))

    def endpoints(self, network_id: str | None = None,
                  container_id: str | None = None) -> list[Endpoint]:
        q, args = "SELECT e.*, n.name AS nname, n.subnet, n.gateway AS ngw, n.internal," \
            " n.subnet6, n.gateway6 AS ngw6" \
            " FROM endpoints e JOIN networks n ON n.id = e.network_id WHERE 1=1", []
        if network_id is not None:
            q += " AND e.network_id = ?"
            args.append(network_id)
        if container_id is not None:
            q += " AND e.container_id = ?"
            args.append(container_id)
        out = []
        for r in self.conn.execute(q + " ORDER BY e.rowid", args).fetchall():
            ports = tuple(
                PortMapping(p["container_port"], p["host_port"], p["proto"], p["host_ip"])
                for p in self.conn.execute(
                    "SELECT * FROM ports WHERE endpoint_id = ? ORDER BY rowid", (r["id"],)
                )
            )
            out.append(Endpoint(
                id=r["id"], network_id=r["network_id"], network=r["nname"],
                container_id=r["container_id"], ip=ipaddress.IPv4Address(r["ip"]),
                prefixlen=ipaddress.IPv4Network(r["subnet"]).prefixlen,
                gateway=None if r["internal"] else ipaddress.IPv4Address(r["ngw"]),
                mac=r["mac"], ifname=r["ifname"], host_veth=r["host_veth"],
                aliases=tuple(jsonio.loads(r["aliases"])), name=r["name"], ports=ports,
                ip6=ipaddress.IPv6Address(r["ip6"]) if r["ip6"] else None,
                prefixlen6=ipaddress.IPv6Network(r["subnet6"]).prefixlen if r["subnet6"] else 0,
                gateway6=ipaddress.IPv6Address(r["ngw6"]) if r["ngw6"] and not r["internal"]
                else None,
            ))
        return out

    def has_endpoints(self, network_id: str, but: str = "") -> bool:
        """Whether the network has an endpoint other than `but`."""
        return self.conn.execute(
            "SELECT 1 FROM endpoints WHERE network_id = ? AND id != ? LIMIT 1",
            (network_id, but)).fetchone() is not None

    def netns_of(self, endpoint_id: str) -> str:
        row = self.conn.execute("SELECT netns FROM endpoints WHERE id = ?",
                                (endpoint_id,)).fetchone()
        return row[0] if row else ""

    def all_ports(self) -> list[PortMapping]:
        return [
            PortMapping(r["container_port"], r["host_port"], r["proto"], r["host_ip"])
            for r in self.conn.execute("SELECT * FROM ports")
        ]

    def set_ports(self, endpoint_id: str, add: Iterable[PortMapping],
                  remove: Iterable[PortMapping] = ()) -> None:
        """Add and remove published ports of one endpoint in one transaction;
        a host port taken by another mapping fails it as Docker does."""
        with db.transaction(self.conn):
            for m in remove:
                self.conn.execute(
                    "DELETE FROM ports WHERE endpoint_id = ? AND proto = ? AND container_port = ?"
                    " AND (? = 0 OR host_port = ?)",
                    (endpoint_id, m.proto, m.container_port, m.host_port, m.host_port),
                )
            for m in add:
                clash = self.conn.execute(
                    "SELECT 1 FROM ports WHERE proto = ? AND host_port = ?"
                    " AND (host_ip = ? OR host_ip = '' OR ? = ''"
                    "  OR (host_ip = '::' AND instr(?, ':')) OR (? = '::' AND instr(host_ip, ':')))",
                    (m.proto, m.host_port, m.host_ip, m.host_ip, m.host_ip, m.host_ip),
                ).fetchone()
                if clash:
                    from berth.network.model import join_host_port

                    raise ConflictError(
                        f"bind for {join_host_port(m.host_ip or '0.0.0.0', m.host_port)} "
                        "failed: port is already allocated"
                    )
                self.conn.execute(
                    "INSERT INTO ports (endpoint_id, proto, host_ip, host_port, container_port)"
                    " VALUES (?,?,?,?,?)",
                    (endpoint_id, m.proto, m.host_ip, m.host_port, m.container_port),
                )

    # [::1] port proxies (proxy.py)

    def port_proxy(self, container_id: str) -> tuple[int, str] | None:
        row = self.conn.execute(
            "SELECT pid, starttime FROM port_proxies WHERE container_id = ?", (container_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def set_port_proxy(self, container_id: str, pid: int | None, starttime: str = "") -> None:
        if pid is None:
            self.conn.execute("DELETE FROM port_proxies WHERE container_id = ?", (container_id,))
        else:
            self.conn.execute(
                "INSERT OR REPLACE INTO port_proxies (container_id, pid, starttime)"
                " VALUES (?,?,?)", (container_id, pid, starttime))

    # embedded DNS servers

    def dns_server(self, container_id: str) -> tuple[int, str] | None:
        row = self.conn.execute(
            "SELECT pid, starttime FROM dns_servers WHERE container_id = ?", (container_id,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def set_dns_server(self, container_id: str, pid: int | None, starttime: str = "") -> None:
        with db.transaction(self.conn):
            self.conn.execute("DELETE FROM dns_servers WHERE container_id = ?", (container_id,))
            if pid is not None:
                self.conn.execute("INSERT INTO dns_servers VALUES (?,?,?)",
                                  (container_id, pid, starttime))

    def resolve_names(self, container_id: str, qname: str) -> list[str]:
        """Addresses (IPv4, and IPv6 on --ipv6 networks) of `qname` (a container
        name, alias or short id) on the DNS-enabled networks `container_id` is
        attached to."""
        qname = qname.rstrip(".").lower()
        out = []
        rows = self.conn.execute(
            "SELECT e.* FROM endpoints e JOIN networks n ON n.id = e.network_id"
            " WHERE n.name != 'bridge' AND e.network_id IN"
            " (SELECT network_id FROM endpoints WHERE container_id = ?)",
            (container_id,),
        ).fetchall()
        for r in rows:
            names = {r["name"].lower(), r["container_id"][:12].lower(), r["container_id"].lower()}
            names.update(a.lower() for a in jsonio.loads(r["aliases"]))
            if qname in names:
                out.append(r["ip"])
                if r["ip6"]:
                    out.append(r["ip6"])
        return out


def _first_free6(network: Network, used: set[ipaddress.IPv6Address]) -> ipaddress.IPv6Address:
    """The lowest free address of the IPv6 range (Docker hands them out in
    order after the gateway); the subnet-router anycast address is skipped."""
    assert network.subnet6 is not None
    pool = network.ip_range6 or network.subnet6
    skip = {network.gateway6, network.subnet6.network_address}
    for n, ip in enumerate(pool):
        if ip not in used and ip not in skip:
            return ip
        if n > len(used) + len(skip) + 1:
            break
    raise ConflictError(f"no available ipv6 addresses on network {network.name}")


def _first_free(network: Network, used: set[ipaddress.IPv4Address]) -> ipaddress.IPv4Address:
    pool = network.ip_range or network.subnet
    skip = {network.gateway, network.subnet.network_address, network.subnet.broadcast_address}
    for ip in pool:  # all of an --ip-range: only the subnet's own ends are reserved
        if ip not in used and ip not in skip:
            return ip
    raise ConflictError(f"no available ip addresses on network {network.name}")
