"""Typed messages between the runtime process and its child and init.

A SOCK_SEQPACKET socket pair made before fork: one message per datagram,
a JSON object with a "type". Failures in the child travel as a message of type
"error" naming the step, never as a bare exit code.

    child  -> parent   userns        the child made a user namespace; write its maps
    parent -> child    mapped
    child  -> parent   pid           {"pid": host pid of the init}
    init   -> parent   hooks         run prestart and createRuntime hooks now
    parent -> init     hooks-done
    init   -> parent   ready         the rootfs is built; init waits on the exec FIFO
    init   -> parent   error         {"step": ..., "message": ..., "errno": ...}
    (end of file)                    the init exec'd the user process (CLOEXEC)
"""

import _socket

from berth import jsonio
from berth.errors import BerthError, InternalError

MAX = 65536


class ChannelClosed(Exception):
    pass


class Channel:
    __slots__ = ("sock",)

    def __init__(self, sock: "_socket.socket") -> None:
        self.sock = sock

    @classmethod
    def pair(cls) -> tuple["Channel", "Channel"]:
        a, b = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0)
        return cls(a), cls(b)

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, type_: str, **fields: object) -> None:
        fields["type"] = type_
        self.sock.send(jsonio.dumps(fields).encode())

    def recv(self) -> dict:
        try:
            data = self.sock.recv(MAX)
        except ConnectionResetError:
            # the peer exited with a message of ours unread (the kernel then
            # reports ECONNRESET once, before what it had sent us): its last
            # words, such as an error, are still queued
            try:
                data = self.sock.recv(MAX, _socket.MSG_DONTWAIT)
            except OSError:
                data = b""
        if not data:
            raise ChannelClosed()
        msg = jsonio.loads(data)
        assert isinstance(msg, dict)
        return msg

    def expect(self, type_: str) -> dict:
        msg = self.recv()
        if msg["type"] == "error":
            raise error_from_message(msg)
        if msg["type"] != type_:
            raise InternalError(f"sync: expected {type_!r}, got {msg['type']!r}")
        return msg

    def send_error(self, step: str, exc: BaseException) -> None:
        try:
            self.send("error", **_error_fields(step, exc))
        except OSError:
            pass

    def close(self) -> None:
        self.sock.close()


def _error_fields(step: str, exc: BaseException) -> dict:
    category, errno = "internal", None
    if isinstance(exc, BerthError):
        category, detail, errno = exc.category, exc.message, exc.data.get("errno")
    elif isinstance(exc, OSError):
        from berth.errors import from_oserror

        category, errno = from_oserror(exc, step).category, exc.errno
        detail = describe_oserror(exc)
    else:
        detail = repr(exc)
    return {"step": step, "category": category, "message": f"{step}: {detail}", "errno": errno}


def error_for(step: str, exc: BaseException) -> BerthError:
    """The error `send_error(step, exc)` would make the other end raise."""
    return error_from_message(_error_fields(step, exc))


def error_from_message(msg: dict) -> BerthError:
    from berth.errors import CATEGORIES

    cls = CATEGORIES.get(msg.get("category") or "internal", InternalError)
    return cls(msg.get("message") or "unknown error in container init", errno=msg.get("errno"), step=msg.get("step"))


def describe_oserror(exc: OSError) -> str:
    """'mount proc on /x: permission denied' from berth.linux, or
    '/x/y: no such file or directory' from Python's own calls."""
    text = (exc.strerror or str(exc)).lower() if exc.strerror else str(exc)
    if exc.strerror and ": " in exc.strerror:
        return exc.strerror
    if exc.filename is not None:
        return f"{exc.filename}: {text}"
    return text
