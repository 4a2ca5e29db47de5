"""The `berth` entry point: `run` and `exec` without click.

Importing click costs ~40 ms here, more than the rest of a `berth run --rm`.
The flags of `run` and `exec` are plain tables (`cli/runner.py`); this
module parses them as click's parser does (`--opt value`, `--opt=value`,
`-ovalue`, grouped short flags such as `-it`, `--` and the first positional
argument ending the options) and runs the command's body. Anything else
(other commands, `--help`, an unknown or malformed flag, a missing image
that would be pulled) goes to the click command group unchanged, before
anything has been changed, so click stays the one source of usage errors
and help texts.

The process leaves with _exit after flushing its output: interpreter
teardown costs several ms and there is nothing for it to do.

A plain `exec` imports neither `os` (~1.5 ms; posix suffices) nor the paths
module, nor the engine's package: see berth/execclient.py.
"""

import posix
import sys

# `berth exec`'s flags (runner.RUN_FLAGS explains the table): here, so that a
# plain `berth exec` does not import cli/runner.py
EXEC_FLAGS: list[tuple] = [
    (("-d", "--detach"), "detach", "flag", False),
    (("-i", "--interactive"), "interactive", "flag", False),
    (("-t", "--tty"), "tty", "flag", False),
    (("-e", "--env"), "env", "multi", ()),
    (("--env-file",), "env_file", "multi", ()),
    (("-u", "--user"), "user", "str", ""),
    (("-w", "--workdir"), "workdir", "str", ""),
    (("--privileged",), "privileged", "flag", False),
]


def main() -> None:
    code = fast(sys.argv[1:])
    if code is None:
        from berth.cli.main import main as click_main

        click_main()
        return
    _leave(code)


def _leave(code: int) -> None:
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    posix._exit(code)


def fast(argv: list[str]) -> int | None:
    """Run `argv` (without the program name) if it is a `run` or `exec` this
    module handles: the exit code; None to hand it to click."""
    root = state = None
    i = 0
    while i < len(argv):  # the group's own options
        a = argv[i]
        name, eq, value = a.partition("=")
        if name not in ("--root", "--state"):
            break
        if not eq:
            if i + 1 >= len(argv):
                return None
            value = argv[i + 1]
            i += 1
        if name == "--root":
            root = value
        else:
            state = value
        i += 1
    if i >= len(argv) or argv[i] not in ("run", "exec"):
        return None
    command = argv[i]
    if command == "exec":
        parsed = parse(EXEC_FLAGS, argv[i + 1:], 2)
        if parsed is None:
            return None
        code = exec_by_helper(root, state, *parsed)
        if code is not None:
            return code
    from berth.cli import runner

    if command == "run":
        parsed = parse([runner.DETACH_FLAG, *runner.RUN_FLAGS], argv[i + 1:], 1)
    else:
        parsed = parse(EXEC_FLAGS, argv[i + 1:], 2)
    if parsed is None:
        return None
    kw, args = parsed
    from berth.errors import BerthError
    from berth.paths import Paths

    paths = Paths(root, state)
    engines: list = []

    def engine():
        from berth.engine.containers import Engine

        eng = Engine(paths)
        engines.append(eng)
        eng.maybe_boot()
        return eng

    try:
        if command == "run":
            detach = kw.pop("detach")
            code = runner.run(engine, args[0], tuple(args[1:]), detach, kw, fast=True)
            return 0 if code is None else code
        return runner.exec_(engine(), args[0], tuple(args[1:]), kw)
    except runner.Fallback:
        for eng in engines:
            eng.close()
        return None
    except BerthError as exc:
        sys.stdout.flush()
        sys.stderr.write(runner.error_message(command, exc) + "\n")
        return runner.exit_code_for(command, exc)
    # otherwise the engine is not closed: the process leaves at once (_leave),
    # and closing the database, usually its last connection, would checkpoint
    # the WAL into the database file and fsync both (~2 ms of every run); the
    # automatic checkpoint of a later commit does that in bulk. Everything
    # committed is in the WAL already.


