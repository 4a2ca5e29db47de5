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

A plain `exec` does not get here: the launcher runs it through
berth/execclient.py (which has the parser and the exec flags), importing
neither this package nor `os` (~1.5 ms; posix suffices), the paths module
or the engine's package; what that declines comes here.
"""

import sys

from berth.execclient import EXEC_FLAGS, _leave, global_options, parse


def main() -> None:
    code = fast(sys.argv[1:])
    if code is None:
        from berth.cli.main import main as click_main

        click_main()
        return
    _leave(code)


def fast(argv: list[str]) -> int | None:
    """Run `argv` (without the program name) if it is a `run` or `exec` this
    module handles: the exit code; None to hand it to click. An exec comes
    here only when execclient.main has found no helper to serve it: it
    runs on the engine's path."""
    found = global_options(argv)
    if found is None:
        return None
    root, state, i = found
    if i >= len(argv) or argv[i] not in ("run", "exec"):
        return None
    command = argv[i]
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
