"""Device access rules on cgroup v2, which has no devices files: the kernel
asks an eBPF program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the
cgroup (Documentation/admin-guide/cgroup-v2.rst, "Device controller"; the
context is struct bpf_cgroup_dev_ctx; runc's devicefilter does the same).

Semantics are those of the v1 devices controller fed the same rules in
order: the last rule that covers a (device, access bit) decides; a
(device, bit) no rule covers is allowed, as in a new v1 cgroup under an
allow-all parent (OCI configs start with a deny-all rule). The program is
compiled per access bit, so two allow rules for ``r`` and ``w`` together
allow ``rw``, as on v1.

The bpf(2) binding lives here for now (ctypes, use_errno); it belongs in
`berth.linux` with the other syscalls.
"""

from __future__ import annotations

import ctypes
import os

from berth.cgroups import fs
from berth.cgroups.convert import device_rule
from berth.errors import BerthError, UnavailableError, from_oserror

# <uapi/linux/bpf.h>
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2

_NR_BPF = {"x86_64": 321, "aarch64": 280}

_ACCESS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
_TYPE = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}

# eBPF opcodes (<uapi/linux/bpf_common.h>, <uapi/linux/bpf.h>)
_LDX_W = 0x61  # dst = *(u32 *)(src + off)
_AND32_K = 0x54
_RSH32_K = 0x74
_MOV32_X = 0xBC
_MOV64_K = 0xB7
_JNE_K = 0x55
_JEQ_K = 0x15
_JA = 0x05
_EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return (
        bytes((code, (src << 4) | dst))
        + off.to_bytes(2, "little", signed=True)
        + imm.to_bytes(4, "little", signed=True)
    )


def compile_rules(rules: list) -> bytes:
    """The eBPF program (instructions, 8 bytes each) for OCI device rules."""
    parsed = []
    for r in rules:
        allow, _ = device_rule(r)  # validates
        kind = r.get("type") or "a"
        major = r.get("major")
        minor = r.get("minor")
        access = 0
        for ch in r.get("access") or "rwm":
            access |= _ACCESS[ch]
        parsed.append(
            (
                allow,
                _TYPE.get(kind),
                None if kind == "a" or major in (None, -1) else major,
                None if kind == "a" or minor in (None, -1) else minor,
                access,
            )
        )
    # code as (opcode, dst, src, label-or-offset, imm); labels resolved after
    prog: list[list] = []
    labels: dict[str, int] = {}

    def emit(code: int, dst: int = 0, src: int = 0, off: object = 0, imm: int = 0) -> None:
        prog.append([code, dst, src, off, imm])

    # r2 = device type, r3 = requested access bits, r4 = major, r5 = minor
    emit(_LDX_W, 2, 1, 0)
    emit(_AND32_K, 2, imm=0xFFFF)
    emit(_LDX_W, 3, 1, 0)
    emit(_RSH32_K, 3, imm=16)
    emit(_LDX_W, 4, 1, 4)
    emit(_LDX_W, 5, 1, 8)
    for bit in (BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE):
        done = f"bit{bit}"
        # r0 = r3 & bit; skip this bit unless requested
        emit(_MOV32_X, 0, 3)
        emit(_AND32_K, 0, imm=bit)
        emit(_JEQ_K, 0, off=done, imm=0)
        for i, (allow, kind, major, minor, access) in reversed(list(enumerate(parsed))):
            if not access & bit:
                continue
            nxt = f"r{bit}_{i}"
            if kind is not None:
                emit(_JNE_K, 2, off=nxt, imm=kind)
            if major is not None:
                emit(_JNE_K, 4, off=nxt, imm=major)
            if minor is not None:
                emit(_JNE_K, 5, off=nxt, imm=minor)
            if allow:
                emit(_JA, off=done)
            else:
                emit(_MOV64_K, 0, imm=0)
                emit(_EXIT)
            labels[nxt] = len(prog)
        # no rule covers this bit: allowed (see module docstring)
        labels[done] = len(prog)
    emit(_MOV64_K, 0, imm=1)
    emit(_EXIT)
    out = []
    for pc, (code, dst, src, off, imm) in enumerate(prog):
        if isinstance(off, str):
            off = labels[off] - (pc + 1)
        out.append(_insn(code, dst, src, off, imm))
    return b"".join(out)


class _LoadAttr(ctypes.Structure):
    _fields_ = (
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
    )


