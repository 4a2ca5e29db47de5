"""The [::1] proxy of a container's ports published on IPv6.

A port published on an --ipv6 network is DNATed from the host's IPv6
addresses to the container's (nft.ruleset6), but not from ::1: the kernel
never routes a packet whose source is ::1 out of the loopback (IPv6 has no
`route_localnet`), so a DNATed connection from [::1] would be dropped.
Docker serves that case with its userland proxy; berth does too, for that
case only: one small process per container with such ports, listening on
[::1]:HOSTPORT and relaying to [CONTAINER_IP6]:PORT (TCP: a thread per
connection; UDP: a socket per client, forgotten after UDP_IDLE_S).

Like the embedded DNS server (dnsctl.py), it is recorded in the database
by pid and start time, started by the attach that publishes the ports (it
detaches once every socket is bound, or reports why it could not), stopped
when they go, and leaves by itself when the container's init (--watch-pid)
does.

    python -m berth.network.proxy --database DB --container CID [--watch-pid PID] \\
        --map tcp:8080:fd42::2:80 [--map udp:5353:fd42::2:53 ...]

(--database names the engine it serves in `ps`, as the DNS server's does.)
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import sys
import threading
import time
from collections.abc import Sequence

LISTEN = "::1"
UDP_IDLE_S = 60.0
CONNECT_TIMEOUT_S = 5.0

TYPE_CHECKING = False
if TYPE_CHECKING:
    from berth.network.store import NetworkStore


def parse_map(text: str) -> tuple[str, int, str, int]:
    """`proto:listen_port:target_ip6:target_port` (the address keeps its colons)."""
    proto, _, rest = text.partition(":")
    lport, _, rest = rest.partition(":")
    target, _, tport = rest.rpartition(":")
    if proto not in ("tcp", "udp") or not target:
        raise ValueError(f"invalid map {text!r}")
    return proto, int(lport), target, int(tport)


def _relay(client: socket.socket, target: tuple[str, int]) -> None:
    """One TCP connection, both ways, half-closes passed on."""
    try:
        upstream = socket.create_connection(target, timeout=CONNECT_TIMEOUT_S)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    client.settimeout(None)
    sel = selectors.DefaultSelector()
    peers = {client: upstream, upstream: client}
    for s in peers:
        sel.register(s, selectors.EVENT_READ)
    open_ = 2
    try:
        while open_:
            for key, _ in sel.select():
                src = key.fileobj
                assert isinstance(src, socket.socket)
                try:
                    data = src.recv(1 << 16)
                except OSError:
                    data = b""
                if data:
                    try:
                        peers[src].sendall(data)
                        continue
                    except OSError:
                        return
                sel.unregister(src)
                open_ -= 1
                with contextlib.suppress(OSError):
                    peers[src].shutdown(socket.SHUT_WR)
    finally:
        sel.close()
        client.close()
        upstream.close()


class Proxy:
    def __init__(self, maps: Sequence[tuple[str, int, str, int]], pidfd: int | None) -> None:
        self.sel = selectors.DefaultSelector()
        self.pidfd = pidfd
        self.udp_clients: dict[tuple[socket.socket, tuple], tuple[socket.socket, float]] = {}
        for proto, lport, target, tport in maps:
            kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
            s = socket.socket(socket.AF_INET6, kind)
            if proto == "tcp":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((LISTEN, lport))
            if proto == "tcp":
                s.listen(128)
                self.sel.register(s, selectors.EVENT_READ, ("accept", (target, tport)))
            else:
                self.sel.register(s, selectors.EVENT_READ, ("datagram", (target, tport)))
        if pidfd is not None:
            self.sel.register(pidfd, selectors.EVENT_READ, ("exit", None))

    def serve(self) -> None:
        while True:
            for key, _ in self.sel.select(timeout=UDP_IDLE_S / 4):
                what, target = key.data
                if what == "exit":
                    return
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    if what == "accept":
                        conn, _ = sock.accept()
                        threading.Thread(target=_relay, args=(conn, target), daemon=True).start()
                    elif what == "datagram":
                        self._datagram(sock, target)
                    else:  # "reply": target is (listener, client)
                        listener, client = target
                        data = sock.recv(1 << 16)
                        listener.sendto(data, client)
                        self.udp_clients[(listener, client)] = (sock, time.monotonic())
                except OSError:
                    pass
            self._expire()

    def _datagram(self, listener: socket.socket, target: tuple[str, int]) -> None:
        data, client = listener.recvfrom(1 << 16)
        entry = self.udp_clients.get((listener, client))
        if entry is None:
            up = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            up.connect(target)
            self.sel.register(up, selectors.EVENT_READ, ("reply", (listener, client)))
        else:
            up = entry[0]
        self.udp_clients[(listener, client)] = (up, time.monotonic())
        up.send(data)

    def _expire(self) -> None:
        now = time.monotonic()
        for k, (up, last) in list(self.udp_clients.items()):
            if now - last > UDP_IDLE_S:
                del self.udp_clients[k]
                self.sel.unregister(up)
                up.close()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="berth-proxy")
    ap.add_argument("--database", default="")
    ap.add_argument("--container", required=True)
    ap.add_argument("--watch-pid", type=int)
    ap.add_argument("--map", action="append", default=[])
    args = ap.parse_args(argv)
    out = sys.stdout
    try:
        maps = [parse_map(m) for m in args.map]
        pidfd = os.pidfd_open(args.watch_pid) if args.watch_pid else None
        proxy = Proxy(maps, pidfd)
    except OSError as exc:
        if exc.errno == 98:  # EADDRINUSE
            out.write(f"error: driver failed programming external connectivity on endpoint "
                      f"{args.container[:12]}: listen on [{LISTEN}]: bind: address already in "
                      "use\n")
        else:
            out.write(f"error: start port proxy for {args.container[:12]}: {exc}\n")
        out.flush()
        return 1
    except ValueError as exc:
        out.write(f"error: start port proxy for {args.container[:12]}: {exc}\n")
        out.flush()
        return 1
    from berth.network import daemon

    daemon.detach(out)
    proxy.serve()
    return 0


# lifecycle, as dnsctl's for the DNS server


def start(store: NetworkStore, database: str, container_id: str, watch_pid: int | None,
          maps: Sequence[tuple[str, int, str, int]]) -> int:
    """Spawn the proxy; it detaches once every socket is bound."""
    from berth.network import daemon

    argv = [sys.executable, "-m", "berth.network.proxy", "--database", database,
            "--container", container_id]
    if watch_pid:
        argv += ["--watch-pid", str(watch_pid)]
    for proto, lport, target, tport in maps:
        argv += ["--map", f"{proto}:{lport}:{target}:{tport}"]
    pid = daemon.spawn(argv, f"start port proxy for {container_id[:12]}")
    store.set_port_proxy(container_id, pid, daemon.starttime(pid))
    return pid


def stop(store: NetworkStore, container_id: str) -> None:
    """SIGTERM the container's proxy and wait until it is gone."""
    from berth.network import daemon

    rec = store.port_proxy(container_id)
    if not rec:
        return
    pid, start_time = rec
    daemon.stop(pid, start_time, f"stop port proxy {pid} of {container_id[:12]}")
    store.set_port_proxy(container_id, None)


if __name__ == "__main__":
    sys.exit(main())
