"""`berth cp/export/diff/commit` (and under `berth container`): Docker's
flags, output and exit codes, over `berth.engine.copy`."""

from __future__ import annotations

import os
import sys

import click

from berth.cli.containers import command, engine


def _split_ref(arg: str) -> tuple[str | None, str]:
    """`CONTAINER:PATH` -> (container, path); a local path -> (None, path).
    As Docker: a path starting with '/' or '.' is local."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    c, _, p = arg.partition(":")
    return c, p


@command("cp")
@click.option("-a", "--archive", is_flag=True, help="Archive mode (copy all uid/gid information)")
@click.option("-L", "--follow-link", is_flag=True, help="Always follow symbol link in SRC_PATH")
@click.option("-q", "--quiet", is_flag=True)
@click.argument("src")
@click.argument("dest")
@click.pass_context
def cp(ctx: click.Context, src: str, dest: str, archive: bool, follow_link: bool,
       quiet: bool) -> None:
    """Copy files/folders between a container and the local filesystem."""
    from berth.engine import copy

    sc, sp = _split_ref(src)
    dc, dp = _split_ref(dest)
    if (sc is None) == (dc is None):
        msg = ("copying between containers is not supported" if sc is not None
               else "must specify at least one container source")
        click.echo(f"{msg}", err=True)
        sys.exit(1)
    eng = engine(ctx)
    if sc is not None:
        if not sp:
            click.echo("path must not be empty", err=True)
            sys.exit(1)
        if dp == "-":
            out = sys.stdout.buffer
            copy.tar_from_container(eng, sc, sp, out, follow_link)
            out.flush()
        else:
            copy.copy_out(eng, sc, sp, dp, follow_link, archive)
        return
    assert dc is not None
    if not dp:
        click.echo("path must not be empty", err=True)
        sys.exit(1)
    if sp != "-" and not os.path.lexists(sp):
        click.echo(f"lstat {os.path.abspath(sp)}: no such file or directory", err=True)
        sys.exit(1)
    if sp == "-":
        copy.copy_in(eng, dc, dp, source=sys.stdin.buffer)
    else:
        copy.copy_in(eng, dc, dp, src=sp, follow=follow_link, archive=archive)


@command("export")
@click.option("-o", "--output", default=None, help="Write to a file, instead of STDOUT")
@click.argument("container")
@click.pass_context
def export(ctx: click.Context, container: str, output: str | None) -> None:
    """Export a container's filesystem as a tar archive."""
    from berth.engine import copy

    eng = engine(ctx)
    rec = eng.get(container)
    if output is None:
        if sys.stdout.isatty():
            click.echo("cowardly refusing to save to a terminal. Use the -o flag or "
                       "redirect", err=True)
            sys.exit(1)
        copy.export(eng, rec.id, sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    tmp = f"{output}.berth-tmp"
    try:
        with open(tmp, "wb") as f:
            copy.export(eng, rec.id, f)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@command("diff")
@click.argument("container")
@click.pass_context
def diff(ctx: click.Context, container: str) -> None:
    """Inspect changes to files or directories on a container's filesystem."""
    from berth.engine import copy

    for line in copy.diff(engine(ctx), container):
        click.echo(line)


@command("commit")
@click.option("-a", "--author", default="")
@click.option("-c", "--change", multiple=True)
@click.option("-m", "--message", default="")
@click.option("-p", "--pause/--no-pause", default=True)
@click.argument("container")
@click.argument("repository", required=False)
@click.pass_context
def commit(ctx: click.Context, container: str, repository: str | None, author: str,
           change: tuple[str, ...], message: str, pause: bool) -> None:
    """Create a new image from a container's changes."""
    from berth.engine import copy

    eng = engine(ctx)
    rec = eng.get(container)
    paused = pause and rec.status == "running"
    if paused:
        eng.pause(rec.id)  # as Docker: a consistent snapshot of a running container
    try:
        image_id = copy.commit(eng, rec.id, repository, message, author, list(change))
    finally:
        if paused:
            eng.unpause(rec.id)
    click.echo(image_id)


COMMANDS = [cp, export, diff, commit]


def register(cli: click.Group) -> None:
    group = cli.commands.get("container")
    for cmd in COMMANDS:
        cli.add_command(cmd)
        if isinstance(group, click.Group):
            group.add_command(cmd)
