"""berth's nftables table, written as one `nft -j -f -` transaction.

The whole table is computed from the database each time (`ruleset`) and
applied atomically: `add table` (idempotent), `flush table`, then every chain
and rule. A failure leaves the previous table as it was; an unused table is
deleted. Chains of `ip <table>`:

- `prerouting` (nat, dstnat) and `output` (nat, dstnat): traffic to a local
  address jumps to `ports`, which DNATs published ports to containers. The
  `output` hook serves connections from the host itself (127.0.0.1 and the
  host's own addresses); 127.0.0.1 needs `route_localnet` on the bridge and
  the masquerade below.
- `postrouting` (nat, srcnat): masquerade of a network's subnet leaving by
  another link (not for `--internal`), of loopback sources sent to a bridge,
  and of hairpin DNAT (a container reaching its own published port).
- `forward` (filter): isolation between bridges, and `--internal` networks
  kept to their bridge.

While a network created with `--ipv6` has endpoints, an `ip6` table of the
same name holds the IPv6 counterparts of `postrouting` (masquerade, NAT66)
and `forward` (isolation, --internal); it goes in the same transaction.

A transaction that would write what the table holds already is skipped
(`start(..., state=PATH)`): PATH keeps the digest of the last transaction
applied and the ruleset's generation id (nf_tables' counter of committed
transactions, read over NETLINK_NETFILTER in ~0.2 ms) right after it. The
skip needs both to match, so a table changed or flushed by anyone since
(another engine, `nft flush ruleset`) is written again. A container start or
removal that changes no rule (no published port, its network's bridge kept)
runs no `nft` at all.

Published ports and the host firewall: DNATed packets are forwarded, so a
rule in an `input` hook never sees them (Docker's long-standing complaint).
A rule that should block a host port and a published port alike goes in a
chain hooked at prerouting with a priority before dstnat (-100), for example
``table inet fw { chain pre { type filter hook prerouting priority -150;
tcp dport 8080 drop } }``, or matches ``ct original proto-dst 8080`` in a
forward chain. berth's own rules accept nothing, so any drop elsewhere wins.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import shutil
import socket
import struct
import subprocess
from dataclasses import dataclass
from typing import Any

from berth.errors import InternalError, UnavailableError

FAMILY = "ip"
FAMILY6 = "ip6"


@dataclass(frozen=True)
class BridgeRules:
    bridge: str
    subnet: ipaddress.IPv4Network
    internal: bool
    subnet6: ipaddress.IPv6Network | None = None


@dataclass(frozen=True)
class DnatRule:
    bridge: str
    proto: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int
    container_ip6: str = ""  # an endpoint with IPv6: published on the host's IPv6 too


def table_name(root: str) -> str:
    """`berth` for the default root; engines on other roots get their own table."""
    if root == "/var/lib/berth":
        return "berth"
    return "berth_" + hashlib.sha1(root.encode()).hexdigest()[:8]


def _m(left: Any, right: Any, op: str = "==") -> dict[str, Any]:
    return {"match": {"op": op, "left": left, "right": right}}


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _payload(proto: str, field: str) -> dict[str, Any]:
    return {"payload": {"protocol": proto, "field": field}}


def _dnat(family: str, host_ip: str, d: DnatRule, addr: str) -> list:
    """The match and DNAT statement of one published port in an `ip` or
    `ip6` table (`host_ip` "": any local address)."""
    expr = [_m(_payload(family, "daddr"), host_ip)] if host_ip else []
    return [*expr, _m(_meta("l4proto"), d.proto), _m(_payload("th", "dport"), d.host_port),
            {"dnat": {"addr": addr, "port": d.container_port}}]


def _prefix(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> dict[str, Any]:
    return {"prefix": {"addr": str(net.network_address), "len": net.prefixlen}}


def ruleset(table: str, bridges: list[BridgeRules], dnat: list[DnatRule]) -> list[dict[str, Any]]:
    """The commands (nft JSON) that make `table` hold exactly these rules."""
    t = {"family": FAMILY, "name": table}
    cmds: list[dict[str, Any]] = [{"add": {"table": t}}, {"flush": {"table": t}}]

    def chain(name: str, ctype: str | None = None, hook: str | None = None,
              prio: int = 0) -> None:
        c: dict[str, Any] = {"family": FAMILY, "table": table, "name": name}
        if ctype:
            c.update(type=ctype, hook=hook, prio=prio, policy="accept")
        cmds.append({"add": {"chain": c}})

    def rule(chain_name: str, *expr: dict[str, Any]) -> None:
        cmds.append({"add": {"rule": {"family": FAMILY, "table": table, "chain": chain_name,
                                      "expr": list(expr)}}})

    chain("ports")
    chain("prerouting", "nat", "prerouting", -100)
    chain("output", "nat", "output", -100)
    chain("postrouting", "nat", "postrouting", 100)
    chain("forward", "filter", "forward", 0)
    local = _m({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
    rule("prerouting", local, {"jump": {"target": "ports"}})
    rule("output", local, {"jump": {"target": "ports"}})
    for d in dnat:
        if ":" in d.host_ip:
            continue  # an IPv6 host address: the ip6 table's
        rule("ports", *_dnat("ip", d.host_ip, d, d.container_ip))
    loopback = ipaddress.IPv4Network("127.0.0.0/8")
    dnat_bridges = {d.bridge for d in dnat}
    for b in bridges:
        if not b.internal:
            rule("postrouting", _m(_payload("ip", "saddr"), _prefix(b.subnet)),
                 _m(_meta("oifname"), b.bridge, "!="), {"masquerade": None})
        if b.bridge in dnat_bridges:
            rule("postrouting", _m(_meta("oifname"), b.bridge),
                 _m(_payload("ip", "saddr"), _prefix(loopback)), {"masquerade": None})
            rule("postrouting", _m(_meta("oifname"), b.bridge),
                 _m(_payload("ip", "saddr"), _prefix(b.subnet)),
                 _m({"ct": {"key": "status"}}, "dnat", "in"), {"masquerade": None})
        if b.internal:
            rule("forward", _m(_meta("iifname"), b.bridge),
                 _m(_meta("oifname"), b.bridge, "!="), {"drop": None})
            rule("forward", _m(_meta("oifname"), b.bridge),
                 _m(_meta("iifname"), b.bridge, "!="), {"drop": None})
        for other in bridges:
            if other.bridge != b.bridge:
                rule("forward", _m(_meta("iifname"), b.bridge),
                     _m(_meta("oifname"), other.bridge), {"drop": None})
    return cmds + ruleset6(table, bridges, dnat)


def ruleset6(table: str, bridges: list[BridgeRules],
             dnat: list[DnatRule] | None = None) -> list[dict[str, Any]]:
    """The `ip6` table of the same name, while a network with IPv6 has
    endpoints (as Docker's ip6tables rules): masquerade of its IPv6 subnet
    leaving by another link (NAT66), isolation and --internal as for IPv4,
    and published ports of endpoints with an IPv6 address: DNAT of the
    host's IPv6 addresses (`ports6`, from prerouting and output) to the
    container's, with hairpin masquerade. Not of ::1: the kernel routes no
    packet from ::1 out of the loopback (IPv6 has no route_localnet), so
    [::1] is served by a proxy (proxy.py) which the output rule leaves alone."""
    t = {"family": FAMILY6, "name": table}
    v6 = [b for b in bridges if b.subnet6 is not None]
    if not v6:
        return [{"add": {"table": t}}, {"delete": {"table": t}}]
    cmds: list[dict[str, Any]] = [{"add": {"table": t}}, {"flush": {"table": t}}]

    def rule(chain_name: str, *expr: dict[str, Any]) -> None:
        cmds.append({"add": {"rule": {"family": FAMILY6, "table": table, "chain": chain_name,
                                      "expr": list(expr)}}})

    dnat6 = [d for d in dnat or () if d.container_ip6 and (not d.host_ip or ":" in d.host_ip)]
    chains = [("postrouting", "nat", "postrouting", 100), ("forward", "filter", "forward", 0)]
    if dnat6:
        cmds.append({"add": {"chain": {"family": FAMILY6, "table": table, "name": "ports"}}})
        chains += [("prerouting", "nat", "prerouting", -100), ("output", "nat", "output", -100)]
    for name, ctype, hook, prio in chains:
        cmds.append({"add": {"chain": {"family": FAMILY6, "table": table, "name": name,
                                       "type": ctype, "hook": hook, "prio": prio,
                                       "policy": "accept"}}})
    if dnat6:
        local = _m({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
        rule("prerouting", local, {"jump": {"target": "ports"}})
        rule("output", _m(_payload("ip6", "daddr"), "::1", "!="), local,
             {"jump": {"target": "ports"}})
        for d in dnat6:
            host_ip = "" if d.host_ip == "::" else d.host_ip
            rule("ports", *_dnat("ip6", host_ip, d, d.container_ip6))
    dnat6_bridges = {d.bridge for d in dnat6}
    for b in v6:
        assert b.subnet6 is not None
        if b.bridge in dnat6_bridges:
            rule("postrouting", _m(_meta("oifname"), b.bridge),
                 _m(_payload("ip6", "saddr"), _prefix(b.subnet6)),
                 _m({"ct": {"key": "status"}}, "dnat", "in"), {"masquerade": None})
    for b in v6:
        assert b.subnet6 is not None
        if b.internal:
            rule("forward", _m(_meta("iifname"), b.bridge),
                 _m(_meta("oifname"), b.bridge, "!="), {"drop": None})
            rule("forward", _m(_meta("oifname"), b.bridge),
                 _m(_meta("iifname"), b.bridge, "!="), {"drop": None})
        else:
            rule("postrouting", _m(_payload("ip6", "saddr"), _prefix(b.subnet6)),
                 _m(_meta("oifname"), b.bridge, "!="), {"masquerade": None})
        for other in v6:
            if other.bridge != b.bridge:
                rule("forward", _m(_meta("iifname"), b.bridge),
                     _m(_meta("oifname"), other.bridge), {"drop": None})
    return cmds


def delete_commands(table: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for family in (FAMILY, FAMILY6):
        t = {"family": family, "name": table}
        out += [{"add": {"table": t}}, {"delete": {"table": t}}]
    return out


_found: dict[tuple[str | None, str | None], str] = {}


def nft_binary() -> str:
    """The nft program: $BERTH_NFT, else nft on PATH or in /usr/sbin, /sbin
    (looked up once per process and environment)."""
    key = (os.environ.get("BERTH_NFT"), os.environ.get("PATH"))
    path = _found.get(key)
    if path is None or not os.path.exists(path):
        path = _found[key] = _nft_binary()
    return path


def _nft_binary() -> str:
    env = os.environ.get("BERTH_NFT")
    if env:
        if not os.access(env, os.X_OK):
            raise UnavailableError(f"apply firewall rules: nft not found at {env} (BERTH_NFT)")
        return env
    path = shutil.which("nft") or next(
        (p for p in ("/usr/sbin/nft", "/sbin/nft") if os.path.exists(p)), None
    )
    if not path:
        raise UnavailableError(
            "apply firewall rules: nft not found (install Debian's nftables package)"
        )
    return path


# <linux/netlink.h>, <linux/netfilter/nfnetlink.h>, <linux/netfilter/nf_tables.h>
NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1


def generation() -> int | None:
    """The ruleset's generation id (bumped by every committed nf_tables
    transaction in this network namespace), or None when it cannot be read."""
    try:
        s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                          NETLINK_NETFILTER)
    except OSError:
        return None
    try:
        s.bind((0, 0))
        body = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)  # struct nfgenmsg
        s.send(struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN,
                           0x1, 1, 0) + body)  # NLM_F_REQUEST
        data = s.recv(4096)
    except OSError:
        return None
    finally:
        s.close()
    if len(data) < 20:
        return None
    length, mtype, _flags, _seq, _pid = struct.unpack_from("=IHHII", data)
    if mtype != (NFNL_SUBSYS_NFTABLES << 8) | 15:  # NFT_MSG_NEWGEN
        return None
    off = 20
    while off + 4 <= min(length, len(data)):
        alen, kind = struct.unpack_from("=HH", data, off)
        if alen < 4:
            break
        if kind & 0x3FFF == NFTA_GEN_ID and alen >= 8:
            return struct.unpack_from("!I", data, off + 4)[0]
        off += (alen + 3) & ~3
    return None


def _read_state(path: str) -> tuple[int, str] | None:
    try:
        with open(path) as f:
            gen, _, digest = f.read().strip().partition(" ")
        return int(gen), digest
    except (OSError, ValueError):
        return None


def unchanged(state: str) -> bool:
    """Whether no nf_tables transaction was committed since the last one
    `start(..., state)` applied (so berth's table is as it left it)."""
    last = _read_state(state)
    return last is not None and last[0] == generation()


class Pending:
    """An nft transaction running in the background (see `start`)."""

    def __init__(self, proc: subprocess.Popen | None, state: str | None = None,
                 digest: str = "", gen: int | None = None) -> None:
        self.proc = proc
        self.done = proc is None
        self.state, self.digest, self.gen = state, digest, gen

    def wait(self) -> None:
        """Wait for it; its error is raised once (a second wait returns)."""
        if self.done:
            return
        self.done = True
        assert self.proc is not None and self.proc.stderr is not None
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        if self.proc.wait() != 0:
            raise InternalError(f"apply nftables rules: {err.strip()}")
        if self.state and self.gen is not None:
            after = generation()
            # only when nothing but this transaction was committed meanwhile
            if after is not None and after - self.gen in (0, 1):
                try:
                    with open(self.state + ".tmp", "w") as f:
                        f.write(f"{after} {self.digest}\n")
                    os.rename(self.state + ".tmp", self.state)
                except OSError:
                    pass


def start(commands: list[dict[str, Any]], state: str | None = None) -> Pending:
    """Start `commands` as one nft transaction (all of them or none) and
    return at once, so netlink work can overlap it; `wait()` for the result.
    With `state` (a file), nothing is run when the same transaction was the
    last one applied and no other has been committed since (module doc)."""
    doc = json.dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}, *commands]})
    digest = gen = None
    if state:
        digest = hashlib.sha1(doc.encode()).hexdigest()
        gen = generation()
        if gen is not None and _read_state(state) == (gen, digest):
            return Pending(None)
        try:
            os.unlink(state)  # a transaction that fails or dies half-way is redone
        except FileNotFoundError:
            pass
    p = subprocess.Popen([nft_binary(), "-j", "-f", "-"], stdin=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None
    try:
        p.stdin.write(doc)
    except BrokenPipeError:
        pass  # nft died early: wait() reports why
    finally:
        try:
            p.stdin.close()
        except BrokenPipeError:
            pass
    return Pending(p, state, digest or "", gen)


def apply(commands: list[dict[str, Any]], state: str | None = None) -> None:
    """Run `commands` as one nft transaction: all of them or none."""
    start(commands, state).wait()


def table_exists(table: str) -> bool:
    p = subprocess.run([nft_binary(), "-j", "list", "table", FAMILY, table],
                       capture_output=True, text=True)
    return p.returncode == 0


def list_table(table: str) -> list[dict[str, Any]]:
    p = subprocess.run([nft_binary(), "-j", "list", "table", FAMILY, table],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return []
    return json.loads(p.stdout)["nftables"]
