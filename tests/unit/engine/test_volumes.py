"""The local volume driver's options: moby's checks and mount-option parsing."""

import json

import pytest

from berth.engine.volumes import (
    _mount_options,
    _resolve_addr,
    _validate_options,
    parse_mount_options,
)
from berth.errors import InvalidArgumentError
from berth.linux import libc


@pytest.mark.parametrize("options, flags, data", [
    ("", 0, ""),
    ("bind", libc.MS_BIND, ""),
    ("rbind,ro", libc.MS_BIND | libc.MS_REC | libc.MS_RDONLY, ""),
    ("size=100m,uid=1000", 0, "size=100m,uid=1000"),
    ("nosuid,nodev,noexec,size=1m,mode=700",
     libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC, "size=1m,mode=700"),
    ("noatime,atime", 0, ""),  # a later word clears what an earlier one set
    ("ro,rw", 0, ""),
    ("relatime,nodiratime,sync,dirsync",
     libc.MS_RELATIME | libc.MS_NODIRATIME | libc.MS_SYNCHRONOUS | libc.MS_DIRSYNC, ""),
    ("bind,rprivate", libc.MS_BIND | libc.MS_PRIVATE | libc.MS_REC, ""),
    ("defaults,,addr=10.0.0.1,vers=4", 0, "addr=10.0.0.1,vers=4"),
    # flags to mount(8) and runc, which moby would leave to the filesystem
    # (and tmpfs would refuse as data)
    ("acl,lazytime", libc.MS_POSIXACL | libc.MS_LAZYTIME, ""),
])
def test_parse_mount_options(options, flags, data):
    assert parse_mount_options(options) == (flags, data)


@pytest.mark.parametrize("opts, message", [
    ({"bogus": "1"}, 'create v: invalid option: "bogus"'),
    ({"type": "tmpfs"}, 'create v: missing required option: "device"'),
    ({"device": "/x"}, 'create v: missing required option: "type"'),
    ({"o": "bind"}, 'create v: missing required option: "device"'),
    ({"o": "bind", "device": "/x"}, 'create v: missing required option: "type"'),
    ({"size": "10m"}, "create v: quota size requested but no quota support"),
    ({"size": "ten"}, "create v: invalid size: 'ten'"),
    ({"type": "cifs", "device": "//host:4455/share"},
     "create v: port not allowed in CIFS device URL, include 'port' in 'o='"),
])
def test_bad_options(opts, message):
    with pytest.raises(InvalidArgumentError) as e:
        _validate_options("v", opts)
    assert e.value.message == message


@pytest.mark.parametrize("opts", [
    {"type": "tmpfs", "device": "tmpfs"},
    {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"},
    {"type": "cifs", "device": "//host/share", "o": "port=4455"},
    {"size": "0"},
])
def test_good_options(opts):
    _validate_options("v", opts)


def test_mount_options_of_a_row():
    assert _mount_options({"options": "{}"}) is None
    assert _mount_options({"options": '{"size": "0"}'}) is None  # nothing to mount
    opts = {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert _mount_options({"options": json.dumps(opts)}) == opts


def test_mountinfo_paths_unescaped():
    from berth.fsutil import _unescape

    assert _unescape(b"/var/lib/berth/volumes/v/_data") == "/var/lib/berth/volumes/v/_data"
    assert _unescape(b"/a\\040b\\011c\\134d") == "/a b\tc\\d"


def test_nfs_addr_resolved():
    assert _resolve_addr("addr=10.1.2.3,vers=4") == "addr=10.1.2.3,vers=4"
    assert _resolve_addr("vers=4") == "vers=4"
    assert _resolve_addr("addr=localhost,vers=4") in ("addr=127.0.0.1,vers=4",
                                                       "addr=::1,vers=4")
