"""`berth volume ...`, `berth info`, `berth version`."""

from __future__ import annotations

import os
import platform
import sys

import click

from berth.cli.containers import DockerCommand, command, engine, for_each
from berth.errors import InvalidArgumentError


@click.group("volume", help="Manage volumes.")
def volume() -> None:
    pass


@volume.command("create", cls=DockerCommand)
@click.option("-d", "--driver", default="local")
@click.option("--label", multiple=True)
@click.option("-o", "--opt", multiple=True)
@click.argument("name", required=False, default="")
@click.pass_context
def volume_create(ctx: click.Context, name: str, driver: str, label: tuple[str, ...],
                  opt: tuple[str, ...]) -> None:
    """Create a volume."""
    from berth.engine.options import parse_labels

    v = engine(ctx).volumes.create(name, driver, parse_labels(list(label)),
                                   parse_labels(list(opt)))
    click.echo(v["Name"])


@volume.command("ls", cls=DockerCommand)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--format", "fmt", default="")
@click.option("-f", "--filter", "filters", multiple=True)
@click.pass_context
def volume_ls(ctx: click.Context, quiet: bool, fmt: str, filters: tuple[str, ...]) -> None:
    """List volumes."""
    from berth.cli.listing import render_rows

    eng = engine(ctx)
    vols = eng.volumes.list()
    for f in filters:
        k, _, v = f.partition("=")
        if k == "name":
            vols = [x for x in vols if v in x["Name"]]
        elif k == "dangling":
            want = v in ("true", "1")
            vols = [x for x in vols if (not eng.volumes.users(x["Name"])) == want]
        elif k == "driver":
            vols = [x for x in vols if x["Driver"] == v]
        else:
            raise InvalidArgumentError(f"invalid filter '{k}'")
    if quiet:
        for x in vols:
            click.echo(x["Name"])
        return
    click.echo(render_rows(fmt or "table {{.Driver}}\t{{.Name}}", vols,
                           {"Driver": "DRIVER", "Name": "VOLUME NAME",
                            "Mountpoint": "MOUNTPOINT"}))


@volume.command("inspect", cls=DockerCommand)
@click.option("-f", "--format", "fmt", default="")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def volume_inspect(ctx: click.Context, names: tuple[str, ...], fmt: str) -> None:
    """Display detailed information on one or more volumes."""
    from berth import jsonio
    from berth.engine import template
    from berth.errors import NotFoundError

    eng = engine(ctx)
    out, failed = [], False
    for n in names:
        try:
            out.append(eng.volumes.inspect(n))
        except NotFoundError as exc:
            click.echo(f"Error response from daemon: {exc.message}", err=True)
            failed = True
    if fmt:
        for v in out:
            click.echo(template.render(fmt, v))
    else:
        click.echo(jsonio.dumps(out, indent=4))
    if failed:
        sys.exit(1)


