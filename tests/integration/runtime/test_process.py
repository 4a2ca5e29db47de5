"""What the container's process sees: pid 1, user, cwd, env, rlimits, oom score."""

import pytest

from tests.integration.conftest import unique


def run_ok(runtime, bundle) -> str:
    p = runtime.run("run", "--bundle", bundle.write(), unique())
    assert p.returncode == 0, f"{runtime.name}: {p.stderr}"
    return p.stdout


def test_pid_1_and_hostname(runtime, make_bundle):
    b = make_bundle("sh", "-c", "echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' '")
    b.config["hostname"] = "box1"
    assert run_ok(runtime, b) == "1\nbox1\nsh -c echo $$; hostname; cat /proc/1/cmdline | tr '\\0' ' ' "


def test_user_groups_and_umask(runtime, make_bundle):
    b = make_bundle("sh", "-c", "id -u; id -g; id -G; umask")
    b.config["process"]["user"] = {"uid": 1000, "gid": 100, "additionalGids": [5, 33], "umask": 0o027}
    assert run_ok(runtime, b).split() == ["1000", "100", "100", "5", "33", "0027"]


def test_cwd_and_env(runtime, make_bundle):
    b = make_bundle("sh", "-c", "pwd; echo $FOO; echo $BAR")
    b.config["process"]["cwd"] = "/tmp"
    b.config["process"]["env"] += ["FOO=one two", "BAR="]
    assert run_ok(runtime, b) == "/tmp\none two\n\n"


def test_missing_cwd_is_created(runtime, make_bundle):
    b = make_bundle("pwd")
    b.config["process"]["cwd"] = "/does/not/exist"
    p = runtime.run("run", "--bundle", b.write(), unique())
    # runc creates a missing cwd; so does berth
    assert p.returncode == 0, p.stderr
    assert p.stdout == "/does/not/exist\n"


def test_rlimits(runtime, make_bundle):
    b = make_bundle("sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c")
    b.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 2048},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
    ]
    assert run_ok(runtime, b).split() == ["512", "2048", "0"]


def test_rlimit_above_hard_limit_is_an_error(runtime, make_bundle):
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    b = make_bundle("true")
    b.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    p = runtime.run("run", "--bundle", b.write(), unique())
    assert p.returncode != 0
    if runtime.name == "berth":
        assert "RLIMIT_NOFILE" in p.stderr


def test_oom_score_adj(runtime, make_bundle):
    b = make_bundle("cat", "/proc/self/oom_score_adj")
    b.config["process"]["oomScoreAdj"] = 500
    assert run_ok(runtime, b) == "500\n"


def test_stdin_is_passed_through(runtime, make_bundle):
    b = make_bundle("sh", "-c", "read x; echo got $x")
    import subprocess

    p = subprocess.run(runtime.cmd("run", "--bundle", b.write(), unique()), input=b"hi\n",
                       capture_output=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"got hi\n"


def test_preserve_fds(runtime, make_bundle, workdir):
    import os
    import subprocess

    path = os.path.join(workdir, "extra")
    with open(path, "w") as f:
        f.write("from the host\n")
    b = make_bundle("sh", "-c", "cat <&3; ls /proc/self/fd")
    cmd = runtime.cmd("run", "--preserve-fds", "1", "--bundle", b.write(), unique())
    # the shell opens the file as fd 3, then becomes the runtime
    p = subprocess.run(["sh", "-c", 'exec 3<"$0"; exec "$@"', path, *cmd],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.split("\n")
    assert lines[0] == "from the host"
    # stdio, the preserved fd 3, and the fd ls itself opened: nothing else leaked
    assert sorted(int(x) for x in lines[1:] if x) == [0, 1, 2, 3, 4]


def test_no_fd_leaks_into_the_container(runtime, make_bundle):
    b = make_bundle("ls", "/proc/self/fd")
    out = run_ok(runtime, b).split()
    assert sorted(int(x) for x in out) == [0, 1, 2, 3]


def test_session_keyring_is_the_containers_own(runtime, make_bundle):
    """As runc: a new session keyring named after the container, unless
    --no-new-keyring (then the caller's is inherited)."""
    b = make_bundle("sh", "-c", "cat /proc/keys | awk '{print $9}'")
    b.config["linux"]["maskedPaths"].remove("/proc/keys")
    cid = unique()
    p = runtime.run("run", "--bundle", b.write(), cid)
    assert p.returncode == 0, p.stderr
    assert f"_ses.{cid}:" in p.stdout.split()
    cid2 = unique()
    p = runtime.run("run", "--no-new-keyring", "--bundle", b.path, cid2)
    assert p.returncode == 0, p.stderr
    assert f"_ses.{cid2}:" not in p.stdout.split()


def test_domainname(runtime, make_bundle):
    if runtime.name == "runc":
        pytest.skip("runc 1.1.5 ignores config.domainname (runtime-spec 1.1 added it)")
    b = make_bundle("cat", "/proc/sys/kernel/domainname")
    b.config["domainname"] = "example.test"
    assert run_ok(runtime, b) == "example.test\n"
