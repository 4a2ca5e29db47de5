"""`berth exec` served by a zygote's spare helper or the container's monitor.

A plain `berth exec CTR CMD...` does not load the engine, the database
module or the runtime library into the CLI (together ~35 ms of imports,
more than the exec itself), nor `os` (~1.5 ms; posix suffices). The CLI
hands the request and its stdio to a process that has the runtime library
and sqlite loaded (pages shared with the monitor zygote), which checks the
request against the database, builds the process as `Engine.exec` does
(`build_process`) and runs the runtime's exec with the CLI's fds as the
process's stdio. That process is, in order of preference:

- the zygote's spare exec helper (STATE/monitor/exec.sock, execserve.spare):
  forked by the zygote on demand and then ahead of need while execs come,
  its database already open; it serves one exec for any running container
  of its engine, and the zygote forks the next. Not for a detached exec,
  nor when no zygote runs (the socket then refuses the connection) or the
  request is another engine's;
- the container's monitor (BUNDLE/attach.sock, see monitor.listen), found
  from a name hint: the monitor forks a short-lived helper for it (the
  monitor itself only peeks and forks: what it executes would become
  private pages of a long-lived process);
- else the engine's own path, in the CLI.

Protocol (a SOCK_STREAM connection to either socket, root only: both are
0600 in 0700 directories):

- CLI: ``exec``; helper: ``ok PID\\n`` (its pid: the CLI forwards the
  signals it gets to it, which the runtime's exec passes on to the process);
- CLI: the request, a 4-byte length then a marshalled dict (ref, args, env,
  workdir, user, privileged, detach; and for the spare the database of the
  CLI's --root), with the process's stdin, stdout and stderr (SCM_RIGHTS)
  on its first byte;
- helper, once, then it closes: ``exit N`` (the process's exit status),
  ``error N MESSAGE`` (the exec failed: Docker's exit code N and message),
  ``fallback`` (nothing was done: the request is not one the helper
  serves, e.g. the reference names another container, or the container
  is paused or stopping; the CLI then runs the engine's path, which gives
  Docker's answer), or, from a spare, ``pass`` (the request is another
  engine's: the CLI asks the container's monitor).

Name hints: STATE/names/NAME is a symbolic link to the container's id,
made when a container starts and on rename, removed with it. A hint is
never trusted: the helper resolves the reference in the database (Docker's
order: full id, name, unique id prefix) and answers ``fallback`` unless it
names a running container (for a monitor: its own), so a stale or missing
hint only costs the engine's path.

The attach socket also takes ``wsiz ROWS COLS`` from a foreground `run -t`
or `attach` whose terminal was resized (`send_window_size`,
`follow_window_size`): the monitor resizes the container's pty.

This module is the CLI's side (and where the protocol and the hints'
layout live). It is import-light: a module of its own outside the engine's
package, importing posix, _socket, marshal and _signal only (a plain `berth
exec` imports it and berth.rcu, and nothing else of berth's beyond the
CLI's fast path). The engine's side is engine/execd.py (hints written,
the process built) and engine/execserve.py (the helpers).
"""

import marshal
import posix

HINTS = "names"
SPARE = "monitor/exec.sock"  # under --state: the zygote's spare exec helper (execserve.spare)
FIRST_REPLY_TIMEOUT_S = 1.0  # the monitor accepts at once unless it is in a restart back-off
# a spare answers in well under a millisecond when one waits; when execs come
# in parallel the next may still be in the making: the monitor's path then
# (safe: nothing but ``exec`` has been sent, and a spare that finds the
# connection closed does nothing)
SPARE_REPLY_TIMEOUT_S = 0.05
_S_IFDIR = 0o040000


def _hint_path(state: str, name: str) -> str | None:
    name = name.removeprefix("/")
    if not name or "/" in name or name.startswith(".") or "\0" in name:
        return None
    return f"{state}/{HINTS}/{name}"


