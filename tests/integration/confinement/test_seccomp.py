"""Filters loaded for real, each in a forked child that reports through a pipe."""

import ctypes
import errno
import fcntl
import os
import signal
import struct
import threading

import pytest

from berth.errors import PermissionDeniedError
from berth.linux import capabilities, seccomp
from berth.runtime.confinement import DEFAULT_CAPABILITIES, default_seccomp_profile
from tests.integration.confinement.child import in_child, proc_status

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.mount.argtypes = (ctypes.c_char_p,) * 3 + (ctypes.c_ulong, ctypes.c_char_p)

CLONE_NEWUTS = 0x04000000
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17
AF_UNIX, AF_ALG, AF_VSOCK = 1, 38, 40
SOCK_STREAM, SOCK_SEQPACKET = 1, 5
PR_SET_NO_NEW_PRIVS = 38


@pytest.fixture(autouse=True)
def _root(privileged):
    pass


def nr(name: str) -> int:
    n = seccomp.resolve_syscall(name)
    assert n is not None and n >= 0, name
    return n


def sys_call(name: str, *args: int) -> tuple[int, int]:
    """(return value, errno) of a raw syscall."""
    ctypes.set_errno(0)
    r = libc.syscall(nr(name), *(ctypes.c_ulong(a) for a in args))
    return r, ctypes.get_errno() if r < 0 else 0


def sys_call_nr(n: int) -> int:
    ctypes.set_errno(0)
    return ctypes.get_errno() if libc.syscall(n, 0, 0, 0, 0) < 0 else 0


# syscalls past libseccomp 2.5.4's table that this kernel has (x86_64 numbers):
# statmount, listmount
NEWER = [n for n in (457, 458) if os.uname().machine == "x86_64" and sys_call_nr(n) != errno.ENOSYS]


def rule(names, action="SCMP_ACT_ALLOW", **kw):
    return {"names": names, "action": action, **kw}


def test_default_profile_blocks_and_allows(workdir):
    flt = seccomp.compile(default_seccomp_profile(DEFAULT_CAPABILITIES))
    target = os.path.join(workdir, "m")
    os.mkdir(target)

    def child():
        flt.load()
        out = {"getpid": sys_call("getpid")[0] == os.getpid()}
        fd = os.open("/dev/null", os.O_RDONLY)
        os.close(fd)
        out["open"] = True
        out["keyctl"] = sys_call("keyctl", 0, 0)[1]  # KEYCTL_GET_KEYRING_ID
        out["add_key"] = sys_call("add_key", 0, 0, 0, 0, 0)[1]
        out["unshare_user"] = sys_call("unshare", CLONE_NEWUSER)[1]
        ctypes.set_errno(0)
        r = libc.mount(b"none", target.encode(), b"tmpfs", 0, None)
        out["mount"] = ctypes.get_errno() if r < 0 else 0
        out["clone3"] = sys_call("clone3", 0, 0)[1]
        # syscalls newer than every one the profile names: ENOSYS, so libc
        # falls back (statmount, 457 on x86_64, is in this kernel but not the
        # profile; without the filter it answers EFAULT/EINVAL)
        out["newer"] = [sys_call_nr(n) for n in NEWER]
        out["vsock"] = sys_call("socket", AF_VSOCK, SOCK_STREAM, 0)[1]
        out["alg"] = sys_call("socket", AF_ALG, SOCK_SEQPACKET, 0)[1]
        # an int argument: high bits must not smuggle the family past the filter
        out["vsock_high"] = sys_call("socket", (1 << 32) | AF_VSOCK, SOCK_STREAM, 0)[1]
        s, e = sys_call("socket", AF_UNIX, SOCK_STREAM, 0)
        out["unix"] = e
        if s >= 0:
            os.close(s)
        # fork (clone without namespace flags) works; the child exits at once
        pid = os.fork()
        if pid == 0:
            os._exit(7)
        out["fork"] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        # clone with a namespace flag does not
        out["clone_newuts"] = sys_call("clone", CLONE_NEWUTS | SIGCHLD, 0, 0, 0, 0)[1]
        st = proc_status()
        out["seccomp"] = st["Seccomp"]
        out["caps"] = st["CapEff"]  # still root with all our capabilities: the filter alone says no
        return out

    if os.uname().machine == "x86_64":
        assert NEWER, "this kernel has neither statmount nor listmount"
    res = in_child(child).get()
    assert res["getpid"] and res["open"]
    for name in ("keyctl", "add_key", "unshare_user", "mount", "vsock", "alg", "vsock_high"):
        assert res[name] == errno.EPERM, (name, res)
    assert res["clone3"] == errno.ENOSYS
    assert res["newer"] == [errno.ENOSYS] * len(NEWER)
    assert res["unix"] == 0
    assert res["fork"] == 7
    assert res["clone_newuts"] == errno.EPERM
    assert res["seccomp"] == "2"
    assert int(res["caps"], 16) == int(proc_status()["CapEff"], 16)
    assert os.listdir(target) == []


