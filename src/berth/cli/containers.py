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

from berth.errors import BerthError
from berth.paths import Paths

RUN_COMMANDS = ("run", "create", "exec")


def exit_code_for(command: str, exc: BerthError) -> int:
    from berth.engine.containers import StartError

    if isinstance(exc, StartError):
        return exc.exit_code
    return 125 if command in RUN_COMMANDS else 1


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
            prefix = "berth: " if name in RUN_COMMANDS else ""
            click.echo(f"{prefix}Error response from daemon: {exc.message}", err=True)
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


def run_options(f: Callable) -> Callable:
    opts = [
        click.option("--name", default=""),
        click.option("-e", "--env", multiple=True),
        click.option("--env-file", multiple=True),
        click.option("-w", "--workdir", default=""),
        click.option("-u", "--user", default=""),
        click.option("--entrypoint", default=None),
        click.option("-l", "--label", multiple=True),
        click.option("-h", "--hostname", default=""),
        click.option("-i", "--interactive", is_flag=True),
        click.option("-t", "--tty", is_flag=True),
        click.option("--rm", "auto_remove", is_flag=True),
        click.option("-v", "--volume", multiple=True),
        click.option("--mount", multiple=True),
        click.option("--tmpfs", multiple=True),
        click.option("--read-only", is_flag=True),
        click.option("-m", "--memory", default=""),
        click.option("--memory-swap", default=""),
        click.option("--memory-reservation", default=""),
        click.option("--cpus", default=""),
        click.option("-c", "--cpu-shares", type=int, default=0),
        click.option("--cpuset-cpus", default=""),
        click.option("--pids-limit", type=int, default=0),
        click.option("--ulimit", multiple=True),
        click.option("--cap-add", multiple=True),
        click.option("--cap-drop", multiple=True),
        click.option("--security-opt", multiple=True),
        click.option("--privileged", is_flag=True),
        click.option("--init", is_flag=True),
        click.option("--restart", default="no"),
        click.option("--stop-signal", default=""),
        click.option("--stop-timeout", type=int, default=None),
        click.option("--network", "--net", default="default"),
        click.option("-p", "--publish", multiple=True),
        click.option("-P", "--publish-all", is_flag=True),
        click.option("--dns", multiple=True),
        click.option("--dns-search", multiple=True),
        click.option("--dns-option", multiple=True),
        click.option("--add-host", multiple=True),
        click.option("--ip", default=""),
        click.option("--network-alias", "--net-alias", multiple=True),
        click.option("--mac-address", default=""),
        click.option("--pid", default=""),
        click.option("--ipc", default=""),
        click.option("--uts", default=""),
        click.option("--runtime", default="berth"),
        click.option("--log-opt", multiple=True),
        click.option("--log-driver", default="json-file"),
        click.option("--sysctl", multiple=True),
        click.option("--device", multiple=True),
        click.option("--health-cmd", default=None),
        click.option("--health-interval", default=""),
        click.option("--health-timeout", default=""),
        click.option("--health-retries", type=int, default=0),
        click.option("--health-start-period", default=""),
        click.option("--no-healthcheck", is_flag=True),
        click.option("--health-on-failure", default="none"),
        click.option("--pull", type=click.Choice(["missing", "always", "never"]),
                     default="missing"),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def build_options(kw: dict[str, Any], image: str, command: tuple[str, ...]):
    from berth.engine import options as o
    from berth.errors import InvalidArgumentError

    if kw["log_driver"] != "json-file":
        raise InvalidArgumentError(f"logging driver {kw['log_driver']!r} is not supported "
                                   "(json-file only)")
    env: list[str] = []
    for path in kw["env_file"]:
        env.extend(o.read_env_file(path))
    env.extend(o.parse_env(list(kw["env"])))
    mounts = [o.parse_volume(v) for v in kw["volume"]] + [o.parse_mount(m) for m in kw["mount"]]
    seen: set[str] = set()
    for m in mounts:
        if m.target in seen:
            raise InvalidArgumentError(f"Duplicate mount point: {m.target}")
        seen.add(m.target)
    tmpfs = dict(o.parse_tmpfs(t) for t in kw["tmpfs"])
    log_opts = {}
    for item in kw["log_opt"]:
        k, eq, v = item.partition("=")
        if not eq:
            raise InvalidArgumentError(f"invalid key value pair format in log options: {item}")
        log_opts[k] = v
    sysctls = {}
    for item in kw["sysctl"]:
        k, eq, v = item.partition("=")
        if not eq:
            raise InvalidArgumentError(f"invalid argument \"{item}\" for \"--sysctl\" flag: "
                                       "sysctl must be in the format key=value")
        sysctls[k] = v
    memory = o.parse_size(kw["memory"], "-m, --memory") if kw["memory"] else 0
    swap = o.parse_memory_swap(kw["memory_swap"]) if kw["memory_swap"] else 0
    if swap > 0 and memory and swap < memory:
        raise InvalidArgumentError("Minimum memoryswap limit should be larger than memory "
                                   "limit, see usage")
    if swap and not memory:
        raise InvalidArgumentError("You should always set the Memory limit when using "
                                   "Memoryswap limit, see usage")
    if memory and memory < 6 << 20:
        raise InvalidArgumentError("Minimum memory limit allowed is 6MB")
    return o.RunOptions(
        image=image, command=list(command), name=kw["name"], entrypoint=kw["entrypoint"],
        env=env, workdir=kw["workdir"], user=kw["user"],
        labels=o.parse_labels(list(kw["label"])), hostname=kw["hostname"], tty=kw["tty"],
        interactive=kw["interactive"], auto_remove=kw["auto_remove"], mounts=mounts,
        tmpfs=tmpfs, read_only=kw["read_only"], memory=memory, memory_swap=swap,
        memory_reservation=(o.parse_size(kw["memory_reservation"], "--memory-reservation")
                            if kw["memory_reservation"] else 0),
        nano_cpus=o.parse_cpus(kw["cpus"]) if kw["cpus"] else 0,
        cpu_shares=kw["cpu_shares"], cpuset_cpus=kw["cpuset_cpus"],
        pids_limit=kw["pids_limit"], ulimits=[o.parse_ulimit(u) for u in kw["ulimit"]],
        cap_add=list(kw["cap_add"]), cap_drop=list(kw["cap_drop"]),
        security_opt=list(kw["security_opt"]), privileged=kw["privileged"], init=kw["init"],
        restart=o.parse_restart(kw["restart"]), stop_signal=kw["stop_signal"],
        stop_timeout=kw["stop_timeout"], network=kw["network"], pid=kw["pid"],
        publish=list(kw["publish"]), publish_all=kw["publish_all"], dns=list(kw["dns"]),
        dns_search=list(kw["dns_search"]), dns_options=list(kw["dns_option"]),
        extra_hosts=list(kw["add_host"]), ip=kw["ip"],
        network_aliases=list(kw["network_alias"]), mac_address=kw["mac_address"],
        ipc=kw["ipc"], uts=kw["uts"], runtime=kw["runtime"],
        log_opts=log_opts, sysctls=sysctls, devices=[o.parse_device(d) for d in kw["device"]],
        health_cmd=kw["health_cmd"],
        health_interval=_dur(kw["health_interval"], "--health-interval"),
        health_timeout=_dur(kw["health_timeout"], "--health-timeout"),
        health_retries=kw["health_retries"],
        health_start_period=_dur(kw["health_start_period"], "--health-start-period"),
        no_healthcheck=kw["no_healthcheck"], health_on_failure=kw["health_on_failure"],
    )


def _dur(value: str, flag: str) -> int:
    from berth.engine.options import parse_duration

    return parse_duration(value, flag) if value else 0


def ensure_image(ctx: click.Context, eng, name: str, pull: str) -> None:
    """Docker's --pull=missing: a missing image is pulled. `busybox` (the
    local default image) is made from Debian's busybox-static instead, no
    network needed."""
    from berth.errors import NotFoundError
    from berth.oci import reference

    try:
        eng.images.get(name)
        if pull != "always":
            return
    except NotFoundError:
        if pull == "never":
            raise NotFoundError(f"No such image: {name}") from None
    ref = reference.parse(name)
    click.echo(f"Unable to find image '{ref.familiar}' locally", err=True)
    if str(ref) == "docker.io/library/busybox:latest":
        eng.images.bootstrap_busybox(str(ref))
        return
    eng.images.pull(name)


def _create(ctx: click.Context, image: str, command: tuple[str, ...], kw: dict[str, Any]):
    opts = build_options(kw, image, command)
    eng = engine(ctx)
    ensure_image(ctx, eng, image, kw["pull"])
    return eng, eng.create(opts)


@command("create", context_settings={"allow_interspersed_args": False,
                                     "help_option_names": ["--help"]})
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, image: str, command: tuple[str, ...], **kw: Any) -> None:
    """Create a new container."""
    _eng, rec = _create(ctx, image, command, kw)
    click.echo(rec.id)


