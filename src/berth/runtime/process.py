"""The container process, set up by the init as the last steps before execve:
fds, rlimits, user, capabilities, no_new_privs, seccomp (last)."""

import os

from berth.errors import InvalidArgumentError, NotFoundError, PermissionDeniedError
from berth.linux import libc
from berth.oci.rlimits import RLIMIT_TYPES


def environ(proc: dict) -> dict[str, str]:
    env: dict[str, str] = {}
    for e in proc.get("env") or []:
        k, _, v = e.partition("=")
        env[k] = v
    if "HOME" not in env:
        # as runc does (setupUser): images expect HOME, and neither Docker nor
        # containerd puts it in config.json
        env["HOME"] = home_of((proc.get("user") or {}).get("uid", 0))
    return env


def home_of(uid: int, passwd: str = "/etc/passwd") -> str:
    """uid's home directory in the container's /etc/passwd (read after
    pivot_root), "/" without an entry. The file is the container's: opened
    without blocking and read only when it is a regular file, so a FIFO or a
    device there cannot hang the runtime."""
    try:
        fd = os.open(passwd, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return "/"
    try:
        import stat

        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "/"
        data = os.read(fd, 1 << 20).decode(errors="replace")
    except OSError:
        return "/"
    finally:
        os.close(fd)
    for line in data.splitlines():
        f = line.split(":")
        if len(f) >= 6 and f[2].strip() == str(uid):
            return f[5] or "/"
    return "/"


def find_executable(name: str, env: dict[str, str]) -> str:
    """args[0] resolved as execvp would, inside the container (after
    pivot_root), so a missing binary fails `create` rather than `start`."""
    if "/" in name:
        if not os.path.exists(name):
            raise NotFoundError(f'exec: "{name}": stat {name}: no such file or directory')
        if os.path.isdir(name) or not os.access(name, os.X_OK):
            raise PermissionDeniedError(f'exec: "{name}": permission denied')
        return name
    for d in (env.get("PATH") or "").split(":"):
        p = f"{d or '.'}/{name}"
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise NotFoundError(f'exec: "{name}": executable file not found in $PATH')


def set_rlimits(proc: dict) -> None:
    for rl in proc.get("rlimits") or []:
        kind = RLIMIT_TYPES[rl["type"]]
        try:
            libc.setrlimit(kind, rl["soft"], rl["hard"])
        except OSError as exc:
            raise PermissionDeniedError(
                f"setrlimit {rl['type']} soft={rl['soft']} hard={rl['hard']}: {os.strerror(exc.errno or 0).lower()}"
            ) from None


def close_fds(keep_from: int, keep: int) -> None:
    """Every fd from 3 + preserve-fds on is closed on exec (CVE-2024-21626:
    no runtime fd may reach the container); the preserved ones are inherited.
    close_range(CLOSE_RANGE_CLOEXEC) marks them all in one call and needs no
    /proc (whose listing a container could fake by mounting over it)."""
    for i in range(3, keep_from):
        try:
            os.set_inheritable(i, True)
        except OSError:
            pass
    try:
        if keep < keep_from:
            libc.close_range(keep_from, 0xFFFFFFFF, libc.CLOSE_RANGE_CLOEXEC)
        else:
            if keep > keep_from:
                libc.close_range(keep_from, keep - 1, libc.CLOSE_RANGE_CLOEXEC)
            libc.close_range(keep + 1, 0xFFFFFFFF, libc.CLOSE_RANGE_CLOEXEC)
        return
    except OSError:
        pass  # before Linux 5.11: walk /proc/self/fd
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= keep_from and fd != keep:
            try:
                os.set_inheritable(fd, False)
            except OSError:
                pass


def set_io_priority(prio: dict) -> None:
    """process.ioPriority: {"class": "IOPRIO_CLASS_BE", "priority": 4}."""
    klass = libc.IOPRIO_CLASSES.get(prio.get("class") or "")
    if klass is None:
        raise InvalidArgumentError(f"set io priority: unknown class {prio.get('class')!r}")
    level = prio.get("priority", 0)
    if not isinstance(level, int) or not 0 <= level <= 7:
        raise InvalidArgumentError(f"set io priority: priority {level!r} is not in 0..7")
    try:
        libc.ioprio_set(klass, level)
    except OSError as exc:
        raise PermissionDeniedError(f"set io priority {prio.get('class')} {level}: {os.strerror(exc.errno or 0).lower()}",
                                    errno=exc.errno) from None


def set_scheduler(sched: dict) -> None:
    """process.scheduler, with sched_setattr(2) as runc 1.2 does."""
    policy = libc.SCHED_POLICIES.get(sched.get("policy") or "")
    if policy is None:
        raise InvalidArgumentError(f"set scheduler: unknown policy {sched.get('policy')!r}")
    flags = 0
    for f in sched.get("flags") or []:
        if f not in libc.SCHED_FLAGS:
            raise InvalidArgumentError(f"set scheduler: unknown flag {f!r}")
        flags |= libc.SCHED_FLAGS[f]
    try:
        libc.sched_setattr(policy, flags, sched.get("nice", 0), sched.get("priority", 0),
                           sched.get("runtime", 0), sched.get("deadline", 0), sched.get("period", 0))
    except OSError as exc:
        raise PermissionDeniedError(f"set scheduler {sched.get('policy')}: {os.strerror(exc.errno or 0).lower()}",
                                    errno=exc.errno) from None


def switch_user(user: dict) -> None:
    uid, gid = user.get("uid", 0), user.get("gid", 0)
    groups = user.get("additionalGids") or []
    try:
        os.setgroups(groups)
    except PermissionError:
        # setgroups is denied in a user namespace with setgroups=deny
        if groups:
            raise
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def set_oom_score_adj(value: int) -> None:
    fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
    try:
        if libc.fstatfs_type(fd) != libc.PROC_SUPER_MAGIC:
            raise PermissionDeniedError("write oom_score_adj: not on a procfs: refused")
        os.write(fd, str(value).encode())
    finally:
        os.close(fd)


def check_cwd(cwd: str) -> None:
    if not cwd.startswith("/"):
        raise InvalidArgumentError(f"cwd {cwd!r} must be an absolute path")
    os.chdir(cwd)
    # CVE-2024-21626: a cwd reached through a leaked fd lies outside the root
    here = os.getcwd()
    if not here.startswith("/"):
        raise PermissionDeniedError(f"chdir to cwd ({cwd}): outside the container's root")


def refuse_runtime_executable(path: str, runtime: "os.stat_result | None" = None) -> None:
    """CVE-2019-5736: the runtime's own executable (the host's Python, reached
    as /proc/self/exe, a symlink to it, or a script's #! line) must never run
    as a container process, where the container could keep a handle to it
    and rewrite it once it exits. Checked by device and inode, one #! level
    deep (runc 1.1 runs from a sealed memfd copy instead, which costs a
    re-exec berth's start-up cannot afford). `runtime`: the executable's
    stat, taken by a caller that has since left the host's /proc."""
    try:
        me = runtime or os.stat("/proc/self/exe")
        targets = [path]
        try:
            with open(path, "rb") as f:
                head = f.read(256)
            if head.startswith(b"#!"):
                interp = head[2:].split(b"\n", 1)[0].strip().split(b" ", 1)[0]
                if interp:
                    targets.append(os.fsdecode(interp))
        except OSError:
            pass  # unreadable: execve fails for a script as well
        for t in targets:
            st = os.stat(t)
            if (st.st_dev, st.st_ino) == (me.st_dev, me.st_ino):
                raise PermissionDeniedError(
                    f"exec {path}: {t} is the runtime's own executable (CVE-2019-5736): refused")
    except FileNotFoundError:
        return
