"""The embedded DNS server: one small process per container on a
user-defined network, listening on 127.0.0.11:53 (UDP and TCP) inside the
container's network namespace, as Docker's.

Names of containers (name, aliases, short and full id) on the networks the
container shares are answered from the engine's database; other questions
are forwarded to the host's resolvers through a socket made in the host's
network namespace before the server enters the container's (a socket keeps
the namespace it was made in), so a resolver on the host's 127.0.0.53 works
too. The server exits when the container's process does (pidfd), or when
the engine stops it (SIGTERM).

Run as ``python -m berth.network.dns --database DB --container ID --netns
PATH [--watch-pid PID] --upstream IP:PORT...``; it prints ``ready PID`` once
bound and detaches (double fork), or ``error: ...`` and exits 1.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import selectors
import socket
import struct
import sys
import time
from collections.abc import Callable

LISTEN_ADDR = "127.0.0.11"
TTL = 600
TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3

log = logging.getLogger(__name__)


class Question:
    __slots__ = ("end", "flags", "id", "name", "qclass", "qtype")

    def __init__(self, id_: int, flags: int, name: str, qtype: int, qclass: int, end: int):
        self.id, self.flags, self.name, self.qtype, self.qclass, self.end = (
            id_, flags, name, qtype, qclass, end)


def parse_question(msg: bytes) -> Question | None:
    """The first question of a query, or None for anything that is not one."""
    if len(msg) < 12:
        return None
    id_, flags, qd = struct.unpack("!HHH", msg[:6])
    if flags & 0x8000 or qd < 1:
        return None
    labels, i = [], 12
    while True:
        if i >= len(msg):
            return None
        n = msg[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0 or i + n > len(msg):
            return None
        labels.append(msg[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(msg):
        return None
    qtype, qclass = struct.unpack("!HH", msg[i:i + 4])
    return Question(id_, flags, ".".join(labels), qtype, qclass, i + 4)


def build_answer(msg: bytes, q: Question, addresses: list[str], rcode: int = 0) -> bytes:
    """The response to `msg` with A records for the IPv4 `addresses` and
    AAAA records for the IPv6 ones, as the question asks (none for other types)."""
    answers = []
    if q.qtype in (TYPE_A, TYPE_AAAA) and q.qclass == CLASS_IN:
        for a in addresses:
            ip = ipaddress.ip_address(a)
            if (ip.version == 4) == (q.qtype == TYPE_A):
                answers.append(struct.pack("!HHHIH", 0xC00C, q.qtype, CLASS_IN, TTL,
                                           len(ip.packed)) + ip.packed)
    flags = 0x8000 | 0x0400 | (q.flags & 0x0100) | 0x0080 | rcode  # QR AA RD RA
    head = struct.pack("!HHHHHH", q.id, flags, 1, len(answers), 0, 0)
    return head + msg[12:q.end] + b"".join(answers)


def error_answer(msg: bytes, q: Question, rcode: int) -> bytes:
    return build_answer(msg, q, [], rcode)


class Server:
    """The serving loop; `lookup(name) -> [address...]` answers local names."""

    def __init__(self, udp: socket.socket, tcp: socket.socket, upstream: socket.socket,
                 upstreams: list[tuple[str, int]], lookup: Callable[[str], list[str]],
                 pidfd: int | None) -> None:
        self.udp, self.tcp, self.upstream = udp, tcp, upstream
        self.upstreams = upstreams
        self.lookup = lookup
        self.pidfd = pidfd
        self.pending: dict[int, tuple[tuple[str, int], int, float]] = {}
        self.next_id = int.from_bytes(os.urandom(2), "big")
        self.turn = 0

    def answer_local(self, msg: bytes, q: Question) -> bytes | None:
        try:
            addrs = self.lookup(q.name)
        except Exception:  # a database hiccup must not kill the container's resolver
            log.exception("look up %s", q.name)
            return error_answer(msg, q, RCODE_SERVFAIL)
        return build_answer(msg, q, addrs) if addrs else None

    def on_udp(self) -> None:
        msg, client = self.udp.recvfrom(4096)
        q = parse_question(msg)
        if q is None:
            return
        reply = self.answer_local(msg, q)
        if reply is not None:
            self.udp.sendto(reply, client)
            return
        if not self.upstreams:
            self.udp.sendto(error_answer(msg, q, RCODE_SERVFAIL), client)
            return
        self.next_id = (self.next_id + 1) & 0xFFFF
        self.pending[self.next_id] = (client, q.id, time.monotonic())
        dest = self.upstreams[self.turn % len(self.upstreams)]
        self.turn += 1
        self.upstream.sendto(struct.pack("!H", self.next_id) + msg[2:], dest)
        if len(self.pending) > 512:
            cutoff = time.monotonic() - 10
            self.pending = {k: v for k, v in self.pending.items() if v[2] > cutoff}

    def on_upstream(self) -> None:
        msg, src = self.upstream.recvfrom(65535)
        if src not in self.upstreams or len(msg) < 12:
            return
        entry = self.pending.pop(struct.unpack("!H", msg[:2])[0], None)
        if entry is None:
            return
        client, orig, _ = entry
        self.udp.sendto(struct.pack("!H", orig) + msg[2:], client)

    def on_tcp(self) -> None:
        conn, _ = self.tcp.accept()
        conn.settimeout(2)
        try:
            head = conn.recv(2)
            if len(head) < 2:
                return
            n = struct.unpack("!H", head)[0]
            msg = b""
            while len(msg) < n:
                chunk = conn.recv(n - len(msg))
                if not chunk:
                    return
                msg += chunk
            q = parse_question(msg)
            if q is None:
                return
            reply = self.answer_local(msg, q) or error_answer(msg, q, RCODE_SERVFAIL)
            conn.sendall(struct.pack("!H", len(reply)) + reply)
        except OSError:
            pass
        finally:
            conn.close()

    def serve(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ, self.on_udp)
        sel.register(self.tcp, selectors.EVENT_READ, self.on_tcp)
        sel.register(self.upstream, selectors.EVENT_READ, self.on_upstream)
        if self.pidfd is not None:
            sel.register(self.pidfd, selectors.EVENT_READ, None)
        while True:
            for key, _ in sel.select():
                if key.data is None:
                    return
                try:
                    key.data()
                except OSError as exc:
                    log.debug("dns: %s", exc)


def parse_upstream(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host:
        return text, 53
    return host, int(port)


def host_resolvers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver":
                    try:
                        ipaddress.IPv4Address(parts[1])
                    except ValueError:
                        continue
                    out.append((parts[1], 53))
    except FileNotFoundError:
        pass
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="berth-dns")
    ap.add_argument("--database", required=True)
    ap.add_argument("--container", required=True)
    ap.add_argument("--netns", required=True)
    ap.add_argument("--watch-pid", type=int)
    ap.add_argument("--upstream", action="append", default=[])
    args = ap.parse_args(argv)
    out = sys.stdout
    try:
        from berth.linux.libc import CLONE_NEWNET, setns
        from berth.network.store import NetworkStore

        upstreams = [parse_upstream(u) for u in args.upstream]
        pidfd = os.pidfd_open(args.watch_pid) if args.watch_pid else None
        upstream = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # host's netns
        upstream.bind(("0.0.0.0", 0))
        fd = os.open(args.netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            setns(fd, CLONE_NEWNET)
        finally:
            os.close(fd)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((LISTEN_ADDR, 53))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((LISTEN_ADDR, 53))
        tcp.listen(64)
        store = NetworkStore(args.database)
    except (OSError, ValueError, ImportError) as exc:
        out.write(f"error: start dns server for {args.container}: {exc}\n")
        out.flush()
        return 1
    from berth.network import daemon

    daemon.detach(out)
    Server(udp, tcp, upstream, upstreams,
           lambda name: store.resolve_names(args.container, name), pidfd).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