class _AttachAttr(ctypes.Structure):
    _fields_ = (
        ("target_fd", ctypes.c_uint32),
        ("attach_bpf_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("replace_bpf_fd", ctypes.c_uint32),
    )


class _QueryAttr(ctypes.Structure):
    _fields_ = (
        ("target_fd", ctypes.c_uint32),
        ("attach_type", ctypes.c_uint32),
        ("query_flags", ctypes.c_uint32),
        ("attach_flags", ctypes.c_uint32),
        ("prog_ids", ctypes.c_uint64),
        ("prog_cnt", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    )


class _GetFdAttr(ctypes.Structure):
    _fields_ = (
        ("prog_id", ctypes.c_uint32),
        ("next_id", ctypes.c_uint32),
        ("open_flags", ctypes.c_uint32),
    )


_libc = None


def _bpf(cmd: int, attr: ctypes.Structure, what: str) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        _libc.syscall.restype = ctypes.c_long
    nr = _NR_BPF.get(os.uname().machine)
    if nr is None:
        raise UnavailableError(f"{what}: bpf(2) number unknown for {os.uname().machine}")
    r = _libc.syscall(nr, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if r < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e).lower()}")
    return r


def load_program(insns: bytes) -> int:
    """BPF_PROG_LOAD a device program; returns its fd."""
    buf = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = _LoadAttr(
        prog_type=BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt=len(insns) // 8,
        insns=ctypes.addressof(buf),
        license=ctypes.addressof(lic),
        prog_name=b"berth_devices",
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr, "load device filter")
    except OSError:
        # load again with the verifier's log, for the error message
        attr.log_level, attr.log_size, attr.log_buf = 1, len(log), ctypes.addressof(log)
        try:
            return _bpf(BPF_PROG_LOAD, attr, "load device filter")
        except OSError as exc:
            verifier = log.value.decode(errors="replace").strip().splitlines()[-3:]
            raise from_oserror(
                exc, "load eBPF device filter" + (f" ({'; '.join(verifier)})" if verifier else "")
            ) from exc


def attached_programs(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to the cgroup itself."""
    ids = (ctypes.c_uint32 * 64)()
    attr = _QueryAttr(
        target_fd=cgroup_fd,
        attach_type=BPF_CGROUP_DEVICE,
        prog_ids=ctypes.addressof(ids),
        prog_cnt=64,
    )
    _bpf(BPF_PROG_QUERY, attr, "query device filters")
    return list(ids[: attr.prog_cnt])


def set_devices_v2(d: str, rules: list, w: fs.Writer | None = None) -> None:
    """Replace the cgroup's device filter by one made from OCI `rules`:
    attach the new program first, then detach the old ones, so there is no
    moment without a filter. Either fully done or not done at all."""
    if not rules:
        return
    insns = compile_rules(rules)
    try:
        cg = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise from_oserror(exc, "open cgroup", d) from exc
    prog = -1
    try:
        try:
            old = attached_programs(cg)
            prog = load_program(insns)
            _bpf(
                BPF_PROG_ATTACH,
                _AttachAttr(
                    target_fd=cg,
                    attach_bpf_fd=prog,
                    attach_type=BPF_CGROUP_DEVICE,
                    attach_flags=BPF_F_ALLOW_MULTI,
                ),
                "attach device filter",
            )
        except OSError as exc:
            raise from_oserror(exc, "set device rules on cgroup", d) from exc
        for pid in old:
            try:
                ofd = _bpf(BPF_PROG_GET_FD_BY_ID, _GetFdAttr(prog_id=pid), "get device filter")
                try:
                    _bpf(
                        BPF_PROG_DETACH,
                        _AttachAttr(target_fd=cg, attach_bpf_fd=ofd, attach_type=BPF_CGROUP_DEVICE),
                        "detach device filter",
                    )
                finally:
                    os.close(ofd)
            except OSError as exc:
                err: BerthError = from_oserror(exc, f"replace device filter {pid} on cgroup", d)
                try:
                    _bpf(
                        BPF_PROG_DETACH,
                        _AttachAttr(
                            target_fd=cg, attach_bpf_fd=prog, attach_type=BPF_CGROUP_DEVICE
                        ),
                        "detach device filter",
                    )
                except OSError as exc2:
                    err.add_note(f"and the new filter stays attached: {exc2}")
                raise err from exc
    finally:
        if prog >= 0:
            os.close(prog)
        os.close(cg)
