"""OCI hooks: each runs with the container's state JSON on stdin, its own
args and env, and an optional timeout in seconds.

fork/exec rather than subprocess: the init process runs startContainer and
createContainer hooks, and subprocess is a heavy import for the start-up path.
"""

import os
import time

from berth import jsonio
from berth.errors import InternalError

FATAL = ("prestart", "createRuntime", "createContainer", "startContainer")


def run_hook(hook: dict, state: dict, kind: str) -> None:
    """Run one hook; raise InternalError naming it if it fails or times out."""
    path = hook["path"]
    args = hook.get("args") or [path]
    env = hook.get("env") or []
    data = jsonio.dumps(state).encode()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setpgid(0, 0)  # its own process group: a timeout kills all it started
            os.dup2(r, 0)
            os.close(w)
            os.execve(path, args, dict(e.split("=", 1) for e in env))
        except BaseException as exc:
            try:
                os.write(2, f"{kind} hook {path}: {exc}\n".encode())
            finally:
                os._exit(127)
    os.close(r)
    try:
        os.write(w, data)
    except BrokenPipeError:
        pass
    finally:
        os.close(w)
    timeout = hook.get("timeout")
    deadline = time.monotonic() + timeout if timeout else None
    delay = 0.0005
    while True:
        done, status = os.waitpid(pid, os.WNOHANG if deadline else 0)
        if done:
            break
        if deadline and time.monotonic() > deadline:
            try:
                os.killpg(pid, 9)
            except ProcessLookupError:
                os.kill(pid, 9)
            os.waitpid(pid, 0)
            raise InternalError(f"{kind} hook {path}: timed out after {timeout}s", hook=path)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        how = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
        raise InternalError(f"{kind} hook {path}: {how}", hook=path)


def run_hooks(config: dict, kind: str, state: dict, log=None) -> None:
    """Run every hook of `kind`. Fatal kinds raise on the first failure;
    poststart and poststop failures are logged as warnings and the rest run,
    as the runtime-spec asks."""
    for hook in (config.get("hooks") or {}).get(kind) or []:
        try:
            run_hook(hook, state, kind)
        except InternalError as exc:
            if kind in FATAL:
                raise
            if log is not None:
                log.warning(exc.message)
