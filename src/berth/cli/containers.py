"""`berth run/create/start/stop/restart/kill/rm/ps/logs/inspect/wait/top/
stats/pause/unpause/rename/port/why` and `berth container ...`: thin
adapters over `berth.engine.containers.Engine`, with Docker's flags,
defaults, output and exit codes.

Exit codes (one table, `exit_code_for`): `run`/`create` exit 125 when the
engine fails, 126 when the command cannot be executed, 127 when it is not
found, else the container's own code; every other command exits 1 on an
error, as the Docker CLI. A flag parse error exits 125 ("unknown flag").
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from berth.cli.runner import (  # noqa: F401 - re-exported
    RUN_COMMANDS,
    _proxy_signals,
    _raw_terminal,
    _terminal_size,
    build_options,
    error_message,
    exit_code_for,
)
from berth.errors import BerthError
from berth.paths import Paths


class DockerCommand(click.Command):
    """Flag errors as the Docker CLI: ``unknown flag: --x`` and exit 125."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            msg = exc.format_message()
            if isinstance(exc, click.NoSuchOption):
                msg = f"unknown flag: {exc.option_name}"
            prog = ctx.command_path
            click.echo(f"{prog.split()[0]}: {msg}\nSee '{prog} --help'.", err=True)
            sys.exit(125)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BerthError as exc:
            name = ctx.info_name or ""
            group = ctx.parent.info_name if ctx.parent and ctx.parent.parent else None
            if group and group != "container":
                name = f"{group} {name}"  # `volume create` is no `create`: exit 1
            click.echo(error_message(name, exc), err=True)
            sys.exit(exit_code_for(name, exc))


def command(name: str, **kw: Any) -> Callable:
    kw.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
    return click.command(name, cls=DockerCommand, **kw)


def engine(ctx: click.Context):
    from berth.cli.image import _service
    from berth.engine.containers import Engine

    paths: Paths = ctx.find_object(Paths) or Paths()
    eng = Engine(paths, images=lambda: _service(ctx))
    ctx.call_on_close(eng.close)
    # the first command after a reboot restarts `always`/`unless-stopped` ones
    eng.maybe_boot()
    return eng


def for_each(refs: tuple[str, ...], fn: Callable[[str], object]) -> None:
    """Docker's multi-container commands: each name echoed on success, each
    error on stderr, exit 1 if any failed."""
    failed = False
    for ref in refs:
        try:
            fn(ref)
        except BerthError as exc:
            click.echo(f"Error response from daemon: {exc.message}", err=True)
            failed = True
            continue
        click.echo(ref)
    if failed:
        sys.exit(1)


# run / create --------------------------------------------------------------------------


def _click_options(flags: list) -> list[Callable]:
    out = []
    for decls, name, kind, default in flags:
        if kind == "flag":
            out.append(click.option(*decls, name, is_flag=True))
        elif kind == "multi":
            out.append(click.option(*decls, name, multiple=True))
        elif kind == "int":
            out.append(click.option(*decls, name, type=int, default=default))
        elif kind.startswith("choice:"):
            out.append(click.option(*decls, name, type=click.Choice(kind[7:].split("|")),
                                    default=default))
        else:
            out.append(click.option(*decls, name, default=default))
    return out


def _apply(f: Callable, flags: list) -> Callable:
    for o in reversed(_click_options(flags)):
        f = o(f)
    return f


def run_options(f: Callable) -> Callable:
    from berth.cli.runner import RUN_FLAGS

    return _apply(f, RUN_FLAGS)


def detach_option(f: Callable) -> Callable:
    from berth.cli.runner import DETACH_FLAG

    return _apply(f, [DETACH_FLAG])


def exec_options(f: Callable) -> Callable:
    from berth.cli.runner import EXEC_FLAGS

    return _apply(f, EXEC_FLAGS)


def _engine_maker(ctx: click.Context) -> Callable[[], Any]:
    return lambda: engine(ctx)