def test_default_profile_with_sys_admin_allows_namespaces():
    flt = seccomp.compile(default_seccomp_profile([*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"]))

    def child():
        flt.load()
        return {
            "unshare": sys_call("unshare", CLONE_NEWUTS)[1],
            "keyctl": sys_call("keyctl", 0, 0)[1],
        }

    res = in_child(child).get()
    assert res == {"unshare": 0, "keyctl": errno.EPERM}


def test_full_confinement_sequence_as_non_root():
    # what the runtime's init does before execve: capabilities around the uid
    # switch, no_new_privs, then the filter (loaded without CAP_SYS_ADMIN)
    flt = seccomp.compile(default_seccomp_profile(DEFAULT_CAPABILITIES))
    caps_cfg = {k: DEFAULT_CAPABILITIES for k in ("bounding", "effective", "permitted")}

    def switch():
        os.setgroups([])
        os.setgid(1000)
        os.setuid(1000)

    def child():
        capabilities.apply(caps_cfg, switch)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        flt.load()
        st = proc_status()
        return {
            "keyctl": sys_call("keyctl", 0, 0)[1],
            "getpid": sys_call("getpid")[0] == os.getpid(),
            **{k: st[k] for k in ("CapInh", "CapAmb", "CapBnd", "NoNewPrivs", "Seccomp", "Uid")},
        }

    res = in_child(child).get()
    assert res["keyctl"] == errno.EPERM and res["getpid"]
    assert int(res["CapInh"], 16) == int(res["CapAmb"], 16) == 0
    assert int(res["CapBnd"], 16) == capabilities.parse_caps(DEFAULT_CAPABILITIES)
    assert res["NoNewPrivs"] == "1" and res["Seccomp"] == "2"
    assert res["Uid"].split() == ["1000"] * 4


def test_errno_ret_and_default_errno_ret():
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                rule(["getppid"], "SCMP_ACT_ERRNO", errnoRet=errno.EXDEV),
                rule(["getpgrp"], "SCMP_ACT_ERRNO"),
            ],
        }
    )
    flt2 = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": errno.ENOTSUP,
            "syscalls": [
                rule(
                    [
                        "getpid",
                        "exit_group",
                        "exit",
                        "write",
                        "close",
                        "rt_sigprocmask",
                        "rt_sigaction",
                        "munmap",
                        "brk",
                        "mmap",
                        "futex",
                        "madvise",
                    ]
                )
            ],
        }
    )

    def child():
        flt.load()
        return {"getppid": sys_call("getppid")[1], "getpgrp": sys_call("getpgrp")[1]}

    assert in_child(child).get() == {"getppid": errno.EXDEV, "getpgrp": errno.EPERM}

    # a default-deny filter: the child reports through the pipe with write(2)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            flt2.load()
            e = sys_call("getppid")[1]
            os.write(w, bytes([e]))
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert got == bytes([errno.ENOTSUP])


