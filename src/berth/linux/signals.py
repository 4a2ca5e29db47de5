"""Signal names and numbers (<asm-generic/signal.h>, x86_64 and arm64), without
importing the `signal` module (it imports enum, a few ms on the start-up path)."""

SIGNALS = {
    "HUP": 1,
    "INT": 2,
    "QUIT": 3,
    "ILL": 4,
    "TRAP": 5,
    "ABRT": 6,
    "IOT": 6,
    "BUS": 7,
    "FPE": 8,
    "KILL": 9,
    "USR1": 10,
    "SEGV": 11,
    "USR2": 12,
    "PIPE": 13,
    "ALRM": 14,
    "TERM": 15,
    "STKFLT": 16,
    "CHLD": 17,
    "CONT": 18,
    "STOP": 19,
    "TSTP": 20,
    "TTIN": 21,
    "TTOU": 22,
    "URG": 23,
    "XCPU": 24,
    "XFSZ": 25,
    "VTALRM": 26,
    "PROF": 27,
    "WINCH": 28,
    "IO": 29,
    "POLL": 29,
    "PWR": 30,
    "SYS": 31,
}
SIGRTMIN = 34  # as glibc reports it (the kernel's 32 and 33 are taken by NPTL)
SIGRTMAX = 64


def parse_signal(value: str) -> int:
    """A signal given as a number, NAME, SIGNAME, or RTMIN+n / RTMAX-n."""
    s = value.strip()
    if s.isdigit():
        n = int(s)
        if 0 < n <= SIGRTMAX:
            return n
        raise ValueError(f"invalid signal: {value}")
    name = s.upper()
    if name.startswith("SIG"):
        name = name[3:]
    if name in SIGNALS:
        return SIGNALS[name]
    for base, sign, limit in (("RTMIN", 1, SIGRTMIN), ("RTMAX", -1, SIGRTMAX)):
        if name == base:
            return limit
        if name.startswith(base) and name[len(base) : len(base) + 1] in "+-":
            off = name[len(base) + 1 :]
            if off.isdigit():
                n = limit + sign * int(off) if name[len(base)] == ("+" if sign > 0 else "-") else -1
                if SIGRTMIN <= n <= SIGRTMAX:
                    return n
    raise ValueError(f"unknown signal {value!r}")


def signal_name(n: int) -> str:
    for name, num in SIGNALS.items():
        if num == n and name not in ("IOT", "POLL"):
            return f"SIG{name}"
    if SIGRTMIN <= n <= SIGRTMAX:
        return f"SIGRTMIN+{n - SIGRTMIN}"
    return str(n)


# what a runtime or CLI waiting for a container's process passes on to it
# (runc's signal proxy): HUP INT QUIT USR1 USR2 TERM WINCH
FORWARDED = (1, 2, 3, 10, 12, 15, 28)


def forward_to(pid: int) -> None:
    """From now on, the FORWARDED signals this process gets go to `pid`
    (a process already gone is no error)."""
    import _signal
    import posix  # not os: a plain `berth exec` does not import it

    def forward(signum: int, _frame: object) -> None:
        try:
            posix.kill(pid, signum)
        except ProcessLookupError:
            pass

    for sig in FORWARDED:
        _signal.signal(sig, forward)
