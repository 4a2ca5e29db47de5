"""`--mount type=volume,...,volume-driver=,volume-opt=,volume-label=,volume-nocopy`
on `run`/`create`: a missing named volume is made when the container is
created, with the local driver's options (a real tmpfs here); an existing one
is used as it is (Docker ignores the options then); bad options give `volume
create -o`'s errors and create nothing."""

import json
import os

import pytest

from tests.integration.engine.test_volume_options import _data, _mounts_at, _mounts_under

TMPFS_OPTS = "volume-driver=local,volume-opt=type=tmpfs,volume-opt=device=tmpfs," \
             "volume-opt=o=size=10m"


def _df_kb(berth, *mount_args: str) -> str:
    out = berth.run("--rm", "--network", "none", *mount_args, "busybox", "sh", "-c",
                    "df -k /x | tail -n 1; stat -f -c %T /x", check=True).stdout.split()
    return f"{out[0]} {out[1]} {out[-1]}"


def test_mount_volume_opt_makes_the_volume_at_create(berth):
    spec = f"type=volume,source=mv,target=/x,{TMPFS_OPTS},volume-label=team=db"
    cid = berth.out("create", "--network", "none", "--mount", spec, "busybox", "sh", "-c",
                    "df -k /x | tail -n 1; stat -f -c %T /x").strip()
    # made by the create, with the mount's options and labels
    info = json.loads(berth.out("volume", "inspect", "mv"))[0]
    assert info["Options"] == {"device": "tmpfs", "o": "size=10m", "type": "tmpfs"}
    assert info["Labels"] == {"team": "db"}
    (mount,) = json.loads(berth.out("inspect", cid))[0]["HostConfig"]["Mounts"]
    assert mount["VolumeOptions"] == {
        "DriverConfig": {"Name": "local",
                         "Options": {"type": "tmpfs", "device": "tmpfs", "o": "size=10m"}},
        "Labels": {"team": "db"}}
    p = berth("volume", "rm", "mv")
    assert p.returncode == 1 and "volume is in use" in p.stderr
    out = berth.out("start", "-a", cid).split()
    assert (out[0], out[1], out[-1]) == ("tmpfs", "10240", "tmpfs")
    assert len(_mounts_at(_data(berth, "mv"))) == 1
    # an existing volume is used as it is: other options are not applied
    assert _df_kb(berth, "--mount", "type=volume,source=mv,target=/x,volume-opt=type=tmpfs,"
                  "volume-opt=device=tmpfs,volume-opt=o=size=20m") == "tmpfs 10240 tmpfs"
    berth.out("rm", cid)
    assert berth.out("volume", "rm", "mv") == "mv\n"
    assert _mounts_under(berth.root) == []


def test_mount_volume_opt_ignored_for_an_existing_plain_volume(berth):
    berth.out("volume", "create", "plain")
    berth.run("--rm", "--network", "none", "--mount",
              f"type=volume,source=plain,target=/x,{TMPFS_OPTS}", "busybox", "sh", "-c",
              "echo kept > /x/f", check=True)
    assert json.loads(berth.out("volume", "inspect", "plain"))[0]["Options"] is None
    assert _mounts_at(_data(berth, "plain")) == []
    with open(os.path.join(_data(berth, "plain"), "f")) as f:
        assert f.read() == "kept\n"
    berth.out("volume", "rm", "plain")


def test_mount_volume_opt_quoted_field_and_anonymous_volume(berth):
    # a CSV field in quotes holds commas, as the Docker CLI reads --mount
    spec = ('type=volume,target=/x,volume-opt=type=tmpfs,volume-opt=device=tmpfs,'
            '"volume-opt=o=size=3m,mode=0711"')
    out = berth.run("--rm", "--network", "none", "--mount", spec, "busybox", "sh", "-c",
                    "df -k /x | tail -n 1; stat -c %a /x", check=True).stdout.split()
    assert (out[0], out[1], out[-1]) == ("tmpfs", "3072", "711")
    # the anonymous volume went with the container (--rm), unmounted
    assert berth.out("volume", "ls", "-q") == ""
    assert _mounts_under(berth.root) == []


@pytest.mark.parametrize("opts, message", [
    ("volume-opt=foo=bar", 'invalid option: "foo"'),
    ("volume-opt=type=tmpfs", 'missing required option: "device"'),
    ("volume-opt=o=size=1m", 'missing required option: "device"'),
    ("volume-opt=size=1g", "quota size requested but no quota support"),
    ("volume-opt=size=lots", "invalid size: 'lots'"),
])
def test_bad_volume_opt_fails_the_run_nothing_created(berth, opts, message):
    berth.out("volume", "create", "keep")
    for cmd in ("run", "create"):
        p = berth(cmd, "--network", "none", "--mount",
                  f"type=volume,source=v,target=/x,{opts}", "busybox", "true")
        assert p.returncode == 125
        assert p.stderr == f"berth: Error response from daemon: create v: {message}\n"
    assert berth.out("ps", "-aq") == ""
    containers = os.path.join(berth.root, "containers")
    assert not os.path.isdir(containers) or os.listdir(containers) == []
    assert berth.out("volume", "ls", "-q") == "keep\n"
    assert os.listdir(os.path.join(berth.root, "volumes")) == ["keep"]
    berth.out("volume", "rm", "keep")


@pytest.mark.parametrize("spec, message", [
    ("type=bind,source=/tmp,target=/x,volume-opt=a=b",
     "cannot mix 'volume-*' options with mount type 'bind'"),
    ("type=tmpfs,target=/x,volume-nocopy", "cannot mix 'volume-*' options with mount type "
     "'tmpfs'"),
    ("type=volume,target=/x,volume-nocopy=maybe", "invalid value for volume-nocopy: maybe"),
    ("type=volume,target=/x,volume-opt", "invalid field 'volume-opt' must be a key=value pair"),
])
def test_bad_mount_flag(berth, spec, message):
    p = berth.run("--rm", "--network", "none", "--mount", spec, "busybox", "true")
    assert p.returncode == 125
    assert f'invalid argument "{spec}" for "--mount" flag: {message}' in p.stderr, p.stderr
    assert berth.out("ps", "-aq") == "" and berth.out("volume", "ls", "-q") == ""


def test_volume_nocopy(berth):
    """A new volume is filled from the image's content at its mount point,
    unless volume-nocopy (or -v ...:nocopy) says not to."""
    ls = ("ls", "/etc")
    assert "passwd" in berth.run("--rm", "--network", "none", "-v", "copied:/etc", "busybox",
                                 *ls, check=True).stdout.split()
    for args in (["--mount", "type=volume,source=nc1,target=/etc,volume-nocopy"],
                 ["--mount", "type=volume,source=nc2,target=/etc,volume-nocopy=true"],
                 ["-v", "nc3:/etc:nocopy"]):
        out = berth.run("--rm", "--network", "none", *args, "busybox", *ls, check=True).stdout
        assert "passwd" not in out.split(), (args, out)
    assert berth.out("volume", "ls", "-q").split() == ["copied", "nc1", "nc2", "nc3"]
    berth.out("volume", "rm", "copied", "nc1", "nc2", "nc3")