@pytest.mark.parametrize(
    "action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"]
)
def test_kill_actions_end_the_child_with_sigsys(action):
    flt = seccomp.compile(
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(["getppid"], action)]}
    )

    def child():
        flt.load()
        sys_call("getppid")
        return "survived"

    res = in_child(child)
    assert res.signal == signal.SIGSYS
    assert res.value is None


def test_kill_process_takes_every_thread():
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [rule(["getppid"], "SCMP_ACT_KILL_PROCESS")],
        }
    )

    def child():
        flt.load()
        t = threading.Thread(target=lambda: sys_call("getppid"))
        t.start()
        t.join()
        return "survived"

    assert in_child(child).signal == signal.SIGSYS


def test_trap_raises_sigsys_in_the_process():
    flt = seccomp.compile(
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(["getppid"], "SCMP_ACT_TRAP")]}
    )

    def child():
        got = []
        signal.signal(signal.SIGSYS, lambda s, f: got.append(s))
        flt.load()
        return {"signals": got, "ret": sys_call("getppid")[0]}

    res = in_child(child).get()
    assert res["signals"] == [signal.SIGSYS]
    assert res["ret"] != os.getpid()  # not run: the child's parent is this process


def test_trace_without_tracer_is_enosys_and_log_allows():
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [rule(["getppid"], "SCMP_ACT_TRACE"), rule(["getpgrp"], "SCMP_ACT_LOG")],
        }
    )

    def child():
        flt.load()
        return {"trace": sys_call("getppid")[1], "log": sys_call("getpgrp")}

    res = in_child(child).get()
    assert res["trace"] == errno.ENOSYS
    assert res["log"] == [os.getpgrp(), 0]


def test_argument_comparisons():
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [
                # one index tested twice: ORed (runc's reading), so 8 or 0x20000
                rule(
                    ["personality"],
                    "SCMP_ACT_ERRNO",
                    errnoRet=errno.EACCES,
                    args=[
                        {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                        {"index": 0, "value": 0x20000, "op": "SCMP_CMP_EQ"},
                    ],
                ),
                # getpriority(which=PRIO_PROCESS, who=0): ANDed across indexes
                rule(
                    ["getpriority"],
                    "SCMP_ACT_ERRNO",
                    errnoRet=errno.EDOM,
                    args=[
                        {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"},
                        {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"},
                    ],
                ),
                # kill with a signal number whose bit 0x8 is set
                rule(
                    ["kill"],
                    "SCMP_ACT_ERRNO",
                    errnoRet=errno.ERANGE,
                    args=[{"index": 1, "value": 0x8, "valueTwo": 0x8, "op": "SCMP_CMP_MASKED_EQ"}],
                ),
            ],
        }
    )

    def child():
        flt.load()
        me = os.getpid()
        return {
            "query": sys_call("personality", 0xFFFFFFFF)[1],
            "linux": sys_call("personality", 0)[1],
            "linux32": sys_call("personality", 8)[1],
            "uname26": sys_call("personality", 0x20000)[1],
            "prio_both": sys_call("getpriority", 0, 0)[1],
            "prio_one": sys_call("getpriority", 0, me)[1],
            "kill_8": sys_call("kill", me, 8)[1],  # SIGFPE: stopped by the filter
            "kill_0": sys_call("kill", me, 0)[1],  # a probe: allowed
        }

    res = in_child(child).get()
    assert res == {
        "query": 0, "linux": 0, "linux32": errno.EACCES, "uname26": errno.EACCES, "prio_both": errno.EDOM,
        "prio_one": 0, "kill_8": errno.ERANGE, "kill_0": 0,
    }  # fmt: skip


def test_tsync_applies_to_every_thread():
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls": [rule(["getppid"], "SCMP_ACT_ERRNO", errnoRet=errno.EXDEV)],
        }
    )

    def child():
        go, done = threading.Event(), threading.Event()
        seen = {}

        def worker():
            go.wait()
            seen["thread"] = sys_call("getppid")[1]
            done.set()

        t = threading.Thread(target=worker)
        t.start()
        flt.load()  # loaded by the main thread only
        modes = {}
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/status") as f:
                modes[tid] = next(line.split()[1] for line in f if line.startswith("Seccomp:"))
        go.set()
        done.wait()
        t.join()
        return {"thread": seen["thread"], "modes": sorted(modes.values())}

    res = in_child(child).get()
    assert res == {"thread": errno.EXDEV, "modes": ["2", "2"]}


