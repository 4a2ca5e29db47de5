"""A classic-BPF interpreter for seccomp programs, so unit tests can ask an
exported filter what it would answer for (arch, syscall, args) without
loading it (no root, no kernel state)."""

import struct

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
AUDIT_ARCH_AARCH64 = 0xC00000B7
X32_SYSCALL_BIT = 0x40000000

# <linux/seccomp.h>
SECCOMP_RET_ACTION_FULL = 0xFFFF0000
SECCOMP_RET_DATA = 0x0000FFFF


def seccomp_data(nr: int, arch: int, args: tuple[int, ...] = (), ip: int = 0) -> bytes:
    full = [*args, *([0] * (6 - len(args)))]
    return struct.pack("<iIQ6Q", nr, arch, ip, *(a & (2**64 - 1) for a in full))


def run(bpf: bytes, data: bytes) -> int:
    prog = [struct.unpack_from("<HBBI", bpf, i) for i in range(0, len(bpf), 8)]
    a = x = 0
    mem = [0] * 16
    pc = 0
    m32 = 0xFFFFFFFF
    while True:
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls == 0x00:  # BPF_LD
            mode = code & 0xE0
            if mode == 0x20:  # BPF_ABS, always BPF_W in seccomp
                a = struct.unpack_from("<I", data, k)[0]
            elif mode == 0x00:
                a = k
            elif mode == 0x60:
                a = mem[k]
            elif mode == 0x80:
                a = len(data)
            else:
                raise ValueError(f"unsupported ld {code:#x}")
        elif cls == 0x01:  # BPF_LDX
            mode = code & 0xE0
            if mode == 0x00:
                x = k
            elif mode == 0x60:
                x = mem[k]
            elif mode == 0x80:
                x = len(data)
            else:
                raise ValueError(f"unsupported ldx {code:#x}")
        elif cls == 0x02:  # BPF_ST
            mem[k] = a
        elif cls == 0x03:  # BPF_STX
            mem[k] = x
        elif cls == 0x04:  # BPF_ALU
            op = code & 0xF0
            src = x if code & 0x08 else k
            if op == 0x00:
                a = (a + src) & m32
            elif op == 0x10:
                a = (a - src) & m32
            elif op == 0x20:
                a = (a * src) & m32
            elif op == 0x30:
                a = a // src
            elif op == 0x40:
                a |= src
            elif op == 0x50:
                a &= src
            elif op == 0x60:
                a = (a << src) & m32
            elif op == 0x70:
                a >>= src
            elif op == 0x80:
                a = (-a) & m32
            elif op == 0x90:
                a %= src
            elif op == 0xA0:
                a ^= src
            else:
                raise ValueError(f"unsupported alu {code:#x}")
        elif cls == 0x05:  # BPF_JMP
            op = code & 0xF0
            src = x if code & 0x08 else k
            if op == 0x00:
                pc += k
                continue
            if op == 0x10:
                cond = a == src
            elif op == 0x20:
                cond = a > src
            elif op == 0x30:
                cond = a >= src
            elif op == 0x40:
                cond = bool(a & src)
            else:
                raise ValueError(f"unsupported jmp {code:#x}")
            pc += jt if cond else jf
        elif cls == 0x06:  # BPF_RET
            return a if code & 0x10 else k
        elif cls == 0x07:  # BPF_MISC
            if code & 0xF8 == 0x00:
                x = a
            else:
                a = x
        if pc >= len(prog):
            raise ValueError("fell off the end of the program")