@command("run", context_settings={"allow_interspersed_args": False,
                                  "help_option_names": ["--help"]})
@click.option("-d", "--detach", is_flag=True)
@run_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, image: str, command: tuple[str, ...], detach: bool,
        **kw: Any) -> None:
    """Create and run a new container from an image."""
    from berth.engine.containers import Attach

    if detach and kw["auto_remove"] and kw["restart"] not in ("no", ""):
        from berth.errors import InvalidArgumentError

        raise InvalidArgumentError("Conflicting options: --restart and --rm")
    if kw["tty"] and kw["interactive"] and not detach and not os.isatty(0):
        click.echo("the input device is not a TTY", err=True)
        sys.exit(1)
    eng, rec = _create(ctx, image, command, kw)
    attach = None if detach else Attach(1, 2, 0 if kw["interactive"] else -1,
                                        _terminal_size() if kw["tty"] else None)
    restore = None
    if attach is not None and kw["tty"] and kw["interactive"]:
        restore = _raw_terminal(0)
    try:
        try:
            started = eng.start(rec.id, attach)
        except BerthError:
            if kw["auto_remove"]:
                try:
                    eng.remove(rec.id, force=True)
                except BerthError:
                    pass
            raise
        if detach:
            click.echo(rec.id)
            return
        if not kw["tty"]:
            _proxy_signals(eng, rec.id)
        code = started.wait_exit(eng)
    finally:
        if restore is not None:
            restore()
    if code < 0:
        code = eng.wait(rec.id) if not kw["auto_remove"] else 125
    sys.stdout.flush()
    ctx.exit(code)


