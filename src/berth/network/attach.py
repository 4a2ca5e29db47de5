"""What the engine calls to give a container its networks, in Docker's terms.

The engine keeps Docker's container fields (HostConfig.NetworkMode,
PortBindings, PublishAllPorts, Dns, DnsSearch, DnsOptions, ExtraHosts and
NetworkingConfig.EndpointsConfig); `start_request` turns them into a plain
dict the monitor carries in monitor.json, and `attach_container` runs
between `runtime create` (the network namespace exists) and `runtime start`:

    req = start_request(rec.host_config, rec.config, rec.name, endpoints_config)
    ...                                   # in the monitor's start helper:
    pid = rt.create(cid, bundle, ...)
    attach_container(paths, cid, pid, req, bundle)      # all networks or none
    rt.start(cid)
    ...                                   # when the container stops or is removed:
    release_container(paths, cid)

/etc/hosts and /etc/resolv.conf are rewritten in place in the bundle (the
files the engine bind-mounts), so the bind mounts made by create see them.

The monitor zygote (engine/zygote.py) calls `keep_bridges` once it has
loaded this package: in the monitors and start helpers it forks, the
default network's bridge and berth's rules outlive the last container
while the zygote lives (NetworkManager keep_default), and `release_kept`,
called by the zygote as it leaves, deletes what no container uses. The
roots it served are listed in a file of its own beside its socket, so a
zygote that was killed leaves a list the next one to leave handles too.
"""

from __future__ import annotations

import os

from berth.errors import BerthError, InvalidArgumentError
from berth.network.model import DEFAULT_NETWORK, PortMapping, join_host_port, parse_port_spec
from berth.paths import Paths

TYPE_CHECKING = False  # typing is not imported on `berth run`'s path
if TYPE_CHECKING:
    from typing import Any

NO_NETWORK = ("none", "host")

# (zygote pid, its list of roots): set in the zygote by keep_bridges
_keeper: tuple[int, str] | None = None
_KEPT_SUFFIX = ".network-roots"


def keep_bridges(registry_prefix: str) -> None:
    """Called by the monitor zygote (this process) before it forks: see the
    module's doc. `registry_prefix` is a path in its private directory
    (its socket's); the roots go in PREFIX.PID.network-roots."""
    global _keeper
    _keeper = (os.getpid(), f"{registry_prefix}.{os.getpid()}{_KEPT_SUFFIX}")