@command("create", context_settings={"allow_interspersed_args": False,
                                     "help_option_names": ["--help"]})
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Create a new container."""
    from berth.cli import runner

    _eng, rec = runner.create(_engine_maker(ctx), image, command, kw)
    click.echo(rec.id)


@command("run", context_settings={"allow_interspersed_args": False,
                                  "help_option_names": ["--help"]})
@detach_option
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, image: str, command: tuple[str, ...], detach: bool,
        **kw: Any) -> None:
    """Create and run a new container from an image."""
    from berth.cli import runner

    code = runner.run(_engine_maker(ctx), image, command, detach, kw)
    if code is not None:
        ctx.exit(code)


# start, stop, restart, kill, rm --------------------------------------------------------


@command("start")
@click.option("-a", "--attach", is_flag=True)
@click.option("-i", "--interactive", is_flag=True)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start(ctx: click.Context, containers: tuple[str, ...], attach: bool,
          interactive: bool) -> None:
    """Start one or more stopped containers."""
    from berth.engine.containers import Attach

    eng = engine(ctx)
    if attach:
        if len(containers) > 1:
            from berth.errors import InvalidArgumentError

            raise InvalidArgumentError("you cannot start and attach multiple containers at once")
        started = eng.start(containers[0], Attach(1, 2, 0 if interactive else -1))
        if started.status_fd < 0:
            return
        _proxy_signals(eng, started.record.id)
        ctx.exit(max(0, started.wait_exit(eng)))
    for_each(containers, eng.start)


@command("stop")
@click.option("-t", "--time", "timeout", type=int, default=None)
@click.option("-s", "--signal", default=None)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, containers: tuple[str, ...], timeout: int | None,
         signal: str | None) -> None:
    """Stop one or more running containers."""
    eng = engine(ctx)
    for_each(containers, lambda ref: eng.stop(ref, timeout, signal))


@command("restart")
@click.option("-t", "--time", "timeout", type=int, default=None)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def restart(ctx: click.Context, containers: tuple[str, ...], timeout: int | None) -> None:
    """Restart one or more containers."""
    eng = engine(ctx)
    for_each(containers, lambda ref: eng.restart(ref, timeout))


@command("kill")
@click.option("-s", "--signal", default="KILL")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def kill(ctx: click.Context, containers: tuple[str, ...], signal: str) -> None:
    """Kill one or more running containers."""
    eng = engine(ctx)
    for_each(containers, lambda ref: eng.kill(ref, signal))


@command("rm")
@click.option("-f", "--force", is_flag=True)
@click.option("-v", "--volumes", is_flag=True)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, containers: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove one or more containers."""
    eng = engine(ctx)
    for_each(containers, lambda ref: eng.remove(ref, force=force, volumes=volumes))


@command("pause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Pause all processes within one or more containers."""
    eng = engine(ctx)
    for_each(containers, eng.pause)


@command("unpause")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Unpause all processes within one or more containers."""
    eng = engine(ctx)
    for_each(containers, eng.unpause)


@command("rename")
@click.argument("container")
@click.argument("new_name")
@click.pass_context
def rename(ctx: click.Context, container: str, new_name: str) -> None:
    """Rename a container."""
    engine(ctx).rename(container, new_name)


@command("wait")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Block until one or more containers stop, then print their exit codes."""
    eng = engine(ctx)
    failed = False
    for ref in containers:
        try:
            click.echo(eng.wait(ref))
        except BerthError as exc:
            click.echo(f"Error response from daemon: {exc.message}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@command("exec", context_settings={"allow_interspersed_args": False,
                                   "help_option_names": ["--help"]})
@exec_options
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, container: str, command: tuple[str, ...], **kw: Any) -> None:
    """Execute a command in a running container."""
    from berth.cli import runner

    ctx.exit(runner.exec_(engine(ctx), container, command, kw))


@command("update")
@click.option("-m", "--memory", default="")
@click.option("--memory-swap", default="")
@click.option("--memory-reservation", default="")
@click.option("--cpus", default="")
@click.option("-c", "--cpu-shares", type=int, default=None)
@click.option("--cpuset-cpus", default=None)
@click.option("--pids-limit", type=int, default=None)
@click.option("--restart", default=None)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def update(ctx: click.Context, containers: tuple[str, ...], memory: str, memory_swap: str,
           memory_reservation: str, cpus: str, cpu_shares: int | None,
           cpuset_cpus: str | None, pids_limit: int | None, restart: str | None) -> None:
    """Update configuration of one or more containers."""
    from berth.engine import options as o

    changes: dict[str, Any] = {}
    if memory:
        changes["Memory"] = o.parse_size(memory, "-m, --memory")
    if memory_swap:
        changes["MemorySwap"] = o.parse_memory_swap(memory_swap)
    if memory_reservation:
        changes["MemoryReservation"] = o.parse_size(memory_reservation, "--memory-reservation")
    if cpus:
        changes["NanoCpus"] = o.parse_cpus(cpus)
    if cpu_shares is not None:
        changes["CpuShares"] = cpu_shares
    if cpuset_cpus is not None:
        changes["CpusetCpus"] = cpuset_cpus
    if pids_limit is not None:
        changes["PidsLimit"] = pids_limit
    if restart is not None:
        changes["RestartPolicy"] = o.parse_restart(restart).docker()
    if not changes:
        from berth.errors import InvalidArgumentError

        raise InvalidArgumentError("you must provide one or more flags when using this command")
    eng = engine(ctx)
    for_each(containers, lambda ref: eng.update(ref, changes))