def _terminal_size() -> tuple[int, int] | None:
    for fd in (0, 1):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return None


def _raw_terminal(fd: int) -> Callable[[], None] | None:
    """Put the CLI's terminal in raw mode (keys go to the container's
    terminal, which does the echoing); returns the restorer."""
    import termios
    import tty

    try:
        saved = termios.tcgetattr(fd)
    except termios.error:
        return None
    tty.setraw(fd)

    def restore() -> None:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

    return restore


def _proxy_signals(eng, cid: str) -> None:
    """Docker's --sig-proxy: signals to the CLI go to the container."""
    import signal

    def forward(signum: int, _frame: object) -> None:
        try:
            eng.runtime(eng.store.get(cid)).kill(cid, signum)
        except BerthError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2):
        signal.signal(sig, forward)


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
@click.option("-d", "--detach", is_flag=True)
@click.option("-i", "--interactive", is_flag=True)
@click.option("-t", "--tty", is_flag=True)
@click.option("-e", "--env", multiple=True)
@click.option("--env-file", multiple=True)
@click.option("-u", "--user", default="")
@click.option("-w", "--workdir", default="")
@click.option("--privileged", is_flag=True)
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, container: str, command: tuple[str, ...], detach: bool,
          interactive: bool, tty: bool, env: tuple[str, ...], env_file: tuple[str, ...],
          user: str, workdir: str, privileged: bool) -> None:
    """Execute a command in a running container."""
    from berth.engine import options as o
    from berth.errors import NotImplementedYetError

    if tty:
        raise NotImplementedYetError("-t/--tty: pseudo-terminals are not supported by berth yet")
    envs: list[str] = []
    for path in env_file:
        envs.extend(o.read_env_file(path))
    envs.extend(o.parse_env(list(env)))
    if not interactive:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    sys.stdout.flush()
    code = engine(ctx).exec(container, list(command), envs, workdir, user, privileged, detach)
    ctx.exit(code)


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
