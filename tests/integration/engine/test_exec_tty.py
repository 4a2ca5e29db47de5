"""`berth exec -t`: the process gets a pty of its own, made at the CLI's
terminal size and resized with it; `-it` from a terminal is interactive;
`-t` without a terminal still gives the process one."""

import os
import time

from tests.integration.engine.conftest import BERTH
from tests.integration.ptys import pty_session, resize


def test_exec_interactive_tty_follows_the_terminal(berth_rt):
    b = berth_rt
    cid = b.run("-d", "--network", "none", "busybox", "sleep", "100", check=True).stdout.strip()
    state: dict = {}

    def script(out: bytes, fd: int) -> bool:
        if b"# " in out and "typed" not in state:
            os.write(fd, b"tty; stty size; echo in-$((6*7))\r")
            state["typed"] = True
        if b"in-42" in out and "resized" not in state:
            resize(fd, 40, 100)
            state["resized"] = time.monotonic()
        if "resized" in state and time.monotonic() - state["resized"] > 0.3:
            os.write(fd, b"stty size; exit 7\r")
            return True
        return False

    code, out = pty_session([BERTH, "exec", "-it", cid, "sh"], 33, 111, script, env=b.env)
    assert code == 7, out
    text = out.decode(errors="replace")
    assert "/dev/pts/" in text, text
    assert "\r\n33 111\r\n" in text, text  # the CLI's size, from the start
    assert "in-42" in text, text
    assert "\r\n40 100\r\n" in text, text  # and its resize
    b("rm", "-f", cid)


def test_exec_tty_without_a_terminal(berth_rt):
    b = berth_rt
    cid = b.run("-d", "--network", "none", "busybox", "sleep", "100", check=True).stdout.strip()
    p = b("exec", "-t", cid, "sh", "-c", "tty; [ -t 0 ] && [ -t 1 ] && echo both; exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout.startswith("/dev/pts/") and p.stdout.endswith("\r\nboth\r\n"), p.stdout
    p = b("exec", "-it", cid, "true")
    assert p.returncode == 1 and "the input device is not a TTY" in p.stderr
    p = b("exec", cid, "sh", "-c", "[ -t 1 ] || echo no-tty")
    assert p.stdout == "no-tty\n"
    b("rm", "-f", cid)
