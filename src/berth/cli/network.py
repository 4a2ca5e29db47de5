"""`berth network ...` and `berth port [add|rm]`: thin adapters over
`berth.network.NetworkManager`, with Docker's flags, output and errors."""

from __future__ import annotations

import sys
from typing import Any

import click

from berth.cli.containers import DockerCommand
from berth.errors import BerthError, InvalidArgumentError
from berth.paths import Paths

CTX = {"help_option_names": ["-h", "--help"]}


class NetCommand(DockerCommand):
    """Docker's network commands exit 1 with the daemon's message (never 125,
    which DockerCommand keeps for `create` meaning `berth create`)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return click.Command.invoke(self, ctx)
        except BerthError as exc:
            click.echo(f"Error response from daemon: {exc.message}", err=True)
            sys.exit(1)


def _manager(ctx: click.Context):
    from berth.network import NetworkManager

    paths: Paths = ctx.find_object(Paths) or Paths()
    nm = NetworkManager(paths)
    ctx.call_on_close(nm.close)
    return nm


def _container(ctx: click.Context, ref: str):
    from berth.engine.store import Store

    paths: Paths = ctx.find_object(Paths) or Paths()
    store = Store(paths)
    ctx.call_on_close(store.close)
    return store.resolve(ref)


def _kv(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for v in values:
        key, _, val = v.partition("=")
        out[key] = val
    return out


@click.group("network", context_settings=CTX, help="Manage networks.")
def network() -> None:
    pass


@network.command("create", cls=NetCommand, context_settings=CTX)
@click.option("-d", "--driver", default="bridge")
@click.option("--subnet", multiple=True)
@click.option("--gateway", multiple=True)
@click.option("--ip-range", multiple=True)
@click.option("--ipv6", is_flag=True)
@click.option("--internal", is_flag=True)
@click.option("--attachable", is_flag=True)
@click.option("--label", multiple=True)
@click.option("-o", "--opt", multiple=True)
@click.argument("name")
@click.pass_context
def create(ctx: click.Context, name: str, driver: str, subnet: tuple[str, ...],
           gateway: tuple[str, ...], ip_range: tuple[str, ...], ipv6: bool, internal: bool,
           attachable: bool, label: tuple[str, ...], opt: tuple[str, ...]) -> None:
    """Create a network."""
    net = _manager(ctx).create(name, subnet=subnet, gateway=gateway, ip_range=ip_range,
                               internal=internal, labels=_kv(label), options=_kv(opt),
                               driver=driver, ipv6=ipv6)
    click.echo(net.id)


# Docker's pre-defined networks besides the default bridge: listed and
# inspectable, never created, connected to or removed
PREDEFINED = {"host": "host", "none": "null"}


def _predefined(nm: Any, name: str, created: str) -> dict[str, Any]:
    """`network inspect` of host or none, as Docker shows them; the id is
    stable for one engine root."""
    import hashlib

    nid = hashlib.sha256(f"{nm.paths.root}\0{name}".encode()).hexdigest()
    return {"Name": name, "Id": nid, "Created": created, "Scope": "local", "Driver": PREDEFINED[name],
            "EnableIPv6": False, "IPAM": {"Driver": "default", "Options": None, "Config": []},
            "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": {}, "Options": {}, "Labels": {}}


def _entries(nm: Any) -> list[dict[str, Any]]:
    """Every network as `ls` sees it: berth's own, then host and none."""
    out = [{"id": n.id, "name": n.name, "driver": "bridge", "internal": n.internal, "ipv6": n.enable_ipv6,
            "labels": dict(n.labels), "created": n.created, "builtin": n.is_default} for n in nm.list()]
    created = next((e["created"] for e in out if e["builtin"]), "")
    for name in PREDEFINED:
        doc = _predefined(nm, name, created)
        out.append({"id": doc["Id"], "name": name, "driver": doc["Driver"], "internal": False, "ipv6": False,
                    "labels": {}, "created": created, "builtin": True})
    return out


def _row(e: dict[str, Any]) -> dict[str, Any]:
    return {"ID": e["id"][:12], "Name": e["name"], "Driver": e["driver"], "Scope": "local",
            "Internal": str(e["internal"]).lower(), "IPv6": str(e["ipv6"]).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in e["labels"].items()),
            "CreatedAt": e["created"]}


@network.command("ls", cls=NetCommand, context_settings=CTX)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--no-trunc", is_flag=True)
@click.option("--format", "fmt", default="")
@click.option("-f", "--filter", "filters", multiple=True)
@click.pass_context
def ls(ctx: click.Context, quiet: bool, no_trunc: bool, fmt: str,
       filters: tuple[str, ...]) -> None:
    """List networks."""
    from berth.cli.listing import render_rows

    nets = _entries(_manager(ctx))
    for f in filters:
        k, _, v = f.partition("=")
        if k == "name":
            nets = [n for n in nets if v in n["name"]]
        elif k == "id":
            nets = [n for n in nets if n["id"].startswith(v)]
        elif k == "driver":
            nets = [n for n in nets if v == n["driver"]]
        elif k == "label":
            lk, eq, lv = v.partition("=")
            nets = [n for n in nets if lk in n["labels"] and (not eq or n["labels"][lk] == lv)]
        elif k == "type":
            if v not in ("builtin", "custom"):
                raise InvalidArgumentError(f"invalid filter: 'type'='{v}'")
            nets = [n for n in nets if (v == "builtin") == n["builtin"]]
        else:
            raise InvalidArgumentError(f"invalid filter '{k}'")
    nets.sort(key=lambda n: n["name"])
    rows = [_row(n) for n in nets]
    if no_trunc:
        for r, n in zip(rows, nets, strict=True):
            r["ID"] = n["id"]
    if quiet:
        for r in rows:
            click.echo(r["ID"])
        return
    click.echo(render_rows(fmt or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows,
                           {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER",
                            "Scope": "SCOPE", "Internal": "INTERNAL", "IPv6": "IPV6",
                            "Labels": "LABELS", "CreatedAt": "CREATED AT"}))


