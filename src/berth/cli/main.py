"""The `berth` command group. Subcommand groups live in their own modules
(`cli/image.py`, ...) and are registered here.

Errors: a BerthError ends the command with its category's exit code and
`berth: <message>` on stderr (one table, in errors.py).
"""

import sys

import click

from berth import __version__
from berth.errors import BerthError


class BerthGroup(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BerthError as exc:
            click.echo(f"berth: {exc.message}", err=True)
            sys.exit(exc.exit_code)


@click.group(cls=BerthGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="berth")
@click.option(
    "--root",
    envvar="BERTH_ROOT",
    default=None,
    help="Persistent data root (default /var/lib/berth).",
)
@click.option(
    "--state", envvar="BERTH_STATE", default=None, help="Runtime state root (default /run/berth)."
)
@click.pass_context
def cli(ctx: click.Context, root: str | None, state: str | None) -> None:
    """berth: containers on Linux namespaces and cgroups."""
    from berth.paths import Paths

    ctx.obj = Paths(root, state)


@cli.command("bundle")
@click.argument("kind", type=click.Choice(["busybox"]))
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("command", nargs=-1)
def bundle(kind: str, directory: str, command: tuple[str, ...]) -> None:
    """Make an OCI bundle (rootfs + config.json) from a local image source.

    `berth bundle busybox DIR [COMMAND...]` makes DIR/rootfs from Debian's
    busybox-static and DIR/config.json (as `berth-runtime spec`, no terminal)
    running COMMAND (default: sh).
    """
    import os

    from berth import jsonio
    from berth.image.busybox import make_busybox_rootfs
    from berth.oci.runtime import default_spec

    os.makedirs(directory, exist_ok=True)
    config = os.path.join(directory, "config.json")
    if os.path.exists(config):
        raise click.ClickException(f"{config} exists")
    make_busybox_rootfs(os.path.join(directory, "rootfs"))
    spec = default_spec()
    spec["process"]["terminal"] = False
    spec["process"]["args"] = list(command) or ["sh"]
    jsonio.write_atomic(config, jsonio.dumps(spec, indent=2) + "\n")
    click.echo(directory)


def _register() -> None:
    from berth.cli import containers, image, system

    image.register(cli)
    containers.register(cli)
    system.register(cli)
    from berth.cli import network

    network.register(cli)
    from berth.cli import copy

    copy.register(cli)


_register()


def main() -> None:
    cli(prog_name="berth")
