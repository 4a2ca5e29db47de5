"""--mount's volume-* fields (the Docker CLI's opts/mount.go) and -v's nocopy,
parsed into HostConfig.Mounts' VolumeOptions."""

import pytest

from berth.engine import options as o
from berth.errors import InvalidArgumentError


def test_volume_opts_driver_labels():
    m = o.parse_mount("type=volume,source=v,target=/x,volume-driver=local,"
                      "volume-opt=type=tmpfs,volume-opt=device=tmpfs,volume-opt=o=size=10m,"
                      "volume-label=a=1,volume-label=b")
    assert m.docker() == {"Type": "volume", "Source": "v", "Target": "/x", "VolumeOptions": {
        "DriverConfig": {"Name": "local",
                         "Options": {"type": "tmpfs", "device": "tmpfs", "o": "size=10m"}},
        "Labels": {"a": "1", "b": ""}}}


def test_a_quoted_field_keeps_its_commas():
    m = o.parse_mount('type=volume,target=/x,"volume-opt=o=size=3m,uid=1000"')
    assert m.volume_options == {"DriverConfig": {"Options": {"o": "size=3m,uid=1000"}}}
    assert m.source == ""  # anonymous: the engine names it


@pytest.mark.parametrize("field, nocopy", [
    ("volume-nocopy", True), ("volume-nocopy=true", True), ("volume-nocopy=1", True),
    ("volume-nocopy=false", False), ("volume-nocopy=0", False),
])
def test_volume_nocopy(field, nocopy):
    m = o.parse_mount(f"type=volume,source=v,target=/x,{field}")
    assert m.volume_options == ({"DriverConfig": {}, "NoCopy": True} if nocopy
                                else {"DriverConfig": {}})


def test_no_volume_fields_no_volume_options():
    assert "VolumeOptions" not in o.parse_mount("source=v,target=/x").docker()
    assert o.parse_volume("v:/x").volume_options is None
    assert o.parse_volume("v:/x:ro,nocopy").volume_options == {"NoCopy": True}
    assert o.parse_volume("v:/x:ro,nocopy").read_only


@pytest.mark.parametrize("spec, message", [
    ("type=bind,source=/s,target=/x,volume-opt=a=b",
     "cannot mix 'volume-*' options with mount type 'bind'"),
    ("type=tmpfs,target=/x,volume-nocopy", "cannot mix 'volume-*' options with mount type 'tmpfs'"),
    ("type=volume,target=/x,volume-nocopy=maybe", "invalid value for volume-nocopy: maybe"),
    ("type=volume,target=/x,volume-label", "invalid field 'volume-label' must be a key=value pair"),
    ("type=volume,target=/x,volume-size=1", "unexpected key 'volume-size' in 'volume-size=1'"),
    ('type=volume,target=/x,"volume-opt=o=a', "unexpected end of data"),
])
def test_bad_volume_fields(spec, message):
    with pytest.raises(InvalidArgumentError) as e:
        o.parse_mount(spec)
    assert e.value.message.startswith(f'invalid argument "{spec}" for "--mount" flag: ')
    assert message in e.value.message
