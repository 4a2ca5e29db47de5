"""The part of ctypes berth's start-up path needs, built on `_ctypes` alone.

`import ctypes` runs ctypes/__init__.py, which makes some thirty C types,
function-pointer caches and a PyDLL before any use: about 11 million
instructions, as much as a third of everything berth-runtime does to start a
container (measured with callgrind). The C extension `_ctypes` does the real
work and loads in a twentieth of that; this module defines on it only the
types and helpers berth's syscall bindings use. Objects made here are
ordinary ctypes objects (Structure, byref, sizeof are _ctypes' own).
"""

import _ctypes
from _ctypes import POINTER, Structure, byref, get_errno, sizeof  # noqa: F401

_SimpleCData = _ctypes._SimpleCData


class c_int(_SimpleCData):
    _type_ = "i"


class c_uint(_SimpleCData):
    _type_ = "I"


class c_long(_SimpleCData):
    _type_ = "l"


class c_ulong(_SimpleCData):
    _type_ = "L"


class c_ushort(_SimpleCData):
    _type_ = "H"


class c_char_p(_SimpleCData):
    _type_ = "z"


class c_void_p(_SimpleCData):
    _type_ = "P"


# LP64 Linux
c_uint32 = c_uint
c_int32 = c_int
c_uint64 = c_ulong
c_int64 = c_long
c_size_t = c_ulong

class _Function(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = c_int


class Library:
    """A loaded shared library whose functions keep errno (use_errno=True)."""

    def __init__(self, name: str | None = None) -> None:
        self._handle = _ctypes.dlopen(name, 2 | 256)  # RTLD_NOW | RTLD_GLOBAL

    def function(self, name: str, restype: type | None, argtypes: tuple) -> "_ctypes.CFuncPtr":
        f = _Function((name, self))
        f.restype = restype
        f.argtypes = argtypes
        return f


# _ctypes.CFuncPtr((name, lib)) reads lib._handle
libc = Library(None)
