"""Linux capabilities: the name table, capget/capset, bounding and ambient sets,
and the order they are applied in around the uid switch (``process.capabilities``).

Imported by the container's init on every start: only ``os`` and ``ctypes``
(and berth.errors) at import time.

Unknown names. runc (since 1.0) warns about and ignores every capability name
it cannot use, typo or not. berth splits the two cases:

* a name that no kernel defines (``CAP_CHOWNN``, ``chown``) is a configuration
  error: `InvalidArgumentError` naming it and the config field;
* a name from <linux/capability.h> that the running kernel does not know (its
  number is above /proc/sys/kernel/cap_last_cap) is ignored, as runc does,
  and reported through the ``ignored`` list so the caller can warn.

``parse_caps(..., strict=False)`` gives runc's behaviour for both cases.
"""

import os

from berth.errors import InvalidArgumentError, PermissionDeniedError, from_oserror
from berth.linux import ffi as ctypes

# typing is not imported at run time (start-up cost); the names are for checkers
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# <linux/capability.h>
CAPS: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
CAP_NAMES: dict[int, str] = {v: k for k, v in CAPS.items()}

# <linux/capability.h>
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# <linux/prctl.h>
PR_SET_KEEPCAPS = 8
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_IS_SET = 1
PR_CAP_AMBIENT_RAISE = 2
PR_CAP_AMBIENT_LOWER = 3
PR_CAP_AMBIENT_CLEAR_ALL = 4

# the five sets of process.capabilities, in runtime-spec's names
FIELDS = ("bounding", "effective", "permitted", "inheritable", "ambient")