def _keeping(paths: Paths) -> bool:
    """Whether this process was forked by a zygote that still lives (and
    has `paths.root` listed for its exit)."""
    if _keeper is None:
        return False
    pid, registry = _keeper
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open(registry) as f:
            if paths.root in f.read().splitlines():
                return True
    except FileNotFoundError:
        pass
    try:
        fd = os.open(registry, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return False
    try:
        os.write(fd, (paths.root + "\n").encode())  # one write: appends do not interleave
    finally:
        os.close(fd)
    return True


def release_kept(registry_prefix: str) -> None:
    """Called by the zygote as it leaves: the bridges and rules kept for
    the roots it served (and those of zygotes that died without doing
    this) are removed unless a container uses them."""
    from berth.network.manager import NetworkManager

    d, base = os.path.split(registry_prefix)
    me = os.getpid()
    for name in sorted(os.listdir(d or ".")):
        if not (name.startswith(base + ".") and name.endswith(_KEPT_SUFFIX)):
            continue
        pid_text = name[len(base) + 1:-len(_KEPT_SUFFIX)]
        if not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if pid != me:
            try:
                os.kill(pid, 0)
                continue  # another zygote still serving
            except ProcessLookupError:
                pass
            except OSError:
                continue
        path = os.path.join(d, name)
        try:
            with open(path) as f:
                roots = [r for r in f.read().splitlines() if r]
        except FileNotFoundError:
            continue
        for root in dict.fromkeys(roots):
            paths = Paths(root)
            if not os.path.exists(paths.database):
                continue
            with NetworkManager(paths) as nm:
                nm.release_unused()
        os.unlink(path)


def is_networked(network_mode: str) -> bool:
    """Whether berth.network has anything to do for this NetworkMode."""
    mode = network_mode or DEFAULT_NETWORK
    return mode not in NO_NETWORK and not mode.startswith("container:")


def port_bindings(specs: list[str]) -> tuple[dict[str, list[dict[str, str]]], dict[str, dict]]:
    """`-p` values as Docker's (HostConfig.PortBindings, Config.ExposedPorts)."""
    bindings: dict[str, list[dict[str, str]]] = {}
    exposed: dict[str, dict] = {}
    for spec in specs:
        for m in parse_port_spec(spec):
            host = str(m.host_port) if m.host_port else ""
            if m.host_port_end:
                host = f"{m.host_port}-{m.host_port_end}"
            bindings.setdefault(m.key, []).append({"HostIp": m.host_ip, "HostPort": host})
            exposed[m.key] = {}
    return bindings, exposed


def mappings(port_bindings_: dict[str, Any] | None, exposed: dict[str, Any] | None = None,
             publish_all: bool = False) -> list[PortMapping]:
    """Docker's PortBindings (and, with -P, every exposed port) as mappings."""
    out: list[PortMapping] = []
    seen = set()
    for key, binds in (port_bindings_ or {}).items():
        port, _, proto = key.partition("/")
        for b in binds or [{}]:
            host = (b or {}).get("HostPort") or ""
            ip = (b or {}).get("HostIp") or ""
            if ":" in ip:
                ip = f"[{ip}]"
            spec = f"{ip}:{host}:{port}/{proto or 'tcp'}" if ip else (
                f"{host}:{port}/{proto or 'tcp'}" if host else f"{port}/{proto or 'tcp'}")
            out.extend(parse_port_spec(spec))
        seen.add(f"{port}/{proto or 'tcp'}")
    if publish_all:
        for key in exposed or {}:
            port, _, proto = key.partition("/")
            if f"{port}/{proto or 'tcp'}" not in seen:
                out.extend(parse_port_spec(f"{port}/{proto or 'tcp'}"))
    return out


def start_request(host_config: dict[str, Any], config: dict[str, Any], name: str,
                  endpoints_config: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The network part of starting a container (JSON-able), or None when
    berth.network has nothing to do (none, host, container:<id>)."""
    mode = host_config.get("NetworkMode") or DEFAULT_NETWORK
    if mode == "default":
        mode = DEFAULT_NETWORK
    if not is_networked(mode):
        return None
    eps = {(DEFAULT_NETWORK if k in ("default", "") else k): v
           for k, v in (endpoints_config or {}).items()}
    networks = [mode] + [n for n in eps if n != mode]
    return {
        "name": name.lstrip("/"),
        "hostname": config.get("Hostname") or "",
        "networks": [
            {"name": n,
             "ip": ((eps.get(n) or {}).get("IPAMConfig") or {}).get("IPv4Address") or None,
             "ip6": ((eps.get(n) or {}).get("IPAMConfig") or {}).get("IPv6Address") or None,
             "aliases": list((eps.get(n) or {}).get("Aliases") or []),
             "mac": config.get("MacAddress") or None if n == mode else None}
            for n in networks
        ],
        "ports": [{"container_port": m.container_port, "host_port": m.host_port,
                   "proto": m.proto, "host_ip": m.host_ip, "host_port_end": m.host_port_end}
                  for m in mappings(host_config.get("PortBindings"), config.get("ExposedPorts"),
                                    bool(host_config.get("PublishAllPorts")))],
        "dns": list(host_config.get("Dns") or []),
        "dns_search": list(host_config.get("DnsSearch") or []),
        "dns_options": list(host_config.get("DnsOptions") or []),
        "extra_hosts": list(host_config.get("ExtraHosts") or []),
    }


def _write_in_place(path: str, text: str) -> None:
    # not write-and-rename: the container's bind mount holds this inode
    with open(path, "w") as f:
        f.write(text)


def attach_container(paths: Paths, container_id: str, pid: int, request: dict[str, Any],
                     bundle: str | None = None) -> list[Any]:
    """Attach the created container (init `pid`) to every network of
    `request`, publish its ports on the first, and write bundle/hosts and
    bundle/resolv.conf. On failure nothing stays attached."""
    from berth.network.files import hosts_content, resolv_conf_content
    from berth.network.manager import NetworkManager

    ports = [PortMapping(**p) for p in request.get("ports") or []]
    with NetworkManager(paths, keep_default=_keeping(paths)) as nm:
        # a restart (policy or `berth start`) after an exit nobody released
        nm.release_all(container_id)
        endpoints = []
        try:
            for i, n in enumerate(request["networks"]):
                endpoints.append(nm.attach(
                    container_id, pid, n["name"], ip=n.get("ip"), ip6=n.get("ip6"),
                    aliases=n.get("aliases") or (),
                    ports=ports if i == 0 else (), name=request.get("name") or "",
                    mac=n.get("mac"), dns=request.get("dns") or ()))
        except BaseException as exc:
            try:
                nm.release_all(container_id)
            except BerthError as cleanup:
                exc.add_note(f"release networks of {container_id[:12]}: {cleanup}")
            raise
        if bundle:
            embedded = any(e.network != DEFAULT_NETWORK for e in endpoints)  # Network.has_dns
            hostname = request.get("hostname") or container_id[:12]
            names = [hostname] if hostname else []
            _write_in_place(os.path.join(bundle, "hosts"), hosts_content(
                " ".join(names), endpoints, request.get("extra_hosts") or ()))
            _write_in_place(os.path.join(bundle, "resolv.conf"), resolv_conf_content(
                embedded_dns=embedded, dns=request.get("dns") or (),
                dns_search=request.get("dns_search") or (),
                dns_options=request.get("dns_options") or ()))
        return endpoints


def release_container(paths: Paths, container_id: str) -> None:
    """Everything the container got from berth.network; idempotent. Cheap
    when there is nothing left (the monitor released it at the exit): the
    database is read (without berth.network.store's imports), and the
    manager only imported when needed."""
    from berth import db

    conn = db.connect(paths.database)
    try:
        if not _peek(paths, "SELECT 1 FROM endpoints WHERE container_id = ?1 UNION ALL"
                     " SELECT 1 FROM dns_servers WHERE container_id = ?1 UNION ALL"
                     " SELECT 1 FROM port_proxies WHERE container_id = ?1",
                     (container_id,), conn, missing=True):
            conn.close()
            return
        from berth.network.store import NetworkStore

        store = NetworkStore(paths.database, conn)
    except BaseException:
        conn.close()
        raise
    from berth.network.manager import NetworkManager

    with NetworkManager(paths, keep_default=_keeping(paths), store=store) as nm:
        nm.release_all(container_id)


def _peek(paths: Paths, sql: str, args: tuple, conn: Any = None,
          missing: bool = False) -> bool:
    """Whether `sql` finds a row; `missing` when the database lacks a table
    it reads (one older than this berth: the store migrates it)."""
    import sqlite3

    from berth import db

    own = conn is None
    if own:
        conn = db.connect(paths.database)
    try:
        return conn.execute(sql, args).fetchone() is not None
    except sqlite3.OperationalError:
        return missing
    finally:
        if own:
            conn.close()


def network_settings(paths: Paths, container_id: str) -> dict[str, Any]:
    """Docker's NetworkSettings.Ports and .Networks of a container."""
    from berth.network.manager import NetworkManager

    with NetworkManager(paths) as nm:
        eps = nm.endpoints(container_id)
        ports: dict[str, list[dict[str, str]] | None] = {}
        networks: dict[str, Any] = {}
        for e in eps:
            for m in e.ports:
                for ip in m.host_addresses(e.ip6 is not None):
                    ports.setdefault(m.key, []).append({"HostIp": ip, "HostPort": str(m.host_port)})
            networks[e.network] = {
                "IPAMConfig": None, "Links": None, "Aliases": list(e.aliases) or None,
                "NetworkID": e.network_id, "EndpointID": e.id,
                "Gateway": str(e.gateway or ""), "IPAddress": str(e.ip),
                "IPPrefixLen": e.prefixlen, "IPv6Gateway": str(e.gateway6 or ""),
                "GlobalIPv6Address": str(e.ip6 or ""), "GlobalIPv6PrefixLen": e.prefixlen6,
                "MacAddress": e.mac, "DriverOpts": None,
            }
        # Docker fills the top-level fields from the default bridge network only
        first = next((e for e in eps if e.network == DEFAULT_NETWORK), None)
        return {
            "Ports": ports,
            "Networks": networks,
            "EndpointID": first.id if first else "",
            "IPAddress": str(first.ip) if first else "",
            "IPPrefixLen": first.prefixlen if first else 0,
            "Gateway": str(first.gateway or "") if first else "",
            "GlobalIPv6Address": str(first.ip6 or "") if first else "",
            "GlobalIPv6PrefixLen": first.prefixlen6 if first else 0,
            "IPv6Gateway": str(first.gateway6 or "") if first else "",
            "MacAddress": first.mac if first else "",
        }


def check_network(paths: Paths, network_mode: str) -> None:
    """`network X not found` at create time, reading the database only; the
    default network is made (NetworkManager) the first time it is asked for."""
    from berth.errors import NotFoundError

    mode = network_mode or DEFAULT_NETWORK
    if mode == "default":
        mode = DEFAULT_NETWORK
    if mode == DEFAULT_NETWORK and _peek(paths, "SELECT 1 FROM networks WHERE name = ?",
                                          (mode,)):
        return  # made already: the common case, without berth.network.store's imports
    from berth.network.store import NetworkStore

    store = NetworkStore(paths.database)
    try:
        store.find_network(mode)
        return
    except NotFoundError:
        if mode != DEFAULT_NETWORK:
            raise
    finally:
        store.close()
    from berth.network.manager import NetworkManager

    with NetworkManager(paths) as nm:
        nm.ensure_default()


def check_network_options(network_mode: str, ip: str | None, ip6: str | None = None) -> None:
    """Docker's refusal at create time (ports with host/none are discarded, as Docker)."""
    mode = network_mode or DEFAULT_NETWORK
    if (ip or ip6) and mode in (DEFAULT_NETWORK, "default", *NO_NETWORK):
        raise InvalidArgumentError("user specified ip address is supported on user defined "
                                   "networks only")


def ports_column(paths: Paths) -> dict[str, str]:
    """`docker ps` PORTS of every container with published ports, by id:
    ``0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp``."""
    from berth.network.store import NetworkStore

    if not os.path.exists(paths.database):
        return {}
    store = NetworkStore(paths.database)
    try:
        out: dict[str, list[str]] = {}
        for ep in store.endpoints():
            for m in ep.ports:
                for ip in m.host_addresses(ep.ip6 is not None):
                    out.setdefault(ep.container_id, []).append(
                        f"{join_host_port(ip, m.host_port)}->{m.key}")
        return {cid: ", ".join(v) for cid, v in out.items()}
    finally:
        store.close()
