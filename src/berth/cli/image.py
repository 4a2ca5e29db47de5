"""`berth image ...` and Docker's top-level aliases (pull, push, images, tag,
rmi, save, load, import, login, logout). One thin adapter per command over
`berth.image.service` / `berth.image.archive`."""

from __future__ import annotations

import os
import re
import sys
import time
from typing import Any

import click

from berth.paths import Paths


def _service(ctx: click.Context, insecure: tuple[str, ...] = (), max_concurrent: int = 3):
    from berth.image.registry import RegistryOptions
    from berth.image.service import ImageService

    paths: Paths = ctx.find_object(Paths) or Paths()
    env_insecure = tuple(x for x in os.environ.get("BERTH_INSECURE_REGISTRIES", "").split(",")
                         if x)
    mirrors = tuple(x for x in os.environ.get("BERTH_REGISTRY_MIRRORS", "").split(",") if x)
    opts = RegistryOptions(insecure_registries=tuple(insecure) + env_insecure,
                           mirrors=tuple(m.split("://")[-1].rstrip("/") for m in mirrors))
    svc = ImageService(paths, os.environ.get("BERTH_SNAPSHOTTER", "auto"), opts,
                       max_concurrent_downloads=max_concurrent)
    ctx.call_on_close(svc.close)
    return svc


# human formats, as Docker prints them ------------------------------------------------


def human_size(n: int) -> str:
    units = ["B", "kB", "MB", "GB", "TB"]
    size, i = float(n), 0
    while size >= 1000 and i < len(units) - 1:
        size /= 1000
        i += 1
    return f"{size:.3g}{units[i]}"