def _hex(s: str) -> bool:
    return bool(s) and all(c in "0123456789abcdef" for c in s)


def find_bundle(root: str, state: str, ref: str) -> str | None:
    """The bundle of the container `ref` probably names (full id, name hint,
    unique prefix of the ids under ROOT/containers), or None."""
    containers = f"{root}/containers"
    if len(ref) == 64 and _hex(ref) and _is_dir(f"{containers}/{ref}"):
        return f"{containers}/{ref}"
    path = _hint_path(state, ref)
    if path is not None:
        try:
            cid = posix.readlink(path)
        except OSError:
            cid = ""
        if len(cid) == 64 and _hex(cid):
            return f"{containers}/{cid}"
    if _hex(ref):
        try:
            found = [n for n in posix.listdir(containers) if n.startswith(ref)]
        except OSError:
            return None
        if len(found) == 1:
            return f"{containers}/{found[0]}"
    return None


def _is_dir(path: str) -> bool:
    try:
        return posix.stat(path).st_mode & 0o170000 == _S_IFDIR
    except OSError:
        return False


def absolute(path: str) -> str:
    """`path` made absolute against this process's directory (not
    normalised: the receiver does that, see serve_spare)."""
    return path if path.startswith("/") else f"{posix.getcwd()}/{path}"


# the command line -----------------------------------------------------------------------

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


def global_options(argv: list[str]) -> tuple[str | None, str | None, int] | None:
    """The CLI group's own options (--root, --state) at the head of `argv`:
    (root, state, index of the command), or None if they are malformed."""
    root = state = None
    i = 0
    while i < len(argv):
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
    return root, state, i


def main() -> None:
    """The launcher's `berth exec`, before the CLI's modules are imported:
    run by a spare or a monitor (exec_by_helper), or else handed to
    cli/fast.py with nothing done (the engine's path, or click for a
    usage error)."""
    import sys

    argv = sys.argv[1:]
    found = global_options(argv)
    if found is not None:
        root, state, i = found
        if i < len(argv) and argv[i] == "exec":
            parsed = parse(EXEC_FLAGS, argv[i + 1:], 2)
            if parsed is not None:
                code = exec_by_helper(root, state, *parsed)
                if code is not None:
                    _leave(code)
    from berth.cli.fast import main as cli_main

    cli_main()


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
    import sys

    from berth import DEFAULT_ROOT, DEFAULT_STATE

    req = {"ref": args[0], "args": list(args[1:]), "env": env, "workdir": kw["workdir"],
           "user": kw["user"], "privileged": kw["privileged"], "detach": kw["detach"]}
    # as Paths (which imports os): flag, environment, default
    root = absolute(root or (environ.get(b"BERTH_ROOT") or b"").decode() or DEFAULT_ROOT)
    state = absolute(state or (environ.get(b"BERTH_STATE") or b"").decode()
                           or DEFAULT_STATE)
    stdin = 0 if kw["interactive"] else posix.open("/dev/null", posix.O_RDONLY | posix.O_CLOEXEC)
    try:
        sys.stdout.flush()
        result = request(root, state, req, stdin)
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


def _leave(code: int) -> None:
    """Flush and leave at once: interpreter teardown costs several ms and
    there is nothing for it to do."""
    import sys

    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    posix._exit(code)


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


# the CLI's side -------------------------------------------------------------------------

def request(root: str, state: str, req: dict, stdin: int) -> tuple[int, str] | None:
    """Run `req` (see the module's docstring) through the zygote's spare
    exec helper, or else the monitor of the container it names, with `stdin`
    and this process's stdout and stderr: (exit code, error message or ""),
    or None when nothing was done and the engine's path must run it.
    `root` and `state` are absolute."""
    if not req.get("detach"):
        # a detached process is left to a subreaper: its container's monitor
        result = _ask(state, SPARE, {**req, "database": f"{root}/berth.db"}, stdin,
                      SPARE_REPLY_TIMEOUT_S)
        if result is not _PASS:
            # the spare answered, or looked in the database and found nothing
            # it runs: the monitor's path would not do better
            return result
    bundle = find_bundle(root, state, req["ref"])
    if bundle is None:
        return None
    result = _ask(bundle, "attach.sock", req, stdin)
    return None if result is _PASS else result