@command("attach")
@click.option("--no-stdin", is_flag=True)
@click.option("--detach-keys", default="ctrl-p,ctrl-q")
@click.option("--sig-proxy/--no-sig-proxy", default=True)
@click.argument("container")
@click.pass_context
def attach(ctx: click.Context, container: str, no_stdin: bool, detach_keys: str,
           sig_proxy: bool) -> None:
    """Attach to a running container's output (and, for a terminal, its
    input; detach with ctrl-p ctrl-q)."""
    import select

    eng = engine(ctx)
    rec = eng.get(container)
    tty = bool(rec.config.get("Tty"))
    keys = _detach_sequence(detach_keys)
    pipe_r = pipe_w = -1
    if tty and not no_stdin and rec.config.get("OpenStdin"):
        pipe_r, pipe_w = os.pipe()
    sock = eng.attach(container, 1, 2, pipe_r)
    if pipe_r >= 0:
        os.close(pipe_r)
    if sig_proxy and not tty:
        _proxy_signals(eng, rec.id)
    if tty and os.isatty(0):
        from berth.execclient import follow_window_size, send_window_size

        size = os.get_terminal_size(0)
        send_window_size(eng.bundle(rec.id), size.lines, size.columns)
        follow_window_size(eng.bundle(rec.id))
    restore = _raw_terminal(0) if pipe_w >= 0 and os.isatty(0) else None
    code = 0
    try:
        watch = [sock.fileno()] + ([0] if pipe_w >= 0 else [])
        typed = b""
        buf = b""
        while True:
            ready, _, _ = select.select(watch, [], [])
            if sock.fileno() in ready:
                try:
                    chunk = sock.recv(1024)
                except OSError:
                    chunk = b""
                buf += chunk
                if not chunk or b"\n" in buf:
                    break
            if 0 in ready:
                data = os.read(0, 1024)
                if not data:
                    watch.remove(0)
                    continue
                typed = (typed + data)[-len(keys):]
                if keys and typed.endswith(keys):
                    if restore is not None:
                        restore()
                        restore = None
                    click.echo("read escape sequence", err=True)
                    return
                os.write(pipe_w, data)
        if b"\n" in buf:
            from berth import jsonio

            msg = jsonio.loads(buf.split(b"\n")[0])
            if isinstance(msg, dict):
                code = int(msg.get("exit", 0))
        else:
            code = eng.wait(rec.id)  # the monitor went away without a word
    finally:
        if restore is not None:
            restore()
        sock.close()
        if pipe_w >= 0:
            os.close(pipe_w)
    ctx.exit(code)


def _detach_sequence(spec: str) -> bytes:
    out = b""
    for key in filter(None, spec.split(",")):
        if key.startswith("ctrl-") and len(key) == 6:
            c = key[5]
            special = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            out += bytes([special[c] if c in special else ord(c.lower()) - 96])
        elif len(key) == 1:
            out += key.encode()
        else:
            from berth.errors import InvalidArgumentError

            raise InvalidArgumentError(f"invalid detach keys ({spec}) provided")
    return out


@command("port")
@click.argument("container")
@click.argument("private_port", required=False)
@click.pass_context
def port(ctx: click.Context, container: str, private_port: str | None) -> None:
    """List port mappings (none until berth has bridge networking)."""
    engine(ctx).get(container)
    if private_port:
        from berth.errors import NotFoundError

        raise NotFoundError(f"No public port '{private_port}' published for {container}")


@command("why")
@click.option("--json", "as_json", is_flag=True)
@click.argument("container")
@click.pass_context
def why(ctx: click.Context, container: str, as_json: bool) -> None:
    """Say in one line why a container stopped."""
    from berth.engine import views

    rec = engine(ctx).get(container)
    line = views.why(rec)
    if as_json:
        from berth import jsonio

        click.echo(jsonio.dumps({
            "Id": rec.id, "Name": rec.name, "Status": rec.status, "ExitCode": rec.exit_code,
            "OOMKilled": rec.oom_killed, "Reason": rec.reason, "Error": rec.error,
            "RestartCount": rec.restart_count, "FinishedAt": rec.finished_at,
            "Summary": line}))
    else:
        click.echo(line)


@command("prune")
@click.option("-f", "--force", is_flag=True)
@click.option("--filter", "filters", multiple=True)
@click.pass_context
def prune(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all stopped containers."""
    if not force:
        click.echo("WARNING! This will remove all stopped containers.\n"
                   "Are you sure you want to continue? [y/N] ", nl=False)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return
    removed = engine(ctx).prune()
    if removed:
        click.echo("Deleted Containers:")
        for cid in removed:
            click.echo(cid)
        click.echo("")
    click.echo("Total reclaimed space: 0B")


def register(cli: click.Group) -> None:
    from berth.cli import listing

    top = [run, create, start, stop, restart, kill, rm, pause, unpause, rename, wait, port,
           why, exec_, update, attach, *listing.COMMANDS]
    for cmd in top:
        cli.add_command(cmd)
    group = click.Group("container", help="Manage containers.")
    for cmd in top:
        group.add_command(cmd)
    group.add_command(prune)
    group.add_command(listing.ps, "ls")
    cli.add_command(group)
