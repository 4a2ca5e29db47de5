"""Docker's option values, parsed."""

import pytest

from berth.engine import options as o
from berth.errors import InvalidArgumentError


@pytest.mark.parametrize("text, value", [
    ("512", 512), ("64k", 64 << 10), ("64K", 64 << 10), ("100m", 100 << 20), ("100MB", 100 << 20),
    ("1g", 1 << 30), ("1GiB", 1 << 30), ("1.5g", 3 << 29), ("2b", 2),
])
def test_sizes(text, value):
    assert o.parse_size(text) == value


@pytest.mark.parametrize("text", ["12q", "", "m", "-1m", "1.2.3g", "1kk"])
def test_bad_sizes(text):
    with pytest.raises(InvalidArgumentError) as e:
        o.parse_size(text)
    assert e.value.message == (f'invalid argument "{text}" for "-m, --memory" flag: '
                               f"invalid size: '{text}'")


def test_restart_policies():
    assert o.parse_restart("no") == o.RestartPolicy("no", 0)
    assert o.parse_restart("always") == o.RestartPolicy("always", 0)
    assert o.parse_restart("unless-stopped").name == "unless-stopped"
    assert o.parse_restart("on-failure") == o.RestartPolicy("on-failure", 0)
    assert o.parse_restart("on-failure:5") == o.RestartPolicy("on-failure", 5)
    for bad in ("always:3", "on-failure:x", "sometimes", "no:1"):
        with pytest.raises(InvalidArgumentError):
            o.parse_restart(bad)


def test_signals():
    assert o.parse_signal("TERM") == 15
    assert o.parse_signal("SIGKILL") == 9
    assert o.parse_signal("sigusr1") == 10
    assert o.parse_signal("9") == 9
    assert o.parse_signal("RTMIN+2") == 36
    assert o.signal_name(15) == "SIGTERM"
    with pytest.raises(InvalidArgumentError, match="Invalid signal: NOPE"):
        o.parse_signal("NOPE")


def test_env(tmp_path):
    assert o.parse_env(["A=1", "B", "C"], {"B": "from-cli"}) == ["A=1", "B=from-cli"]
    f = tmp_path / "env"
    f.write_text("# c\n\nX=1\n  Y=two words\nZ\n")
    assert o.read_env_file(str(f)) == ["X=1", "Y=two words"]
    assert o.merge_env(["PATH=/a", "A=1"], ["A=2", "B=3"]) == ["PATH=/a", "A=2", "B=3"]
    with pytest.raises(InvalidArgumentError):
        o.parse_env(["=x"])


def test_volumes_and_mounts():
    assert o.parse_volume("/h:/c:ro") == o.MountSpec("bind", "/c", "/h", True,
                                                     create_host_path=True)
    assert o.parse_volume("data:/d") == o.MountSpec("volume", "/d", "data")
    assert o.parse_volume("/anon") == o.MountSpec("volume", "/anon", "")
    for bad in ("rel:dir", "a:b:c:d", "/x:/y:bogus", "bad name!:/x"):
        with pytest.raises(InvalidArgumentError):
            o.parse_volume(bad)
    m = o.parse_mount("type=tmpfs,target=/t,tmpfs-size=1m,tmpfs-mode=1777")
    assert (m.type, m.target, m.tmpfs_size, m.tmpfs_mode) == ("tmpfs", "/t", 1 << 20, 0o1777)
    m = o.parse_mount("type=bind,src=/s,dst=/d,readonly")
    assert (m.type, m.source, m.target, m.read_only, m.create_host_path) == \
        ("bind", "/s", "/d", True, False)
    with pytest.raises(InvalidArgumentError):
        o.parse_mount("type=nfs,target=/x")
    with pytest.raises(InvalidArgumentError):
        o.parse_mount("type=bind,target=/x")


def test_ulimits_and_cpus():
    assert o.parse_ulimit("nofile=512:1024") == o.Ulimit("nofile", 512, 1024)
    assert o.parse_ulimit("nproc=10") == o.Ulimit("nproc", 10, 10)
    for bad in ("nofile", "bogus=1", "nofile=2:1", "nofile=x"):
        with pytest.raises(InvalidArgumentError):
            o.parse_ulimit(bad)
    assert o.parse_cpus("0.5") == 500_000_000
    with pytest.raises(InvalidArgumentError):
        o.parse_cpus("half")