def test_notify_returns_a_listener_that_answers():
    flt = seccomp.compile(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
            "syscalls": [rule(["getppid"], "SCMP_ACT_NOTIFY")],
        }
    )
    # <linux/seccomp.h>: struct seccomp_notif is 80 bytes, seccomp_notif_resp 24
    notif_recv = 0xC0502100  # SECCOMP_IOWR(0, struct seccomp_notif)
    notif_send = 0xC0182101  # SECCOMP_IOWR(1, struct seccomp_notif_resp)

    def child():
        fd = flt.load()
        out = {"fd": fd, "link": os.readlink(f"/proc/self/fd/{fd}")}
        out["cloexec"] = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            # the grandchild's getppid is handed to the listener
            ret, e = sys_call("getppid")
            os.write(w, struct.pack("<qq", ret, e))
            os._exit(0)
        buf = bytearray(80)
        fcntl.ioctl(fd, notif_recv, buf)
        nid, npid, _flags, snr = struct.unpack_from("<QIIi", buf)
        out["notif"] = {"pid": npid == pid, "nr": snr}
        resp = bytearray(struct.pack("<Qqiu".replace("u", "I"), nid, 4242, 0, 0))
        fcntl.ioctl(fd, notif_send, resp)
        out["answer"] = list(struct.unpack("<qq", os.read(r, 16)))
        os.waitpid(pid, 0)
        os.close(fd)
        return out

    res = in_child(child).get()
    assert res["fd"] > 2
    assert res["link"] == "anon_inode:seccomp notify"
    assert res["cloexec"]
    assert res["notif"] == {"pid": True, "nr": nr("getppid")}
    assert res["answer"] == [4242, 0]


def test_no_listener_without_notify_and_load_helper():
    cfg = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(["getppid"], "SCMP_ACT_ERRNO")]}

    def child():
        return {
            "fd": seccomp.load(cfg),
            "e": sys_call("getppid")[1],
            "st": proc_status()["Seccomp_filters"],
        }

    assert in_child(child).get() == {"fd": None, "e": errno.EPERM, "st": "1"}


def test_load_without_nnp_or_cap_sys_admin_is_a_clear_error():
    cfg = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(["getppid"], "SCMP_ACT_ERRNO")]}
    flt = seccomp.compile(cfg)

    def child():
        capabilities.apply(None, None)  # no capabilities at all
        out = {}
        try:
            flt.load()
            out["load"] = "loaded"
        except PermissionDeniedError as e:
            out["load"] = str(e)
        try:
            seccomp.load(cfg, caps=0)
            out["early"] = "loaded"
        except PermissionDeniedError as e:
            out["early"] = str(e)
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        flt.load()
        out["after_nnp"] = sys_call("getppid")[1]
        return out

    res = in_child(child).get()
    assert res["load"] == (
        "load seccomp filter: permission denied "
        "(no_new_privs is not set and CAP_SYS_ADMIN is missing)"
    )
    assert "no_new_privs is not set" in res["early"]
    assert res["after_nnp"] == errno.EPERM


def test_filters_stack_and_exec_keeps_them():
    flt = seccomp.compile(
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule(["keyctl"], "SCMP_ACT_ERRNO")]}
    )

    def child():
        flt.load()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.execv("/bin/grep", ["grep", "^Seccomp", "/proc/self/status"])
        os.close(w)
        out = os.read(r, 4096).decode()
        os.waitpid(pid, 0)
        return out

    out = in_child(child).get()
    assert "Seccomp:\t2" in out
    assert "Seccomp_filters:\t1" in out
