"""A container's terminal follows the terminal of the CLI in front of it:
`run -it` and `attach` pass each resize (SIGWINCH) on to the monitor, which
resizes the container's pty; `attach` also sets its own size on arrival."""

import os
import time

from tests.integration.engine.conftest import BERTH
from tests.integration.ptys import pty_session, resize


def _typist(steps: list[tuple[bytes, object]]):
    """A script: for each (marker, action), once `marker` has been printed
    (after the previous step), do the action: bytes are typed, a (rows, cols)
    pair resizes the terminal, a number pauses that many seconds. A short
    pause after a resize lets the monitor apply it before the next keys."""
    state = {"i": 0, "seen": 0, "at": 0.0}

    def script(out: bytes, fd: int) -> bool:
        i = state["i"]
        if i >= len(steps):
            return True
        marker, action = steps[i]
        if time.monotonic() < state["at"]:
            return False
        pos = out.find(marker, state["seen"])
        if pos < 0:
            return False
        state["seen"] = pos + len(marker)
        if isinstance(action, bytes):
            os.write(fd, action)
        elif isinstance(action, float):
            state["at"] = time.monotonic() + action
        else:
            resize(fd, *action)
            state["at"] = time.monotonic() + 0.3
        state["i"] = i + 1
        return state["i"] >= len(steps)

    return script


def test_run_it_follows_resizes(berth):
    script = _typist([(b"# ", b"stty size\r"), (b"33 111", (40, 100)),
                      (b"# ", b"stty size; exit 4\r")])
    code, out = pty_session([BERTH, "run", "--rm", "-it", "--network", "none", "busybox", "sh"],
                            33, 111, script, env=berth.env)
    assert code == 4, out
    assert b"\r\n33 111\r\n" in out, out
    assert b"\r\n40 100\r\n" in out, out


def test_attach_sets_and_follows_its_terminal_size(berth):
    b = berth
    cid = b.run("-dit", "--network", "none", "busybox", "sh", check=True).stdout.strip()
    # busybox's shell redraws its prompt on the SIGWINCH of attach's resize:
    # keys typed while it does are lost, so wait a moment after that prompt
    script = _typist([(b"# ", 0.5), (b"", b"stty size\r"), (b"25 90", (30, 95)),
                      (b"# ", b"stty size\r"), (b"30 95", b"\x10\x11")])  # ctrl-p ctrl-q: detach
    code, out = pty_session([BERTH, "attach", cid], 25, 90, script, env=b.env)
    assert code == 0, out
    assert b"25 90" in out, out
    assert b"30 95" in out, out
    assert b"running" in b("inspect", "-f", "{{.State.Status}}", cid).stdout.encode()
    b("rm", "-f", cid)
