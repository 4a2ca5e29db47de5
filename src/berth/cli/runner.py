"""`berth run` and `berth exec` without click: their flag tables, the
options they build and their bodies, shared by the click commands
(`cli/containers.py`) and by the fast path (`cli/fast.py`), which parses
these tables itself so that a plain `berth run ...` or `berth exec ...`
never imports click (~40 ms here, more than the rest of a `run --rm`).

Import-light: nothing here imports click, and engine modules are imported
where they are used.
"""

from __future__ import annotations

import os
import sys

from berth.errors import BerthError
from berth.execclient import EXEC_FLAGS  # noqa: F401 (there: `berth exec` never imports this module)

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

RUN_COMMANDS = ("run", "create", "exec")

# Each flag: (declarations, parameter name, kind, default). Kinds: "str" (a
# value), "int", "flag" (no value), "multi" (repeatable value, a tuple) and
# "choice:a|b|c". The click commands are made from these tables, so both
# parsers agree on names and defaults.
Flag = tuple  # (declarations, parameter name, kind, default)


def _network_default() -> str:
    from berth.engine.options import RunOptions

    return RunOptions.network


RUN_FLAGS: list[Flag] = [
    (("--name",), "name", "str", ""),
    (("-e", "--env"), "env", "multi", ()),
    (("--env-file",), "env_file", "multi", ()),
    (("-w", "--workdir"), "workdir", "str", ""),
    (("-u", "--user"), "user", "str", ""),
    (("--entrypoint",), "entrypoint", "str", None),
    (("-l", "--label"), "label", "multi", ()),
    (("-h", "--hostname"), "hostname", "str", ""),
    (("-i", "--interactive"), "interactive", "flag", False),
    (("-t", "--tty"), "tty", "flag", False),
    (("--rm",), "auto_remove", "flag", False),
    (("-v", "--volume"), "volume", "multi", ()),
    (("--mount",), "mount", "multi", ()),
    (("--tmpfs",), "tmpfs", "multi", ()),
    (("--read-only",), "read_only", "flag", False),
    (("-m", "--memory"), "memory", "str", ""),
    (("--memory-swap",), "memory_swap", "str", ""),
    (("--memory-reservation",), "memory_reservation", "str", ""),
    (("--cpus",), "cpus", "str", ""),
    (("-c", "--cpu-shares"), "cpu_shares", "int", 0),
    (("--cpuset-cpus",), "cpuset_cpus", "str", ""),
    (("--pids-limit",), "pids_limit", "int", 0),
    (("--ulimit",), "ulimit", "multi", ()),
    (("--cap-add",), "cap_add", "multi", ()),
    (("--cap-drop",), "cap_drop", "multi", ()),
    (("--security-opt",), "security_opt", "multi", ()),
    (("--privileged",), "privileged", "flag", False),
    (("--init",), "init", "flag", False),
    (("--restart",), "restart", "str", "no"),
    (("--stop-signal",), "stop_signal", "str", ""),
    (("--stop-timeout",), "stop_timeout", "int", None),
    (("--network", "--net"), "network", "str", _network_default()),
    (("-p", "--publish"), "publish", "multi", ()),
    (("-P", "--publish-all"), "publish_all", "flag", False),
    (("--dns",), "dns", "multi", ()),
    (("--dns-search",), "dns_search", "multi", ()),
    (("--dns-option",), "dns_option", "multi", ()),
    (("--add-host",), "add_host", "multi", ()),
    (("--ip",), "ip", "str", ""),
    (("--ip6",), "ip6", "str", ""),
    (("--network-alias", "--net-alias"), "network_alias", "multi", ()),
    (("--mac-address",), "mac_address", "str", ""),
    (("--pid",), "pid", "str", ""),
    (("--ipc",), "ipc", "str", ""),
    (("--uts",), "uts", "str", ""),
    (("--runtime",), "runtime", "str", "berth"),
    (("--log-opt",), "log_opt", "multi", ()),
    (("--log-driver",), "log_driver", "str", "json-file"),
    (("--sysctl",), "sysctl", "multi", ()),
    (("--device",), "device", "multi", ()),
    (("--health-cmd",), "health_cmd", "str", None),
    (("--health-interval",), "health_interval", "str", ""),
    (("--health-timeout",), "health_timeout", "str", ""),
    (("--health-retries",), "health_retries", "int", 0),
    (("--health-start-period",), "health_start_period", "str", ""),
    (("--no-healthcheck",), "no_healthcheck", "flag", False),
    (("--health-on-failure",), "health_on_failure", "str", "none"),
    (("--pull",), "pull", "choice:missing|always|never", "missing"),
]

