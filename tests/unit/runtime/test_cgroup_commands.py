"""The pure parts of berth-runtime's cgroup commands: flag and duration
parsing, merging an update into the recorded resources, filtering ps output."""

import pytest

from berth.errors import InvalidArgumentError, UnavailableError
from berth.runtime import cli
from berth.runtime.cgroup_commands import (
    filter_ps_output,
    merge_resources,
    parse_duration,
    resources_from_opts,
)
from berth.runtime.log import Log


def update_opts(argv):
    opts, args = cli.parse_flags(argv, cli.COMMANDS["update"][0], stop_at_positional=False)
    return opts, args


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5.0), ("250ms", 0.25), ("1m30s", 90.0), ("1.5h", 5400.0), ("100us", 1e-4), ("0", 0.0), ("-1s", -1.0)],
)
def test_parse_duration(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "5x", "1..s", "."])
def test_parse_duration_refuses(text):
    with pytest.raises(InvalidArgumentError, match="interval"):
        parse_duration(text)


def test_update_flags_to_resources():
    opts, args = update_opts(
        ["--memory", "256m", "--memory-swap=-1", "--cpu-share", "512", "--cpu-quota", "50000",
         "--cpuset-cpus", "0-1", "--pids-limit", "40", "--blkio-weight", "300", "c1"]
    )
    assert args == ["c1"]
    assert resources_from_opts(opts, Log(None)) == {
        "memory": {"limit": 256 << 20, "swap": -1},
        "cpu": {"shares": 512, "quota": 50000, "cpus": "0-1"},
        "pids": {"limit": 40},
        "blockIO": {"weight": 300},
    }


def test_update_zero_int_flags_and_empty_strings_change_nothing():
    opts, _ = update_opts(["--pids-limit", "0", "--blkio-weight", "0", "--cpuset-cpus", "", "c1"])
    assert resources_from_opts(opts, Log(None)) == {}


def test_update_kernel_memory_is_ignored_and_rdt_unavailable(tmp_path):
    log_path = tmp_path / "log"
    opts, _ = update_opts(["--kernel-memory", "10m", "c1"])
    assert resources_from_opts(opts, Log(str(log_path))) == {}
    assert "--kernel-memory is ignored" in log_path.read_text()
    opts, _ = update_opts(["--l3-cache-schema", "L3:0=f", "c1"])
    with pytest.raises(UnavailableError, match="l3 cache schema"):
        resources_from_opts(opts, Log(None))


def test_update_int_flag_parse_error_as_runc():
    with pytest.raises(InvalidArgumentError, match='invalid value "abc" for flag -pids-limit'):
        update_opts(["--pids-limit", "abc", "c1"])


def test_merge_resources_sets_fields_and_keeps_the_rest():
    current = {"memory": {"limit": 1, "swap": 2}, "cpu": {"shares": 3}, "devices": [{"allow": False}]}
    merged = merge_resources(
        current, {"memory": {"limit": 10, "reservation": None}, "pids": {"limit": 5}, "cpu": {"idle": 0}}
    )
    assert merged == {
        "memory": {"limit": 10, "swap": 2},
        "cpu": {"shares": 3, "idle": 0},
        "pids": {"limit": 5},
        "devices": [{"allow": False}],
    }
    assert current["memory"] == {"limit": 1, "swap": 2}  # not modified in place


def test_merge_resources_zero_means_unchanged_and_unified_replaces():
    merged = merge_resources(
        {"cpu": {"quota": 5, "cpus": "0"}, "unified": {"a": "1", "b": "2"}},
        {"cpu": {"quota": 0, "cpus": ""}, "unified": {"a": "3"}},
    )
    assert merged == {"cpu": {"quota": 5, "cpus": "0"}, "unified": {"a": "3"}}


PS = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 02:00 ?        00:00:01 /sbin/init
root         100       1  0 02:00 ?        00:00:00 sleep 100
root         101     100  0 02:00 ?        00:00:00 sh -c x
"""


def test_filter_ps_output_keeps_the_header_and_the_containers_lines():
    assert filter_ps_output(PS, {100, 101}).splitlines() == [
        PS.splitlines()[0], PS.splitlines()[2], PS.splitlines()[3]
    ]
    # with other ps options, the PID column is found by name
    assert filter_ps_output("COMMAND PID\nsleep 7\nsh 8\n", {8}) == "COMMAND PID\nsh 8\n"


def test_filter_ps_output_needs_a_pid_column():
    with pytest.raises(InvalidArgumentError, match="PID field"):
        filter_ps_output("USER COMMAND\nroot sh\n", {1})
