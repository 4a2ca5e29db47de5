"""The click-free parser of `berth run`/`berth exec` (cli/fast.py) agrees with
click's parsing of the same commands, and hands to click whatever it does not
parse the same way."""

import pytest

from berth.cli import fast
from berth.cli.containers import exec_, run

RUN_CASES = [
    ["busybox"],
    ["busybox", "true"],
    ["--rm", "--network", "none", "busybox", "true"],
    ["--rm", "--network=none", "busybox", "sh", "-c", "echo hi"],
    ["-d", "--name", "web", "-e", "A=1", "-e", "B=2", "-l", "x=y", "busybox", "sleep", "9"],
    ["-it", "busybox", "sh"],
    ["-dit", "-eA=1", "-m", "256m", "--cpus=1.5", "busybox"],
    ["-c", "512", "--pids-limit", "20", "--stop-timeout=3", "busybox", "true"],
    ["--pull", "never", "--restart", "on-failure:3", "busybox"],
    ["-v", "/a:/b", "--mount", "type=tmpfs,target=/t", "--tmpfs", "/run", "busybox"],
    ["--", "busybox", "--rm"],
    ["-p", "80:80", "-P", "--dns", "1.1.1.1", "--add-host", "a:1.2.3.4", "busybox"],
    ["--health-cmd", "true", "--health-retries", "2", "--no-healthcheck", "busybox"],
    ["-h", "myhost", "-w", "/tmp", "-u", "1000", "busybox", "-x", "--y"],
    ["--entrypoint", "", "busybox"],
    ["--env-file", "/dev/null", "busybox", "-"],
    ["-e=A", "-tie", "B", "busybox"],
]

EXEC_CASES = [
    ["c1", "true"],
    ["-i", "c1", "sh", "-c", "cat"],
    ["-d", "-e", "A=1", "--env-file=/dev/null", "-u", "0", "-w", "/", "--privileged", "c1", "ls"],
    ["-it", "c1", "sh"],
    ["c1", "ls", "-l", "--", "x"],
]

# click fails (usage error), or parses a way this parser leaves to click
FALLBACK = [
    ("run", ["--help"]),
    ("run", ["--bogus", "busybox"]),
    ("run", ["--rm=1", "busybox"]),
    ("run", ["-c", "x", "busybox"]),
    ("run", ["--pull", "sometimes", "busybox"]),
    ("run", ["--name"]),
    ("run", []),
    ("run", ["-z", "busybox"]),
    ("exec", ["c1"]),
    ("exec", ["-h", "c1", "true"]),
    ("exec", ["--help"]),
]


def click_params(command, args):
    ctx = command.make_context(command.name, list(args))
    return dict(ctx.params)


@pytest.mark.parametrize("args", RUN_CASES)
def test_run_parses_as_click(args):
    from berth.cli import runner

    parsed = fast.parse([runner.DETACH_FLAG, *runner.RUN_FLAGS], args, 1)
    assert parsed is not None
    kw, rest = parsed
    expected = click_params(run, args)
    assert {**kw, "image": rest[0], "command": tuple(rest[1:])} == expected


@pytest.mark.parametrize("args", EXEC_CASES)
def test_exec_parses_as_click(args):
    from berth.cli import runner

    parsed = fast.parse(runner.EXEC_FLAGS, args, 2)
    assert parsed is not None
    kw, rest = parsed
    expected = click_params(exec_, args)
    assert {**kw, "container": rest[0], "command": tuple(rest[1:])} == expected


@pytest.mark.parametrize(("command", "args"), FALLBACK)
def test_left_to_click(command, args):
    from berth.cli import runner

    flags = [runner.DETACH_FLAG, *runner.RUN_FLAGS] if command == "run" else runner.EXEC_FLAGS
    assert fast.parse(flags, args, 1 if command == "run" else 2) is None


@pytest.mark.parametrize("argv", [
    [], ["--help"], ["--version"], ["ps"], ["--root", "/x", "ps"], ["--root"],
    ["run", "--bogus", "busybox"], ["exec", "c1"], ["container", "run", "busybox"],
])
def test_other_commands_go_to_click(argv):
    assert fast.fast(argv) is None