# `run` only (not `create`)
DETACH_FLAG: Flag = (("-d", "--detach"), "detach", "flag", False)

class Fallback(Exception):
    """The fast path does not handle this invocation (nothing was changed
    yet): click's command runs it instead."""


def exit_code_for(command: str, exc: BerthError) -> int:
    from berth.engine.containers import StartError

    if isinstance(exc, StartError):
        return exc.exit_code
    return 125 if command in RUN_COMMANDS else 1


def error_message(command: str, exc: BerthError) -> str:
    """What the Docker CLI prints for an engine error of `command`."""
    prefix = "berth: " if command in RUN_COMMANDS else ""
    return f"{prefix}Error response from daemon: {exc.message}"


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
        extra_hosts=list(kw["add_host"]), ip=kw["ip"], ip6=kw["ip6"],
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


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def ensure_image(eng, name: str, pull: str, fast: bool = False) -> None:
    """Docker's --pull=missing: a missing image is pulled. `busybox` (the
    local default image) is made from Debian's busybox-static instead, no
    network needed. The fast path leaves pulls to click's command."""
    from berth.errors import NotFoundError

    try:
        eng.images.get(name)
        if pull != "always":
            return
    except NotFoundError:
        if pull == "never":
            raise NotFoundError(f"No such image: {name}") from None
    if fast:
        raise Fallback
    from berth.oci import reference

    ref = reference.parse(name)
    _err(f"Unable to find image '{ref.familiar}' locally")
    if str(ref) == "docker.io/library/busybox:latest":
        eng.images.bootstrap_busybox(str(ref))
        return
    eng.images.pull(name)


def create(engine: Callable[[], Any], image: str, command: tuple[str, ...], kw: dict[str, Any],
           fast: bool = False):
    opts = build_options(kw, image, command)
    eng = engine()
    ensure_image(eng, image, kw["pull"], fast)
    return eng, eng.create(opts)


def run(engine: Callable[[], Any], image: str, command: tuple[str, ...], detach: bool,
        kw: dict[str, Any], fast: bool = False) -> int | None:
    """`berth run`: the container's exit code (None with -d)."""
    from berth.engine.containers import Attach

    if detach and kw["auto_remove"] and kw["restart"] not in ("no", ""):
        from berth.errors import InvalidArgumentError

        raise InvalidArgumentError("Conflicting options: --restart and --rm")
    if kw["tty"] and kw["interactive"] and not detach and not os.isatty(0):
        _err("the input device is not a TTY")
        return 1
    eng, rec = create(engine, image, command, kw, fast)
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
            sys.stdout.write(rec.id + "\n")
            sys.stdout.flush()
            return None
        if not kw["tty"]:
            _proxy_signals(eng, rec.id)
        elif os.isatty(0):
            from berth.execclient import follow_window_size

            follow_window_size(eng.bundle(rec.id))
        code = started.wait_exit(eng)
    finally:
        if restore is not None:
            restore()
    if code < 0:
        code = eng.wait(rec.id) if not kw["auto_remove"] else 125
    sys.stdout.flush()
    return code


def exec_(eng: Any, container: str, command: tuple[str, ...], kw: dict[str, Any]) -> int:
    """`berth exec`: the exit code of the command run in the container."""
    from berth.engine import options as o

    # as the Docker CLI: a detached exec (-dit) attaches nothing, so checks no terminal
    if kw["tty"] and kw["interactive"] and not kw["detach"] and not os.isatty(0):
        _err("the input device is not a TTY")
        return 1
    envs: list[str] = []
    for path in kw["env_file"]:
        envs.extend(o.read_env_file(path))
    envs.extend(o.parse_env(list(kw["env"])))
    if not kw["interactive"]:
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    sys.stdout.flush()
    # with -t the runtime makes the process a pty at this terminal's size,
    # copies between the two (this terminal raw meanwhile) and resizes it
    # with this terminal (berth.runtime.console.relay_terminal)
    return eng.exec(container, list(command), envs, kw["workdir"], kw["user"],
                    kw["privileged"], kw["detach"], tty=kw["tty"])


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
    import _signal as signal  # the signal module's core, without its enum import

    def forward(signum: int, _frame: object) -> None:
        try:
            eng.runtime(eng.store.get(cid)).kill(cid, signum)
        except BerthError:
            pass

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                signal.SIGUSR2):
        signal.signal(sig, forward)
