"""Pure pieces of the runtime: signal names, JSON without re, mount options."""

import json

import pytest

from berth import jsonio
from berth.linux import libc
from berth.linux.signals import parse_signal, signal_name
from berth.runtime.rootfs import MountSpec


@pytest.mark.parametrize(("text", "number"), [
    ("9", 9), ("KILL", 9), ("SIGKILL", 9), ("sigterm", 15), ("TERM", 15), ("HUP", 1),
    ("RTMIN", 34), ("RTMIN+3", 37), ("RTMAX", 64), ("RTMAX-2", 62), ("SIGWINCH", 28),
])
def test_parse_signal(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("bad", ["", "0", "65", "NOPE", "SIGNOPE", "RTMIN+40", "RTMAX+1", "-9"])
def test_parse_signal_rejects(bad):
    with pytest.raises(ValueError):
        parse_signal(bad)


def test_signal_name():
    assert signal_name(15) == "SIGTERM"
    assert signal_name(35) == "SIGRTMIN+1"


@pytest.mark.parametrize("doc", [
    {}, [], {"a": [1, 2.5, -3, "é\n\u2028", None, True, False, {}]}, "x", 0, 1e100,
    {"nested": {"deep": [[[]]], "unicode": "\U0001f600"}},
])
def test_json_round_trip_agrees_with_json_module(doc):
    text = jsonio.dumps(doc)
    assert json.loads(text) == doc
    assert jsonio.loads(text) == doc
    assert jsonio.loads(json.dumps(doc, indent=2)) == doc
    assert json.loads(jsonio.dumps(doc, indent=2)) == doc


@pytest.mark.parametrize("bad", ["", "{", "[1,]", '{"a":1} x', "NaN", "Infinity", "{'a': 1}", '"\x01"'])
def test_json_rejects(bad):
    with pytest.raises(jsonio.JSONError):
        jsonio.loads(bad)


def test_json_rejects_non_string_keys_and_nan():
    with pytest.raises(TypeError):
        jsonio.dumps({1: 2})
    with pytest.raises(ValueError):
        jsonio.dumps(float("nan"))


def test_mount_options():
    m = MountSpec({"destination": "/x", "type": "tmpfs", "source": "tmpfs",
                   "options": ["nosuid", "nodev", "ro", "rw", "size=1m", "mode=700", "rprivate", "noatime"]})
    assert m.flags == libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOATIME
    assert m.data == "size=1m,mode=700"
    assert m.propagation == [libc.MS_PRIVATE | libc.MS_REC]
    b = MountSpec({"destination": "/y", "type": "none", "source": "/s", "options": ["rbind", "ro"]})
    assert b.is_bind and b.flags == libc.MS_BIND | libc.MS_REC | libc.MS_RDONLY
    assert MountSpec({"destination": "/z", "type": "bind", "source": "/s"}).is_bind


def test_recursive_mount_attributes():
    m = MountSpec({"destination": "/x", "type": "bind", "source": "/s",
                   "options": ["rbind", "rro", "rnosuid", "rexec", "rnoatime"]})
    assert m.flags == libc.MS_BIND | libc.MS_REC  # none of them is a mount(2) flag
    assert m.attr_set == libc.MOUNT_ATTR_RDONLY | libc.MOUNT_ATTR_NOSUID | libc.MOUNT_ATTR_NOATIME
    # an access-time mode is set with the whole atime field cleared
    assert m.attr_clr == libc.MOUNT_ATTR_NOEXEC | libc.MOUNT_ATTR__ATIME
    # the last word wins, as for the plain flags
    r = MountSpec({"destination": "/x", "type": "bind", "source": "/s", "options": ["rro", "rrw"]})
    assert (r.attr_set, r.attr_clr) == (0, libc.MOUNT_ATTR_RDONLY)
    rel = MountSpec({"destination": "/x", "type": "bind", "source": "/s", "options": ["rrelatime"]})
    assert (rel.attr_set, rel.attr_clr) == (0, libc.MOUNT_ATTR__ATIME)


def test_id_mapped_mount_options():
    maps = [{"containerID": 0, "hostID": 1000, "size": 1}]
    implied = MountSpec({"destination": "/x", "type": "bind", "source": "/s", "uidMappings": maps, "gidMappings": maps})
    assert implied.idmap == "idmap"
    rec = MountSpec({"destination": "/x", "type": "bind", "source": "/s", "options": ["rbind", "ridmap"],
                     "uidMappings": maps, "gidMappings": maps})
    assert rec.idmap == "ridmap" and "ridmap" not in rec.data
    assert MountSpec({"destination": "/x", "type": "bind", "source": "/s"}).idmap == ""
