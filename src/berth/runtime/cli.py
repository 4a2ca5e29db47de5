"""`berth-runtime`: runc's command line over the runtime library.

A hand-written parser (argparse imports re and gettext, a measurable part of
a container start). Flags follow urfave/cli as runc uses it: `--flag value`,
`--flag=value`, single-dash long names (`-bundle`), global flags before the
command, command flags before or after the container id.

Exit codes as runc's: 0, 1 for any error (the message on stderr, and in the
--log file), or the container's own status for `run`.
"""

import os
import sys

from berth import OCI_VERSION, __version__, jsonio
from berth.errors import BerthError, InvalidArgumentError
from berth.paths import RuntimePaths
from berth.runtime.log import Log

# name -> (key, kind); kind: bool | str | int
GLOBAL_FLAGS = {
    "root": ("root", "str"), "log": ("log", "str"), "log-format": ("log_format", "str"),
    "debug": ("debug", "bool"), "systemd-cgroup": ("systemd_cgroup", "bool"),
    "rootless": ("rootless", "str"), "criu": ("criu", "str"),
    "help": ("help", "bool"), "h": ("help", "bool"), "version": ("version", "bool"), "v": ("version", "bool"),
}
CREATE_FLAGS = {
    "bundle": ("bundle", "str"), "b": ("bundle", "str"), "pid-file": ("pid_file", "str"),
    "console-socket": ("console_socket", "str"), "no-pivot": ("no_pivot", "bool"),
    "no-new-keyring": ("no_new_keyring", "bool"), "preserve-fds": ("preserve_fds", "int"),
}
# command -> (flags, usage of the arguments, summary). The function is
# COMMAND_FUNCS[command] here, or "module:function" in EXTERNAL (imported only
# when that command runs): other modules add commands with one line in each.
COMMANDS: dict[str, tuple[dict, str, str]] = {
    "spec": ({"bundle": ("bundle", "str"), "b": ("bundle", "str"), "rootless": ("rootless", "bool")},
             "", "create a new specification file"),
    "create": (CREATE_FLAGS, "<container-id>", "create a container"),
    "run": ({**CREATE_FLAGS, "detach": ("detach", "bool"), "d": ("detach", "bool"),
             "keep": ("keep", "bool")}, "<container-id>", "create and run a container"),
    "start": ({}, "<container-id>", "executes the user defined process in a created container"),
    "state": ({}, "<container-id>", "output the state of a container"),
    "kill": ({"all": ("all", "bool"), "a": ("all", "bool")}, "<container-id> [signal]",
             "kill sends the specified signal (default: SIGTERM) to the container's init process"),
    "delete": ({"force": ("force", "bool"), "f": ("force", "bool")}, "<container-id>",
               "delete any resources held by the container"),
    "list": ({"format": ("format", "str"), "f": ("format", "str"), "quiet": ("quiet", "bool"),
              "q": ("quiet", "bool")}, "", "lists containers started by berth-runtime with the given root"),
    "features": ({}, "", "show the enabled features"),
    "update": ({"resources": ("resources", "str"), "r": ("resources", "str"),
                "blkio-weight": ("blkio-weight", "int"), "pids-limit": ("pids-limit", "int"),
                **{f: (f, "str") for f in (
                    "cpu-period", "cpu-quota", "cpu-share", "cpu-burst", "cpu-idle", "cpu-rt-period",
                    "cpu-rt-runtime", "cpuset-cpus", "cpuset-mems", "memory", "memory-reservation",
                    "memory-swap", "kernel-memory", "kernel-memory-tcp", "l3-cache-schema", "mem-bw-schema")}},
               "<container-id>", "update container resource constraints"),
    "pause": ({}, "<container-id>", "pause suspends all processes inside the container"),
    "resume": ({}, "<container-id>", "resumes all processes that have been previously paused"),
    "ps": ({"format": ("format", "str"), "f": ("format", "str")}, "<container-id> [ps options]",
           "ps displays the processes running inside a container"),
    "events": ({"interval": ("interval", "str"), "stats": ("stats", "bool")}, "<container-id>",
               "display container events such as OOM notifications, cpu, memory, and IO usage statistics"),
    "exec": ({
        "process": ("process", "str"), "p": ("process", "str"), "tty": ("tty", "bool"), "t": ("tty", "bool"),
        "cwd": ("cwd", "str"), "env": ("env", "list"), "e": ("env", "list"), "user": ("user", "str"),
        "u": ("user", "str"), "additional-gids": ("additional_gids", "list"), "g": ("additional_gids", "list"),
        "cap": ("cap", "list"), "c": ("cap", "list"), "no-new-privs": ("no_new_privs", "bool"),
        "apparmor": ("apparmor", "str"), "process-label": ("process_label", "str"),
        "detach": ("detach", "bool"), "d": ("detach", "bool"), "pid-file": ("pid_file", "str"),
        "console-socket": ("console_socket", "str"), "preserve-fds": ("preserve_fds", "int"),
        "ignore-paused": ("ignore_paused", "bool"),
    }, "<container-id> <command> [command options]", "execute new process inside the container"),
}
# commands whose flags end at the first argument (the command after the id has its own)
STOP_AT_ID = {"exec", "ps"}  # what follows the id belongs to the process (or to ps)
for _c in COMMANDS.values():
    _c[0].setdefault("help", ("help", "bool"))
    _c[0].setdefault("h", ("help", "bool"))


