"""The container status machine, exhaustively."""

import itertools

import pytest

from berth.runtime import state as st

EXPECTED = {
    # operation: statuses it is allowed from
    "start": {"created"},
    "kill": {"created", "running", "paused"},
    "delete": {"created", "stopped"},
    "force-delete": set(st.STATUSES),
    "pause": {"created", "running"},
    "resume": {"paused"},
    "exec": {"created", "running"},
    "update": {"created", "running", "paused"},
    "ps": {"created", "running", "paused"},
    "events": {"created", "running", "paused"},
}


@pytest.mark.parametrize(("operation", "status"), list(itertools.product(EXPECTED, st.STATUSES)))
def test_every_operation_in_every_status(operation, status):
    assert st.can(operation, status) == (status in EXPECTED[operation])


def test_table_covers_exactly_the_operations():
    assert set(st.TRANSITIONS) == set(EXPECTED)


@pytest.mark.parametrize("good", ["a", "abc-DEF_1.2+3", "x" * 1024])
def test_valid_ids(good):
    st.check_id(good)


@pytest.mark.parametrize("bad", ["", ".", "..", "a/b", "a b", "é", "x" * 1025, "a\nb"])
def test_invalid_ids(bad):
    from berth.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        st.check_id(bad)


def test_status_is_read_from_the_kernel(tmp_path):
    import os

    from berth.paths import RuntimePaths

    paths = RuntimePaths(str(tmp_path))
    st.make_container_dir(paths, "c")
    data = {"id": "c", "pid": os.getpid(), "start_time": st.proc_start_time(os.getpid()),
            "bundle": "/b", "config": {"ociVersion": "1.2.0"}}
    s = st.ContainerState(paths, data)
    s.save()
    loaded = st.ContainerState.load(paths, "c")
    os.mkfifo(paths.exec_fifo("c"))
    assert loaded.status() == "created"
    os.unlink(paths.exec_fifo("c"))
    # a live pid whose start time does not match is another process: stopped
    loaded.data["start_time"] = 1
    assert loaded.status() == "stopped"
    assert loaded.oci_state()["pid"] == 0


def test_state_is_written_as_jsonio_writes_it():
    from berth import jsonio
    from berth.runtime.state import _dumps

    data = {"id": "c1", "pid": 12, "start_time": None, "ok": True, "no": False, "f": 0.5,
            "config": {"process": {"args": ["sh", "-c", "echo \"é\\u2028\" \t"], "env": []},
                       "linux": {"seccomp": {"syscalls": [{"names": ["read"], "args": []}]}}},
            "t": (1, 2), "big": 2**70, "neg": -3.25e-300, "empty": {}, "nil": []}
    assert _dumps(data) == jsonio.dumps(data)
    assert jsonio.loads(_dumps(data)) == jsonio.loads(jsonio.dumps(data))
    with pytest.raises(TypeError):
        _dumps({"x": object()})
    with pytest.raises(ValueError):
        _dumps({"x": float("nan")})
