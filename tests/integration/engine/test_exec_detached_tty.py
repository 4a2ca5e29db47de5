"""`berth exec -d -t`: the process gets a terminal nobody reads and runs on
after the command returns; a holder (engine/ttyhold.py) keeps the pty's
master open for the process's lifetime and is gone once the process is,
also when the container is removed under it."""

import os
from pathlib import Path

from tests.integration.conftest import live_processes, until


def holders(cid: str) -> list[int]:
    """By command line: the holder names itself (comm) only once started."""
    return live_processes(lambda argv, _comm: any(a.endswith(b"/ttyhold.py") for a in argv)
                          and cid.encode() in argv)


def test_exec_detached_tty_runs_on_a_held_terminal(berth_rt):
    b = berth_rt
    cid = b.run("-d", "--network", "none", "busybox", "sleep", "100", check=True).stdout.strip()
    # after the command has returned, the process still writes to its
    # terminal: with the master closed it would get SIGHUP (and EIO) and
    # never write /tmp/after
    p = b("exec", "-d", "-t", cid, "sh", "-c",
          "test -t 0 && test -t 1 && echo yes > /tmp/tty-ok; tty > /tmp/tty-name; sleep 1; "
          "for i in $(seq 200); do echo chatter-$i; done; test -t 1 && echo alive > /tmp/after")
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    (holder,) = holders(cid)
    until(lambda: Path(f"/proc/{holder}/comm").read_text() == "berth-tty-hold\n")
    with open(f"/proc/{holder}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # a session of its own, without a controlling terminal
    assert (fields[3], fields[4]) == (str(holder), "0")
    fds = os.listdir(f"/proc/{holder}/fd")
    assert sorted(fds) == ["0", "1", "2"], fds
    assert os.readlink(f"/proc/{holder}/fd/0") in ("/dev/ptmx", "/dev/pts/ptmx")
    assert b.out("exec", cid, "cat", "/tmp/tty-ok") == "yes\n"
    # -dit too, from no terminal: a detached exec attaches nothing (Docker's CLI
    # checks for a terminal only when it attaches)
    p = b("exec", "-dit", cid, "sh", "-c", "test -t 0 && echo dit > /tmp/dit-ok")
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    until(lambda: b("exec", cid, "cat", "/tmp/dit-ok").stdout == "dit\n")
    assert b.out("exec", cid, "cat", "/tmp/tty-name").startswith("/dev/pts/")
    until(lambda: b("exec", cid, "cat", "/tmp/after").stdout == "alive\n")
    # the process has exited: its holder saw the slave close and left
    until(lambda: not holders(cid))
    b("rm", "-f", cid)


def test_exec_detached_tty_nothing_left_after_rm(berth_rt):
    b = berth_rt
    cid = b.run("-d", "--network", "none", "busybox", "sleep", "100", check=True).stdout.strip()
    for _ in range(2):
        assert b("exec", "-d", "-t", cid, "sleep", "100").returncode == 0
    assert len(holders(cid)) == 2
    # output nobody reads does not block the process: the holder drains it
    assert b("exec", "-d", "-t", cid, "sh", "-c",
             "head -c 1000000 /dev/zero | tr '\\0' x; touch /tmp/flooded").returncode == 0
    until(lambda: b("exec", cid, "ls", "/tmp/flooded").returncode == 0)
    assert b.out("rm", "-f", cid) == cid + "\n"
    until(lambda: not holders(cid), timeout=5)


def test_exec_detached_tty_failure_leaves_no_holder(berth_rt):
    b = berth_rt
    cid = b.run("-d", "--network", "none", "busybox", "sleep", "100", check=True).stdout.strip()
    p = b("exec", "-d", "-t", cid, "no-such-command")
    assert p.returncode == 127, p.stderr
    assert "no-such-command" in p.stderr
    assert holders(cid) == []
    b("rm", "-f", cid)
    p = b("exec", "-d", "-t", cid, "true")
    assert p.returncode != 0 and f"No such container: {cid}" in p.stderr, p.stderr