class UsageError(InvalidArgumentError):
    pass


def parse_flags(argv: list[str], flags: dict, stop_at_positional: bool) -> tuple[dict, list[str]]:
    opts: dict = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            rest.extend(argv[i + 1:])
            break
        if a.startswith("-") and len(a) > 1:
            name, eq, value = a.lstrip("-").partition("=")
            if name not in flags:
                raise UsageError(f"flag provided but not defined: -{name}")
            key, kind = flags[name]
            if kind == "bool":
                opts[key] = value.lower() not in ("false", "0") if eq else True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        raise UsageError(f"flag needs an argument: -{name}")
                    value = argv[i]
                if kind == "list":
                    opts.setdefault(key, []).append(value)
                elif kind == "int":
                    try:
                        opts[key] = int(value)
                    except ValueError:
                        raise UsageError(f'invalid value "{value}" for flag -{name}: parse error') from None
                else:
                    opts[key] = value
        else:
            rest.append(a)
            if stop_at_positional:
                rest.extend(argv[i + 1:])
                break
        i += 1
    return opts, rest


def usage() -> str:
    lines = ["NAME:", "   berth-runtime - Open Container Initiative runtime (berth)", "",
             "USAGE:", "   berth-runtime [global options] command [command options] [arguments...]", "",
             f"VERSION:\n   {__version__}", "", "COMMANDS:"]
    for name, (_, _, summary) in COMMANDS.items():
        lines.append(f"   {name:<10}  {summary}")
    lines += ["", "GLOBAL OPTIONS:",
              "   --debug             enable debug logging",
              "   --log value         set the log file to write runtime logs to (default: stderr)",
              "   --log-format value  set the log format ('text' (default), or 'json')",
              "   --root value        root directory for storage of container state (default: /run/berth-runtime)",
              "   --systemd-cgroup    enable systemd cgroup support (not supported: an error)",
              "   --help, -h          show help", "   --version, -v       print the version"]
    return "\n".join(lines) + "\n"


def one_id(args: list[str], cmd: str) -> str:
    if len(args) != 1:
        raise UsageError(f'"{cmd}" requires exactly 1 argument(s)')
    return args[0]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    log = None
    try:
        gopts, rest = parse_flags(argv, GLOBAL_FLAGS, stop_at_positional=True)
        fmt = gopts.get("log_format") or "text"
        if fmt not in ("text", "json"):
            raise UsageError(f"invalid log-format: {fmt}")
        log = Log(gopts.get("log"), fmt, gopts.get("debug", False))
        if gopts.get("version"):
            v = sys.version_info
            sys.stdout.write(f"berth-runtime version {__version__}\nspec: {OCI_VERSION}\npython: {v[0]}.{v[1]}.{v[2]}\n")
            return 0
        if gopts.get("help") or not rest:
            sys.stdout.write(usage())
            return 0
        cmd, args = rest[0], rest[1:]
        if cmd not in COMMANDS:
            raise UsageError(f"No help topic for '{cmd}'")
        if gopts.get("systemd_cgroup"):
            from berth.errors import NotImplementedYetError

            raise NotImplementedYetError("systemd cgroup driver is not supported: use cgroupfs (omit --systemd-cgroup)")
        flags, arg_usage, summary = COMMANDS[cmd]
        opts, args = parse_flags(args, flags, stop_at_positional=cmd in STOP_AT_ID)
        if opts.get("help"):
            sys.stdout.write(f"NAME:\n   berth-runtime {cmd} - {summary}\n\nUSAGE:\n   berth-runtime {cmd} [command options] {arg_usage}\n")
            return 0
        paths = RuntimePaths(gopts.get("root"))
        func = COMMAND_FUNCS.get(cmd)
        if func is None:
            module, _, name = EXTERNAL[cmd].partition(":")
            func = getattr(__import__(module, fromlist=[name]), name)
        return func(paths, log, opts, args) or 0
    except BerthError as exc:
        if log is None:
            log = Log(None, "text")
        log.error(exc.message)
        if log.fd != 2:
            sys.stderr.write(exc.message + "\n")
        return 1
    except KeyboardInterrupt:
        return 130