_PASS = (-1, "pass")  # `_ask`: nothing done, and nothing known: ask the next one


def _ask(directory: str, name: str, req: dict, stdin: int,
         timeout: float = FIRST_REPLY_TIMEOUT_S) -> tuple[int, str] | None:
    """`req` through the socket DIRECTORY/NAME (see `request`): as
    `request`, or _PASS when nobody there serves it (no socket, no answer,
    another engine's spare)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
    try:
        if not _connect(sock, directory, name):
            return _PASS
        sock.settimeout(timeout)
        try:
            sock.sendall(b"exec")
            first = _line(sock)
        except OSError:  # a timeout too: the monitor does not answer now
            return _PASS
        if not first.startswith(b"ok "):
            return _PASS
        helper = int(first[3:])
        sock.settimeout(None)
        data = marshal.dumps(req)
        msg = len(data).to_bytes(4, "little") + data
        try:
            sent = sock.sendmsg([msg], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                         b"".join(fd.to_bytes(4, "little")
                                                  for fd in (stdin, 1, 2)))])
            if sent < len(msg):
                sock.sendall(msg[sent:])
        except OSError:
            return _PASS
        _forward_to(helper)
        reply = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except InterruptedError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                break
            reply += chunk
    finally:
        sock.close()
    if reply == b"fallback\n":
        return None
    if reply == b"pass\n":
        return _PASS
    word, _, rest = reply.partition(b" ")
    if word == b"exit":
        return int(rest), ""
    if word == b"error":
        code, _, text = rest.partition(b" ")
        return int(code), text.decode(errors="replace").rstrip("\n")
    return 126, "exec: the container's monitor ended the exec without an exit status"


def send_window_size(bundle: str, rows: int, cols: int) -> None:
    """Tell the container's monitor that the terminal of a foreground
    `run -t` or `attach` is now rows x cols (best effort: a monitor that is
    gone has no terminal to resize)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM | _socket.SOCK_CLOEXEC, 0)
    try:
        if _connect(sock, bundle, "attach.sock"):
            sock.sendall(f"wsiz {rows} {cols}\n".encode())
    except OSError:
        pass
    finally:
        sock.close()


def follow_window_size(bundle: str, fd: int = 0) -> None:
    """From now on, each resize of the terminal on `fd` (SIGWINCH) is sent
    to the container's monitor."""
    import _signal
    import os

    def resized(_signum: int, _frame: object) -> None:
        try:
            size = os.get_terminal_size(fd)
        except OSError:
            return
        send_window_size(bundle, size.lines, size.columns)

    _signal.signal(28, resized)  # SIGWINCH


def _connect(sock, directory: str, name: str) -> bool:
    path = f"{directory}/{name}"
    try:
        if len(path) < 100:
            sock.connect(path)
            return True
        # relative to the directory: a path of any length fits sun_path
        cwd = posix.open(".", posix.O_RDONLY | posix.O_DIRECTORY | posix.O_CLOEXEC)
        try:
            posix.chdir(directory)
            sock.connect(name)
        finally:
            posix.fchdir(cwd)
            posix.close(cwd)
        return True
    except OSError:
        return False


def _line(sock) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = sock.recv(64)
        if not chunk:
            break
        buf += chunk
    return buf




def _forward_to(pid: int) -> None:
    """berth.linux.signals.forward_to, here so that the CLI's exec imports
    no package for it (~0.35 ms): FORWARDED's signals go on to `pid`."""
    import _signal

    def forward(signum: int, _frame: object) -> None:
        try:
            posix.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in (1, 2, 3, 10, 12, 15, 28):  # signals.FORWARDED
        _signal.signal(sig, forward)