def exec_by_helper(root: str | None, state: str | None, kw: dict, args: list[str]
                   ) -> int | None:
    """`berth exec` served by the zygote's spare or the container's monitor
    (berth/execclient.py), without the engine in this process: the exit code,
    or None when the engine's path must run it (nothing was done)."""
    if kw["tty"] or kw["env_file"]:
        return None
    environ = posix.environ  # bytes, as the kernel gave them
    env = []
    for v in kw["env"]:  # options.parse_env
        if "=" in v:
            if v.startswith("="):
                return None  # the engine's path reports it
            env.append(v)
        else:
            value = environ.get(v.encode("utf-8", "surrogateescape"))
            if value is not None:
                env.append(f"{v}={value.decode('utf-8', 'surrogateescape')}")
    from berth import DEFAULT_ROOT, DEFAULT_STATE, execclient

    req = {"ref": args[0], "args": list(args[1:]), "env": env, "workdir": kw["workdir"],
           "user": kw["user"], "privileged": kw["privileged"], "detach": kw["detach"]}
    # as Paths (which imports os): flag, environment, default
    root = execclient.absolute(root or (environ.get(b"BERTH_ROOT") or b"").decode() or DEFAULT_ROOT)
    state = execclient.absolute(state or (environ.get(b"BERTH_STATE") or b"").decode()
                           or DEFAULT_STATE)
    stdin = 0 if kw["interactive"] else posix.open("/dev/null", posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        sys.stdout.flush()
        result = execclient.request(root, state, req, stdin)
    finally:
        if stdin:
            posix.close(stdin)
    if result is None:
        return None
    code, error = result
    if error:
        from berth.cli.runner import error_message
        from berth.errors import BerthError

        sys.stderr.write(error_message("exec", BerthError(error)) + "\n")
    return code


def parse(flags: list, args: list[str], min_args: int) -> tuple[dict, list[str]] | None:
    """Options (`flags`, see runner.RUN_FLAGS) up to the first positional
    argument, as click parses a command with allow_interspersed_args=False:
    (values by parameter name, positional arguments), or None where click
    would fail or do something this parser does not (help, an unknown flag,
    a bad value, fewer than `min_args` positional arguments)."""
    by_decl = {}
    kw: dict = {}
    for decls, name, kind, default in flags:
        for d in decls:
            by_decl[d] = (name, kind)
        kw[name] = default
    multi: dict[str, list[str]] = {}
    i = 0
    n = len(args)

    def take(name: str, kind: str, value: str) -> bool:
        if kind == "multi":
            multi.setdefault(name, []).append(value)
        elif kind == "int":
            try:
                kw[name] = int(value)
            except ValueError:
                return False
        elif kind.startswith("choice:"):
            if value not in kind[7:].split("|"):
                return False
            kw[name] = value
        else:
            kw[name] = value
        return True

    while i < n:
        a = args[i]
        if a == "--":
            i += 1
            break
        if a[:1] != "-" or a == "-":
            break
        if a.startswith("--"):
            name_, eq, value = a.partition("=")
            spec = by_decl.get(name_)
            if spec is None:
                return None
            name, kind = spec
            if kind == "flag":
                if eq:
                    return None  # click: "does not take a value"
                kw[name] = True
            else:
                if not eq:
                    if i + 1 >= n:
                        return None
                    i += 1
                    value = args[i]
                if not take(name, kind, value):
                    return None
            i += 1
            continue
        # one or more short options: -it, -e X, -eX (and -e=X is "=X", as
        # click reads it: berth has no single-dash long options)
        j = 1
        while j < len(a):
            spec = by_decl.get("-" + a[j])
            if spec is None:
                return None
            name, kind = spec
            if kind == "flag":
                kw[name] = True
                j += 1
                continue
            if j + 1 < len(a):
                value = a[j + 1:]
            else:
                if i + 1 >= n:
                    return None
                i += 1
                value = args[i]
            if not take(name, kind, value):
                return None
            break
        i += 1
    for name, values in multi.items():
        kw[name] = tuple(values)
    rest = args[i:]
    if len(rest) < min_args:
        return None
    return kw, rest