@volume.command("rm", cls=DockerCommand)
@click.option("-f", "--force", is_flag=True)
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def volume_rm(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Remove one or more volumes."""
    from berth.errors import NotFoundError

    eng = engine(ctx)

    def remove(name: str) -> None:
        try:
            eng.volumes.remove(name)
        except NotFoundError:
            if not force:
                raise

    for_each(names, remove)


@volume.command("prune", cls=DockerCommand)
@click.option("-f", "--force", is_flag=True)
@click.option("-a", "--all", "all_volumes", is_flag=True)
@click.pass_context
def volume_prune(ctx: click.Context, force: bool, all_volumes: bool) -> None:
    """Remove unused local volumes."""
    from berth.cli.image import human_size

    if not force:
        click.echo("WARNING! This will remove anonymous local volumes not used by at least one "
                   "container.\nAre you sure you want to continue? [y/N] ", nl=False)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return
    removed, space = engine(ctx).volumes.prune(all_volumes)
    if removed:
        click.echo("Deleted Volumes:")
        for n in removed:
            click.echo(n)
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(space)}")


@command("version")
@click.option("-f", "--format", "fmt", default="")
def version(fmt: str) -> None:
    """Show the berth version information."""
    from berth import __version__
    from berth.engine import template

    data = {"Client": {"Version": __version__, "ApiVersion": "1.41",
                       "GoVersion": f"python{platform.python_version()}", "Os": "linux",
                       "Arch": platform.machine()},
            "Server": {"Version": __version__, "ApiVersion": "1.41", "MinAPIVersion": "1.12",
                       "Os": "linux", "Arch": platform.machine(),
                       "KernelVersion": platform.release()}}
    if fmt:
        click.echo(template.render(fmt, data))
        return
    c, s = data["Client"], data["Server"]
    click.echo(f"Client:\n Version:           {c['Version']}\n API version:       "
               f"{c['ApiVersion']}\n Python version:    {platform.python_version()}\n"
               f" OS/Arch:           linux/{c['Arch']}\n\nServer: berth (daemonless)\n"
               f" Engine:\n  Version:          {s['Version']}\n  API version:      "
               f"{s['ApiVersion']} (minimum version {s['MinAPIVersion']})\n"
               f"  OS/Arch:          linux/{s['Arch']}\n  Kernel:           "
               f"{s['KernelVersion']}")


@command("info")
@click.option("-f", "--format", "fmt", default="")
@click.pass_context
def info(ctx: click.Context, fmt: str) -> None:
    """Display system-wide information."""
    from berth import __version__
    from berth.cgroups import detect_mode
    from berth.engine import template

    eng = engine(ctx)
    recs = eng.list()
    running = sum(r.status == "running" for r in recs)
    paused = sum(r.status == "paused" for r in recs)
    mode = detect_mode()
    data = {
        "Containers": len(recs), "ContainersRunning": running, "ContainersPaused": paused,
        "ContainersStopped": len(recs) - running - paused,
        "Images": len(eng.images.list()), "Driver": eng.images.snapshots.driver,
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs",
        "CgroupVersion": "2" if mode == "v2" else "1",
        "KernelVersion": platform.release(), "OperatingSystem": _os_name(), "OSType": "linux",
        "Architecture": platform.machine(), "NCPU": os.cpu_count() or 1,
        "MemTotal": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
        "DockerRootDir": eng.paths.root, "Name": platform.node(),
        "ServerVersion": __version__, "DefaultRuntime": "berth",
        "Runtimes": {"berth": {"path": "berth (in-process)"}, "runc": {"path": "runc"}},
        "SecurityOptions": ["name=seccomp,profile=builtin"],
    }
    if fmt:
        click.echo(template.render(fmt, data))
        return
    click.echo(
        f"Server:\n Containers: {data['Containers']}\n  Running: {running}\n  Paused: {paused}\n"
        f"  Stopped: {data['ContainersStopped']}\n Images: {data['Images']}\n"
        f" Server Version: {__version__}\n Storage Driver: {data['Driver']}\n"
        f" Logging Driver: json-file\n Cgroup Driver: cgroupfs\n"
        f" Cgroup Version: {data['CgroupVersion']}\n Runtimes: berth runc\n"
        f" Default Runtime: berth\n Security Options:\n  seccomp\n   Profile: builtin\n"
        f" Kernel Version: {data['KernelVersion']}\n Operating System: {data['OperatingSystem']}\n"
        f" OSType: linux\n Architecture: {data['Architecture']}\n CPUs: {data['NCPU']}\n"
        f" Total Memory: {data['MemTotal'] / (1 << 30):.4g}GiB\n Name: {data['Name']}\n"
        f" Docker Root Dir: {eng.paths.root}")


def _os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


@click.group("system", help="Manage berth.")
def system() -> None:
    pass


@system.command("boot", cls=DockerCommand)
@click.pass_context
def system_boot(ctx: click.Context) -> None:
    """Start the containers a host boot stopped (restart policy always, or
    unless-stopped and not stopped by a user); print their ids."""
    for cid in engine(ctx).boot():
        click.echo(cid)


@system.command("prune", cls=DockerCommand)
@click.option("-a", "--all", "all_images", is_flag=True)
@click.option("--volumes", is_flag=True)
@click.option("-f", "--force", is_flag=True)
@click.pass_context
def system_prune(ctx: click.Context, all_images: bool, volumes: bool, force: bool) -> None:
    """Remove stopped containers, dangling images (all unused ones with -a)
    and, with --volumes, unused anonymous volumes."""
    from berth.cli.image import human_size
    from berth.image.service import ImageService

    if not force:
        click.echo("WARNING! This will remove all stopped containers and dangling images.\n"
                   "Are you sure you want to continue? [y/N] ", nl=False)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return
    eng = engine(ctx)
    removed = eng.prune()
    if removed:
        click.echo("Deleted Containers:")
        for cid in removed:
            click.echo(cid)
        click.echo("")
    space = 0
    if volumes:
        names, space = eng.volumes.prune()
        if names:
            click.echo("Deleted Volumes:")
            for n in names:
                click.echo(n)
            click.echo("")
    svc = ImageService(eng.paths, os.environ.get("BERTH_SNAPSHOTTER", "auto"),
                       in_use=eng.image_in_use)
    try:
        deleted, reclaimed = svc.prune(all_images)
    finally:
        svc.close()
    if deleted:
        click.echo("Deleted Images:")
        for d in deleted:
            for k, v in d.items():
                click.echo(f"{k.lower()}: {v}")
        click.echo("")
    click.echo(f"Total reclaimed space: {human_size(space + reclaimed)}")


@system.command("df", cls=DockerCommand)
@click.pass_context
def system_df(ctx: click.Context) -> None:
    """Show disk usage of images, containers, volumes."""
    from berth.cli.image import human_size
    from berth.cli.listing import table
    from berth.engine.volumes import _du

    eng = engine(ctx)
    images = eng.images.list()
    recs = eng.list()
    used = {r.image_id for r in recs}
    img_size = sum(i.size for i in images)
    img_unused = sum(i.size for i in images if str(i.id) not in used)
    ctr_size = sum(_du(eng.bundle(r.id)) for r in recs)
    ctr_unused = sum(_du(eng.bundle(r.id)) for r in recs if not r.is_running)
    vols = eng.volumes.list()
    vol_sizes = {v["Name"]: _du(v["Mountpoint"]) for v in vols}
    vol_unused = sum(sz for n, sz in vol_sizes.items() if not eng.volumes.users(n))
    rows = [
        ["Images", str(len(images)), str(sum(str(i.id) in used for i in images)),
         human_size(img_size), _pct(img_unused, img_size, human_size)],
        ["Containers", str(len(recs)), str(sum(r.is_running for r in recs)),
         human_size(ctr_size), _pct(ctr_unused, ctr_size, human_size)],
        ["Local Volumes", str(len(vols)), str(sum(bool(eng.volumes.users(v["Name"]))
                                               for v in vols)),
         human_size(sum(vol_sizes.values())), _pct(vol_unused, sum(vol_sizes.values()),
                                                   human_size)],
        ["Build Cache", "0", "0", "0B", "0B"],
    ]
    click.echo(table(rows, ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]))


def _pct(part: int, whole: int, fmt) -> str:
    if not whole:
        return fmt(part)
    return f"{fmt(part)} ({part * 100 // whole}%)"


def register(cli: click.Group) -> None:
    cli.add_command(system)
    cli.add_command(volume)
    cli.add_command(version)
    cli.add_command(info)
