"""Docker's shapes and words for a container record (pure)."""

import time

from berth.engine import views
from berth.engine.store import ContainerRecord


def _rec(**kw) -> ContainerRecord:
    base = dict(id="a" * 64, name="web", image="busybox", image_id="sha256:" + "b" * 64,
                created="2026-01-01T00:00:00.000000000Z", config={"Cmd": ["sleep", "1"]},
                host_config={"RestartPolicy": {"Name": "no"}, "Memory": 8 << 20})
    base.update(kw)
    return ContainerRecord(**base)


def _now(offset: float = 0) -> str:
    t = time.time() - offset
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".000000000Z"


def test_status_text():
    assert views.status_text(_rec()) == "Created"
    assert views.status_text(_rec(status="running", started_at=_now(130))) == "Up 2 minutes"
    assert views.status_text(_rec(status="paused", started_at=_now(5))) == "Up 5 seconds (Paused)"
    assert views.status_text(_rec(status="exited", exit_code=3, finished_at=_now(3700))) == \
        "Exited (3) About an hour ago"
    assert views.status_text(_rec(status="running", started_at=_now(1),
                                  health={"Status": "healthy"})) == "Up 1 second (healthy)"


def test_inspect_shape():
    out = views.inspect(_rec(status="running", pid=42), "/b", "/b/x-json.log", {"Driver": "overlay"})
    assert out["State"]["Running"] is True and out["State"]["Pid"] == 42
    assert out["Name"] == "/web" and out["Path"] == "sleep" and out["Args"] == ["1"]
    assert out["HostsPath"] == "/b/hosts" and out["LogPath"] == "/b/x-json.log"
    assert set(out) >= {"Id", "Created", "Config", "HostConfig", "GraphDriver", "Mounts",
                        "NetworkSettings", "RestartCount", "Platform"}


def test_why():
    assert views.why(_rec(status="exited", exit_code=0, reason="exit:0")) == \
        "web exited on its own with code 0"
    assert "OOM killer" in views.why(_rec(status="exited", exit_code=137, oom_killed=True,
                                          reason="oom"))
    assert "8388608 bytes" in views.why(_rec(status="exited", exit_code=137, reason="oom"))
    assert "signal SIGTERM" in views.why(_rec(status="exited", exit_code=143, reason="signal:15"))
    assert "stopped by berth stop" in views.why(_rec(status="exited", exit_code=137,
                                                     reason="stopped:137"))
    assert "failed to start" in views.why(_rec(status="created", exit_code=127,
                                               error="exec: nope"))
    assert "never started" in views.why(_rec())
    assert "lost its monitor" in views.why(_rec(status="exited", exit_code=255,
                                                reason="monitor:lost"))