@network.command("inspect", cls=NetCommand, context_settings=CTX)
@click.option("-f", "--format", "fmt", default="")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...], fmt: str) -> None:
    """Display detailed information on one or more networks."""
    from berth import jsonio
    from berth.engine import template

    nm = _manager(ctx)
    out, failed = [], False
    for n in names:
        try:
            if n in PREDEFINED:
                out.append(_predefined(nm, n, nm.get("bridge").created))
            else:
                out.append(nm.inspect(nm.get(n)))
        except BerthError as exc:
            click.echo(f"Error response from daemon: {exc.message}", err=True)
            failed = True
    if fmt:
        for o in out:
            click.echo(template.render(fmt, o))
    else:
        click.echo(jsonio.dumps(out, indent=4))
    if failed:
        sys.exit(1)


@network.command("rm", cls=NetCommand, context_settings=CTX)
@click.option("-f", "--force", is_flag=True)
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove one or more networks."""
    from berth.errors import NotFoundError

    nm = _manager(ctx)
    failed = False
    for n in names:
        try:
            nm.remove(n)
        except NotFoundError as exc:
            if force:
                continue
            click.echo(f"Error response from daemon: {exc.message}", err=True)
            failed = True
            continue
        except BerthError as exc:
            click.echo(f"Error response from daemon: {exc.message}", err=True)
            failed = True
            continue
        click.echo(n)
    if failed:
        sys.exit(1)


@network.command("prune", cls=NetCommand, context_settings=CTX)
@click.option("-f", "--force", is_flag=True)
@click.option("--filter", "filters", multiple=True)
@click.pass_context
def prune(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all unused networks."""
    if not force and not click.confirm(
            "WARNING! This will remove all custom networks not used by at least one "
            "container.\nAre you sure you want to continue?", default=False):
        return
    removed = _manager(ctx).prune()
    if removed:
        click.echo("Deleted Networks:")
        for n in removed:
            click.echo(n)


@network.command("connect", cls=NetCommand, context_settings=CTX)
@click.option("--ip", default=None)
@click.option("--ip6", default=None)
@click.option("--alias", multiple=True)
@click.argument("net")
@click.argument("container")
@click.pass_context
def connect(ctx: click.Context, net: str, container: str, ip: str | None, ip6: str | None,
            alias: tuple[str, ...]) -> None:
    """Connect a running container to a network."""
    from berth.errors import ConflictError

    rec = _container(ctx, container)
    if not rec.is_running or not rec.pid:
        raise ConflictError(f"container {rec.id} is not running")
    _manager(ctx).attach(rec.id, rec.pid, net, ip=ip, ip6=ip6, aliases=alias, name=rec.name)


@network.command("disconnect", cls=NetCommand, context_settings=CTX)
@click.option("-f", "--force", is_flag=True)
@click.argument("net")
@click.argument("container")
@click.pass_context
def disconnect(ctx: click.Context, net: str, container: str, force: bool) -> None:
    """Disconnect a container from a network."""
    rec = _container(ctx, container)
    _manager(ctx).detach(rec.id, net, force=force)


@click.command("port", cls=NetCommand, context_settings=CTX)
@click.argument("args", nargs=-1, required=True)
@click.pass_context
def port(ctx: click.Context, args: tuple[str, ...]) -> None:
    """List port mappings of a container, or change them on a running one.

    \b
    berth port CONTAINER [PRIVATE_PORT[/PROTO]]
    berth port add CONTAINER [IP:][HOST:]PORT[/PROTO]...
    berth port rm CONTAINER PORT[/PROTO]|HOST:PORT[/PROTO]...
    """
    from berth.network.model import join_host_port, parse_port_spec

    if args[0] in ("add", "rm") and len(args) >= 3:
        rec = _container(ctx, args[1])
        nm = _manager(ctx)
        specs = [m for s in args[2:] for m in parse_port_spec(s)]
        if args[0] == "add":
            ipv6 = any(e.ip6 is not None for e in nm.endpoints(rec.id)[:1])
            for m in nm.change_ports(rec.id, add=specs):
                for ip in m.host_addresses(ipv6):
                    click.echo(f"{m.key} -> {join_host_port(ip, m.host_port)}")
        else:
            nm.change_ports(rec.id, remove=specs)
        return
    if len(args) > 2:
        raise InvalidArgumentError(f"\"port\" requires at most 2 arguments, got {len(args)}")
    rec = _container(ctx, args[0])
    # as docker: one line per host address (0.0.0.0 and [::] for "every address"
    # on a network with IPv6)
    bindings = [(m, join_host_port(ip, m.host_port))
                for e in _manager(ctx).endpoints(rec.id) for m in e.ports
                for ip in m.host_addresses(e.ip6 is not None)]
    if len(args) == 2:
        key = args[1] if "/" in args[1] else f"{args[1]}/tcp"
        bindings = [(m, b) for m, b in bindings if m.key == key]
        if not bindings:
            raise InvalidArgumentError(f"no public port '{key}' published for {rec.short_id}")
        for _m, b in bindings:
            click.echo(b)
        return
    for m, b in bindings:
        click.echo(f"{m.key} -> {b}")


def register(cli: click.Group) -> None:
    cli.add_command(network)
    cli.add_command(port)  # replaces the engine's placeholder `port`