class _Header(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _Data(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_DataPair = _Data * 2

# through berth.linux.ffi, not ctypes: this module is on the container
# init's start-up path (see ffi's docstring)
_capget = ctypes.libc.function("capget", ctypes.c_int, (ctypes.POINTER(_Header), ctypes.POINTER(_Data)))
_capset = ctypes.libc.function("capset", ctypes.c_int, (ctypes.POINTER(_Header), ctypes.POINTER(_Data)))
_prctl_f = ctypes.libc.function(
    "prctl", ctypes.c_int, (ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong)
)

_last_cap: int | None = None


def _oserror(op: str) -> OSError:
    e = ctypes.get_errno()
    return OSError(e, f"{op}: {os.strerror(e).lower()}")


def _prctl(option: int, arg2: int = 0, arg3: int = 0, what: str = "") -> int:
    r = _prctl_f(option, arg2, arg3, 0, 0)
    if r < 0:
        raise from_oserror(_oserror(what), what)
    return r


def last_cap() -> int:
    """The highest capability number the running kernel knows, from
    /proc/sys/kernel/cap_last_cap (read once per process)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap", "rb") as f:
                _last_cap = int(f.read())
        except OSError:
            # /proc not mounted (early in a container's init): probe the
            # bounding set instead; PR_CAPBSET_READ fails EINVAL past the end
            n = 0
            while n < 63 and _prctl_f(PR_CAPBSET_READ, n + 1, 0, 0, 0) >= 0:
                n += 1
            _last_cap = n
    return _last_cap


def all_caps() -> int:
    """The mask of every capability the running kernel knows."""
    return (1 << (last_cap() + 1)) - 1


def parse_caps(
    names: list[str] | None,
    field: str = "",
    *,
    ignored: list[str] | None = None,
    strict: bool = True,
) -> int:
    """Turn capability names (``"CAP_CHOWN"``) into a bit mask.

    A name no kernel defines raises InvalidArgumentError naming it and
    `field` (e.g. ``process.capabilities.bounding``) unless ``strict=False``;
    a name the running kernel does not know is left out of the mask and
    appended to `ignored` (runc warns about those and goes on).
    """
    mask = 0
    top = last_cap()
    for name in names or ():
        if not isinstance(name, str):
            raise InvalidArgumentError(
                f"parse {field or 'capabilities'}: capability name {name!r} is not a string",
                field=field,
            )
        bit = CAPS.get(name)
        if bit is None:
            if strict:
                where = f" in {field}" if field else ""
                raise InvalidArgumentError(
                    f"parse capabilities{where}: unknown capability {name!r}",
                    field=field,
                    capability=name,
                )
            if ignored is not None:
                ignored.append(name)
            continue
        if bit > top:
            if ignored is not None:
                ignored.append(name)
            continue
        mask |= 1 << bit
    return mask


def names(mask: int) -> list[str]:
    """The names of the bits set in `mask`, lowest first (unknown bits as
    ``CAP_<n>``)."""
    out = []
    bit = 0
    while mask >> bit:
        if mask >> bit & 1:
            out.append(CAP_NAMES.get(bit, f"CAP_{bit}"))
        bit += 1
    return out


def drop_bounding(keep: int) -> None:
    """Drop from the bounding set every capability not in `keep`
    (PR_CAPBSET_DROP needs CAP_SETPCAP, so do it before dropping that)."""
    for bit in range(last_cap() + 1):
        if keep >> bit & 1:
            continue
        if _prctl_f(PR_CAPBSET_DROP, bit, 0, 0, 0) < 0:
            err = _oserror("")
            what = f"drop {CAP_NAMES.get(bit, bit)} from the bounding set"
            raise from_oserror(err, what)


def bounding() -> int:
    """The current bounding set, read with PR_CAPBSET_READ."""
    mask = 0
    for bit in range(last_cap() + 1):
        if _prctl(PR_CAPBSET_READ, bit, what="read the bounding set"):
            mask |= 1 << bit
    return mask


def set_keepcaps(on: bool) -> None:
    """PR_SET_KEEPCAPS: keep the permitted set across a setuid away from 0."""
    _prctl(PR_SET_KEEPCAPS, 1 if on else 0, what="set keepcaps")


def capget() -> tuple[int, int, int]:
    """The calling thread's (effective, permitted, inheritable) sets."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _DataPair()
    if _capget(ctypes.byref(hdr), data) != 0:
        raise from_oserror(_oserror(""), "capget")
    lo, hi = data[0], data[1]
    return (
        lo.effective | hi.effective << 32,
        lo.permitted | hi.permitted << 32,
        lo.inheritable | hi.inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's three sets (_LINUX_CAPABILITY_VERSION_3: two
    32-bit words per set)."""
    hdr = _Header(_LINUX_CAPABILITY_VERSION_3, 0)
    data = _DataPair()
    m = 0xFFFFFFFF
    data[0].effective, data[1].effective = effective & m, effective >> 32 & m
    data[0].permitted, data[1].permitted = permitted & m, permitted >> 32 & m
    data[0].inheritable, data[1].inheritable = inheritable & m, inheritable >> 32 & m
    if _capset(ctypes.byref(hdr), data) != 0:
        err = _oserror("")
        raise from_oserror(
            err,
            "capset",
            f"effective={effective:#x} permitted={permitted:#x} inheritable={inheritable:#x}",
        )


def ambient() -> int:
    """The current ambient set, read with PR_CAP_AMBIENT_IS_SET."""
    mask = 0
    for bit in range(last_cap() + 1):
        if _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, bit, what="read the ambient set"):
            mask |= 1 << bit
    return mask


def set_ambient(mask: int, *, skipped: list[str] | None = None) -> None:
    """Make the ambient set exactly `mask`: clear it, then raise each bit.
    Raising needs the capability in both the permitted and the inheritable
    set (a kernel rule). A refused raise is a PermissionDeniedError naming
    the capability, or, when `skipped` is given, noted there and passed over
    (runc 1.1 does that: fewer privileges, never more)."""
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, what="clear the ambient set")
    for bit in range(last_cap() + 1):
        if not mask >> bit & 1:
            continue
        if _prctl_f(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, bit, 0, 0) < 0:
            err = _oserror("")
            name = CAP_NAMES.get(bit, str(bit))
            exc = from_oserror(err, f"raise ambient capability {name}")
            if isinstance(exc, PermissionDeniedError):
                why = "it must be in the permitted and inheritable sets"
                if skipped is not None:
                    skipped.append(f"{name} (ambient: {why})")
                    continue
                exc = PermissionDeniedError(
                    f"raise ambient capability {name}: operation not permitted ({why})",
                    errno=err.errno,
                    capability=name,
                )
            raise exc


def parse_config(
    caps_config: dict | None, *, ignored: list[str] | None = None, strict: bool = True
) -> dict[str, int]:
    """OCI ``process.capabilities`` -> one mask per set. A set the config
    leaves out is empty; None (no ``capabilities`` at all) means every set
    empty, as runc does."""
    if caps_config is None:
        caps_config = {}
    if not isinstance(caps_config, dict):
        raise InvalidArgumentError(
            "parse process.capabilities: expected an object", field="process.capabilities"
        )
    out = {}
    for field in FIELDS:
        value = caps_config.get(field)
        if value is not None and not isinstance(value, list):
            raise InvalidArgumentError(
                f"parse process.capabilities.{field}: expected a list of names",
                field=f"process.capabilities.{field}",
            )
        out[field] = parse_caps(
            value, f"process.capabilities.{field}", ignored=ignored, strict=strict
        )
    return out


def apply(
    caps_config: dict | None,
    switch_user: "Callable[[], object] | None" = None,
    *,
    ignored: list[str] | None = None,
    strict: bool = True,
) -> None:
    """Apply ``process.capabilities`` to the calling process, switching user
    in the middle, in the order the kernel's rules require:

    1. drop the bounding set (needs CAP_SETPCAP, which we still hold);
    2. PR_SET_KEEPCAPS 1, so setuid away from 0 keeps the permitted set;
    3. ``switch_user()`` (setgroups/setgid/setuid, supplied by the runtime);
    4. PR_SET_KEEPCAPS 0, so a later execve of a setuid program or a setuid
       inside the container behaves as usual;
    5. capset(effective, permitted, inheritable);
    6. the ambient set, cleared, then raised as configured.

    Inheritable and ambient are empty unless the config names capabilities for
    them: CVE-2022-29162 (runc < 1.1.2 gave a non-empty inheritable set, which
    let file capabilities of programs in the image raise privileges on exec).

    `ignored` collects what was passed over, for the caller to warn about:
    names the running kernel does not know, and ambient capabilities the
    kernel refused to raise because the config left them out of permitted or
    inheritable (runc 1.1 skips those too). Without `ignored` (None), such an
    ambient capability is a PermissionDeniedError instead.

    The whole config is parsed before anything changes, so a bad name leaves
    the process as it was.
    """
    apply_sets(parse_config(caps_config, ignored=ignored, strict=strict), switch_user,
               ignored=ignored)


def apply_sets(sets: dict[str, int], switch_user: "Callable[[], object] | None" = None, *,
               ignored: list[str] | None = None, bounding_dropped: bool = False) -> None:
    """`apply` for sets already parsed (parse_config), e.g. by a parent
    before it forks the process (the parse takes ~0.2 ms in a fresh fork
    here, the bounding set's ~40 prctl calls ~0.4 ms). `bounding_dropped`:
    the bounding set is `sets["bounding"]` already (a disposable parent that
    execs nothing itself may drop its own before the fork: the child
    inherits it)."""
    if not bounding_dropped:
        drop_bounding(sets["bounding"])
    set_keepcaps(True)
    if switch_user is not None:
        switch_user()
    set_keepcaps(False)
    capset(sets["effective"], sets["permitted"], sets["inheritable"])
    set_ambient(sets["ambient"], skipped=ignored)
