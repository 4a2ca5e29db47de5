"""The runc-compatible command line parser."""

import pytest

from berth.runtime.cli import CREATE_FLAGS, GLOBAL_FLAGS, UsageError, parse_flags


def test_global_flags_stop_at_the_command():
    opts, rest = parse_flags(["--root", "/r", "--log-format=json", "--debug", "run", "-d", "x"],
                             GLOBAL_FLAGS, stop_at_positional=True)
    assert opts == {"root": "/r", "log_format": "json", "debug": True}
    assert rest == ["run", "-d", "x"]


def test_command_flags_before_and_after_the_id():
    flags = {**CREATE_FLAGS, "detach": ("detach", "bool"), "d": ("detach", "bool")}
    opts, rest = parse_flags(["-b", "/bundle", "id1", "--pid-file", "/p", "-d", "--preserve-fds=2"],
                             flags, stop_at_positional=False)
    assert opts == {"bundle": "/bundle", "pid_file": "/p", "detach": True, "preserve_fds": 2}
    assert rest == ["id1"]


def test_single_dash_long_names_as_urfave_cli():
    opts, _ = parse_flags(["-bundle", "/b", "-console-socket=/s"], CREATE_FLAGS, stop_at_positional=False)
    assert opts == {"bundle": "/b", "console_socket": "/s"}


@pytest.mark.parametrize(("argv", "message"), [
    (["--nope"], "flag provided but not defined: -nope"),
    (["--bundle"], "flag needs an argument: -bundle"),
    (["--preserve-fds", "x"], 'invalid value "x" for flag -preserve-fds'),
])
def test_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        parse_flags(argv, CREATE_FLAGS, stop_at_positional=False)


def test_double_dash_ends_flags():
    _, rest = parse_flags(["id", "--", "-x"], CREATE_FLAGS, stop_at_positional=False)
    assert rest == ["id", "-x"]