def human_ago(ts: float) -> str:
    if not ts:
        return "N/A"
    d = max(0.0, time.time() - ts)
    for unit, secs in (("year", 365 * 86400), ("month", 30 * 86400), ("week", 7 * 86400),
                       ("day", 86400), ("hour", 3600), ("minute", 60)):
        if d >= secs:
            n = int(d // secs)
            if unit == "hour" and n == 1:
                return "About an hour ago"
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    if d < 1:
        return "Less than a second ago"
    return f"{int(d)} second{'s' if int(d) > 1 else ''} ago"


_FIELD = re.compile(r"{{\s*(json\s+)?\.([A-Za-z0-9_.]*)\s*}}")


def render(template: str, obj: dict[str, Any]) -> str:
    """A small subset of Go templates: ``{{.Field}}``, ``{{.A.B}}``, ``{{json .X}}``."""
    import msgspec

    def sub(m: re.Match) -> str:
        value: Any = obj
        for part in filter(None, m.group(2).split(".")):
            value = value.get(part) if isinstance(value, dict) else None
        if m.group(1):
            return msgspec.json.encode(value).decode()
        if value is None:
            return "<no value>"
        if isinstance(value, list):
            return "[" + " ".join(str(v) for v in value) + "]"
        if isinstance(value, dict):
            return "map[" + " ".join(f"{k}:{v}" for k, v in value.items()) + "]"
        return str(value)

    return _FIELD.sub(sub, template).replace("\\t", "\t").replace("\\n", "\n")


def table(rows: list[list[str]], headers: list[str]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    for r in [headers, *rows]:
        click.echo("   ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())


# progress --------------------------------------------------------------------------------


class TerminalProgress:
    """Per-layer rich progress bars in a terminal; Docker-like status lines otherwise."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.tty = sys.stdout.isatty() and not quiet
        self.tasks: dict[str, Any] = {}
        self.progress = None
        self.last: dict[str, str] = {}
        if self.tty:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.fields[short]}"), TextColumn("{task.description:<18}"),
                BarColumn(), DownloadColumn(), TransferSpeedColumn(), transient=False)
            self.progress.start()

    def status(self, digest: str, text: str, total: int | None = None) -> None:
        short = digest.split(":")[-1][:12]
        if self.progress is not None:
            task = self.tasks.get(digest)
            if task is None:
                task = self.progress.add_task(text, total=total, short=short)
                self.tasks[digest] = task
            if text in ("Download complete", "Extracting", "Pull complete", "Already exists",
                        "Pushed", "Layer already exists") or text.startswith("Mounted"):
                self.progress.update(task, description=text, completed=total)
            else:
                self.progress.update(task, description=text)
            return
        final = text in ("Already exists", "Pull complete", "Pushed",
                         "Layer already exists") or text.startswith("Mounted")
        if not self.quiet and final and self.last.get(digest) != text:
            self.last[digest] = text
            click.echo(f"{short}: {text}")

    def advance(self, digest: str, n: int) -> None:
        if self.progress is not None and digest in self.tasks:
            self.progress.advance(self.tasks[digest], n)

    def message(self, text: str) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            click.echo(text)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


# commands --------------------------------------------------------------------------------


@click.group("image")
def image_group() -> None:
    """Manage images."""


def _platform(text: str | None):
    if not text:
        return None
    from berth.oci.image import parse_platform

    return parse_platform(text)


@click.command("pull")
@click.argument("name")
@click.option("--platform", help="os/arch[/variant] (default: this host's).")
@click.option("-q", "--quiet", is_flag=True, help="Suppress verbose output.")
@click.option("--insecure-registry", multiple=True, help="Allow plain HTTP to this registry.")
@click.option("--max-concurrent-downloads", default=3, show_default=True, type=int)
@click.pass_context
def pull(ctx: click.Context, name: str, platform: str | None, quiet: bool,
         insecure_registry: tuple[str, ...], max_concurrent_downloads: int) -> None:
    """Download an image from a registry."""
    from berth.errors import NotFoundError
    from berth.oci import reference

    svc = _service(ctx, insecure_registry, max_concurrent_downloads)
    ref = reference.parse(name)
    try:
        before = svc.get(str(ref)).id
    except NotFoundError:
        before = None
    progress = TerminalProgress(quiet)
    try:
        image = svc.pull(name, _platform(platform), progress)
    finally:
        progress.stop()
    if not quiet:
        status = "Image is up to date" if image.id == before else "Downloaded newer image"
        click.echo(f"Status: {status} for {ref.familiar}")
    click.echo(str(ref))


@click.command("push")
@click.argument("name")
@click.option("-q", "--quiet", is_flag=True)
@click.option("--insecure-registry", multiple=True)
@click.pass_context
def push(ctx: click.Context, name: str, quiet: bool, insecure_registry: tuple[str, ...]) -> None:
    """Upload an image to a registry."""
    svc = _service(ctx, insecure_registry)
    progress = TerminalProgress(quiet)
    try:
        digest = svc.push(name, progress)
    finally:
        progress.stop()
    if quiet:
        click.echo(str(digest))


def _filters(values: tuple[str, ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not sep:
            raise click.BadParameter(f"bad format of filter (expected name=value): {v}")
        out.setdefault(k, []).append(val)
    return out


@click.command("images")
@click.argument("repository", required=False)
@click.option("-a", "--all", "all_", is_flag=True)
@click.option("-q", "--quiet", is_flag=True, help="Only show image IDs.")
@click.option("--digests", is_flag=True)
@click.option("--no-trunc", is_flag=True)
@click.option("-f", "--filter", "filters", multiple=True, help="dangling=true|false, "
              "reference=PATTERN, before=IMAGE, since=IMAGE")
@click.option("--format", "fmt")
@click.pass_context
def images(ctx: click.Context, repository: str | None, all_: bool, quiet: bool, digests: bool,
           no_trunc: bool, filters: tuple[str, ...], fmt: str | None) -> None:
    """List images."""
    from berth.oci import reference

    svc = _service(ctx)
    f = _filters(filters)
    if repository:
        f.setdefault("reference", []).append(repository)
    rows = []
    for image in svc.list(all_, f):
        created = _created_ts(image.created)
        tags = image.tags or ("<none>:<none>",)
        for t in tags:
            if t == "<none>:<none>":
                repo, tag = "<none>", "<none>"
            else:
                r = reference.parse(t)
                repo, tag = r.familiar_name, r.tag or "<none>"
            digest = next((d.split("@")[1] for d in image.repo_digests
                           if repo != "<none>" and reference.parse(d).familiar_name == repo),
                          "<none>")
            rows.append({"ID": str(image.id) if no_trunc else image.short_id,
                         "Repository": repo, "Tag": tag, "Digest": digest,
                         "CreatedSince": human_ago(created), "CreatedAt": image.created,
                         "Size": human_size(image.size)})
    if quiet:
        for i in dict.fromkeys(r["ID"] for r in rows):
            click.echo(i)
        return
    if fmt:
        if fmt.startswith("table"):
            fmt = fmt[5:].strip()
            click.echo(render(fmt, {k: k.upper() for k in rows[0]} if rows else {}))
        for r in rows:
            click.echo(render(fmt, r))
        return
    headers = ["REPOSITORY", "TAG"] + (["DIGEST"] if digests else []) + [
        "IMAGE ID", "CREATED", "SIZE"]
    table([[r["Repository"], r["Tag"]] + ([r["Digest"]] if digests else []) +
           [r["ID"], r["CreatedSince"], r["Size"]] for r in rows], headers)


def _created_ts(created: str) -> float:
    from berth.image.docker import unix_time

    return float(unix_time(created))


@click.command("inspect")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--format", "fmt")
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...], fmt: str | None) -> None:
    """Display detailed information on one or more images."""
    import json

    svc = _service(ctx)
    docs = [svc.inspect(n) for n in names]
    if fmt:
        for d in docs:
            click.echo(render(fmt, d))
        return
    click.echo(json.dumps(docs, indent=4))


@click.command("history")
@click.argument("name")
@click.option("-H", "--human", default=True, type=bool)
@click.option("--no-trunc", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def history(ctx: click.Context, name: str, human: bool, no_trunc: bool, quiet: bool) -> None:
    """Show the history of an image."""
    svc = _service(ctx)
    rows = svc.history(name)
    if quiet:
        for r in rows:
            click.echo(r["Id"] if no_trunc or r["Id"] == "<missing>" else r["Id"][7:19])
        return
    out = []
    for r in rows:
        ident = r["Id"] if no_trunc or r["Id"] == "<missing>" else r["Id"][7:19]
        by = r["CreatedBy"] if no_trunc or len(r["CreatedBy"]) <= 45 else \
            r["CreatedBy"][:44] + "…"
        out.append([ident, human_ago(r["Created"]) if human else str(r["Created"]), by,
                    human_size(r["Size"]) if human else str(r["Size"]), r["Comment"]])
    table(out, ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"])


@click.command("tag")
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
    _service(ctx).tag(source, target)


@click.command("rmi")
@click.argument("names", nargs=-1, required=True)
@click.option("-f", "--force", is_flag=True)
@click.option("--no-prune", is_flag=True, help="Keep unreferenced layers and blobs.")
@click.pass_context
def rmi(ctx: click.Context, names: tuple[str, ...], force: bool, no_prune: bool) -> None:
    """Remove one or more images."""
    from berth.errors import BerthError

    svc = _service(ctx)
    failed: BerthError | None = None
    for n in names:
        try:
            for line in svc.remove(n, force):
                k, v = next(iter(line.items()))
                click.echo(f"{k}: {v}")
        except BerthError as exc:
            click.echo(f"Error: {exc.message}", err=True)
            failed = exc
    if not no_prune:
        svc.gc()
    if failed is not None:
        sys.exit(failed.exit_code)


@click.command("prune")
@click.option("-a", "--all", "all_", is_flag=True, help="All images not used by a container.")
@click.option("-f", "--force", is_flag=True, help="Do not prompt for confirmation.")
@click.pass_context
def prune(ctx: click.Context, all_: bool, force: bool) -> None:
    """Remove unused images."""
    if not force:
        what = "all images without at least one container associated to them" if all_ \
            else "all dangling images"
        click.confirm(f"WARNING! This will remove {what}.\nAre you sure you want to continue?",
                      abort=True)
    deleted, reclaimed = _service(ctx).prune(all_)
    if deleted:
        click.echo("Deleted Images:")
        for line in deleted:
            k, v = next(iter(line.items()))
            click.echo(f"{k.lower()}: {v}")
        click.echo()
    click.echo(f"Total reclaimed space: {human_size(reclaimed)}")


@click.command("save")
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to a file.")
@click.option("--format", "fmt", type=click.Choice(["docker", "oci"]), default="docker",
              show_default=True)
@click.pass_context
def save(ctx: click.Context, names: tuple[str, ...], output: str | None, fmt: str) -> None:
    """Save images to a tar archive (stdout by default)."""
    from berth.image import archive

    svc = _service(ctx)
    writer = archive.save_oci if fmt == "oci" else archive.save_docker
    if output:
        tmp = f"{output}.tmp{os.getpid()}"
        try:
            with open(tmp, "wb") as f:
                writer(svc, list(names), f)
            os.rename(tmp, output)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return
    if sys.stdout.isatty():
        raise click.UsageError("cowardly refusing to save to a terminal: use -o or redirect")
    writer(svc, list(names), sys.stdout.buffer)


@click.command("load")
@click.option("-i", "--input", "input_", type=click.Path(dir_okay=False, exists=True))
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def load(ctx: click.Context, input_: str | None, quiet: bool) -> None:
    """Load images from a tar archive (docker save or OCI layout; stdin by default)."""
    from berth.image import archive

    svc = _service(ctx)
    if input_:
        with open(input_, "rb") as f:
            lines = archive.load(svc, f)
    else:
        lines = archive.load(svc, sys.stdin.buffer)
    for line in lines:
        click.echo(line)
    del quiet


@click.command("import")
@click.argument("source")
@click.argument("repository", required=False)
@click.option("-c", "--change", multiple=True, help="Dockerfile instruction: CMD, ENV, ...")
@click.option("-m", "--message", default="")
@click.option("--platform")
@click.pass_context
def import_(ctx: click.Context, source: str, repository: str | None, change: tuple[str, ...],
            message: str, platform: str | None) -> None:
    """Import a root filesystem tarball (file or -) as an image."""
    from berth.image import archive

    svc = _service(ctx)
    if source == "-":
        image = archive.import_rootfs(svc, sys.stdin.buffer, repository, change, message,
                                      _platform(platform))
    else:
        with open(source, "rb") as f:
            image = archive.import_rootfs(svc, f, repository, change, message,
                                          _platform(platform))
    click.echo(str(image.id))


@click.command("bootstrap")
@click.argument("kind", type=click.Choice(["busybox"]))
@click.option("-t", "--tag", "tag_", default="busybox:latest", show_default=True)
@click.pass_context
def bootstrap(ctx: click.Context, kind: str, tag_: str) -> None:
    """Make the local default image from host packages, with no network."""
    image = _service(ctx).bootstrap_busybox(tag_)
    click.echo(str(image.id))
    del kind


@click.command("login")
@click.argument("server", required=False, default="docker.io")
@click.option("-u", "--username")
@click.option("-p", "--password")
@click.option("--password-stdin", is_flag=True)
@click.option("--insecure-registry", multiple=True)
@click.pass_context
def login(ctx: click.Context, server: str, username: str | None, password: str | None,
          password_stdin: bool, insecure_registry: tuple[str, ...]) -> None:
    """Log in to a registry (credentials kept in ~/.docker/config.json)."""
    from berth.image import credentials
    from berth.image.auth import Credentials
    from berth.image.registry import Registry, RegistryOptions

    server = server.split("://")[-1].rstrip("/")
    if server in ("index.docker.io", "registry-1.docker.io") or server.startswith(
            "index.docker.io/"):
        server = "docker.io"
    if password_stdin:
        password = sys.stdin.read().rstrip("\n")
    username = username or click.prompt("Username")
    password = password if password is not None else click.prompt("Password", hide_input=True)
    creds = Credentials(username, password)
    with Registry(server, RegistryOptions(insecure_registries=insecure_registry,
                                          credentials={server: creds})) as reg:
        reg.ping()
    credentials.store(server, creds)
    click.echo("Login Succeeded")
    del ctx


@click.command("logout")
@click.argument("server", required=False, default="docker.io")
def logout(server: str) -> None:
    """Log out from a registry."""
    from berth.image import credentials

    server = server.split("://")[-1].rstrip("/")
    if credentials.erase(server):
        click.echo(f"Removing login credentials for {server}")
    else:
        click.echo(f"Not logged in to {server}")


for _name, _cmd in (("pull", pull), ("push", push), ("ls", images), ("inspect", inspect),
                    ("history", history), ("tag", tag), ("rm", rmi), ("prune", prune),
                    ("save", save), ("load", load), ("import", import_),
                    ("bootstrap", bootstrap)):
    image_group.add_command(_cmd, _name)

TOP_LEVEL = {"pull": pull, "push": push, "images": images, "tag": tag, "rmi": rmi,
             "history": history,
             "save": save, "load": load, "import": import_, "login": login, "logout": logout}


def register(cli: click.Group) -> None:
    cli.add_command(image_group)
    for name, cmd in TOP_LEVEL.items():
        cli.add_command(cmd, name)