def cmd_spec(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    from berth.errors import AlreadyExistsError
    from berth.oci.runtime import default_spec

    bundle = opts.get("bundle") or "."
    path = os.path.join(bundle, "config.json")
    if os.path.exists(path):
        raise AlreadyExistsError("File config.json exists. Remove it first")
    jsonio.write_atomic(path, jsonio.dumps(default_spec(opts.get("rootless", False)), indent=2) + "\n", 0o666 & ~_umask())
    return 0


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _create_options(opts: dict):
    from berth.runtime.container import CreateOptions

    return CreateOptions(
        bundle=opts.get("bundle") or ".", pid_file=opts.get("pid_file"),
        console_socket=opts.get("console_socket"), no_pivot=opts.get("no_pivot", False),
        no_new_keyring=opts.get("no_new_keyring", False), preserve_fds=opts.get("preserve_fds", 0),
        detach=opts.get("detach", False),
    )


def cmd_create(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    from berth.runtime.container import create

    cid = one_id(args, "create")
    _, ch = create(paths, log, cid, _create_options(opts))
    ch.close()
    return 0


def cmd_run(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    from berth.runtime.container import run

    return run(paths, log, one_id(args, "run"), _create_options(opts))


def cmd_start(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    from berth.runtime.container import start

    start(paths, log, one_id(args, "start"))
    return 0


def cmd_state(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    from berth.runtime.state import ContainerState

    state = ContainerState.load(paths, one_id(args, "state"))
    sys.stdout.write(jsonio.dumps(state.oci_state(), indent=2) + "\n")
    return 0


def cmd_kill(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    from berth.linux.signals import parse_signal
    from berth.runtime.container import kill

    if len(args) not in (1, 2):
        raise UsageError('"kill" requires a minimum of 1 and a maximum of 2 argument(s)')
    try:
        sig = parse_signal(args[1]) if len(args) == 2 else 15
    except ValueError as exc:
        raise InvalidArgumentError(str(exc)) from None
    kill(paths, args[0], sig, opts.get("all", False))
    return 0


def cmd_delete(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    from berth.runtime.container import delete

    delete(paths, log, one_id(args, "delete"), opts.get("force", False))
    return 0


def cmd_list(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    from berth.runtime.container import list_states

    states = [s.oci_state() for s in list_states(paths)]
    fmt = opts.get("format") or "table"
    if opts.get("quiet"):
        sys.stdout.write("".join(s["id"] + "\n" for s in states))
    elif fmt == "json":
        sys.stdout.write(jsonio.dumps(states or None) + "\n")
    elif fmt == "table":
        rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
        for s in states:
            rows.append([s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s.get("owner") or "root"])
        widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(6)]
        for r in rows:
            sys.stdout.write("".join(c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)) + r[-1] + "\n")
    else:
        raise InvalidArgumentError(f"invalid format option: {fmt}")
    return 0


def cmd_features(paths: RuntimePaths, log: Log, opts: dict, args: list[str]) -> int:
    from berth.linux import seccomp as sc
    from berth.linux.capabilities import CAPS
    from berth.oci.runtime import HOOK_KINDS, NAMESPACE_TYPES
    from berth.runtime import lsm
    from berth.runtime.rootfs import FLAGS, PROPAGATION, RECURSIVE

    features = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted([*FLAGS, *PROPAGATION, *RECURSIVE]),
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": sorted(CAPS, key=CAPS.__getitem__),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False},
            "apparmor": {"enabled": lsm.apparmor_enabled()},
            "selinux": {"enabled": lsm.selinux_enabled()},
            "seccomp": {"enabled": True, "actions": sorted(sc._ACTIONS), "operators": sorted(sc._OPS),
                        "archs": _seccomp_arches(sc), "knownFlags": sorted(sc._FLAGS),
                        "supportedFlags": sorted(sc._FLAGS)},
            "intelRdt": {"enabled": False},
        },
        "annotations": {"org.opencontainers.runtime-spec.features.runtime": "berth-runtime",
                        "org.berth.version": __version__},
    }
    sys.stdout.write(jsonio.dumps(features, indent=4) + "\n")
    return 0


# runtime-spec's architecture names; `features` lists those libseccomp knows
SECCOMP_ARCHES = ("SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64",
                  "SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",
                  "SCMP_ARCH_MIPSEL64", "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64",
                  "SCMP_ARCH_PPC64LE", "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_RISCV64")


def _seccomp_arches(sc) -> list[str]:
    out = []
    for a in SECCOMP_ARCHES:
        try:
            sc.arch_token(a)
        except BerthError:
            continue
        out.append(a)
    return sorted(out)


COMMAND_FUNCS = {
    "spec": cmd_spec, "create": cmd_create, "run": cmd_run, "start": cmd_start, "state": cmd_state,
    "kill": cmd_kill, "delete": cmd_delete, "list": cmd_list, "features": cmd_features,
}

EXTERNAL: dict[str, str] = {
    "update": "berth.runtime.cgroup_commands:cmd_update",
    "pause": "berth.runtime.cgroup_commands:cmd_pause",
    "resume": "berth.runtime.cgroup_commands:cmd_resume",
    "ps": "berth.runtime.cgroup_commands:cmd_ps",
    "events": "berth.runtime.cgroup_commands:cmd_events",
    "exec": "berth.runtime.exec:cmd_exec",
}
