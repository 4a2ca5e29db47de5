"""process.capabilities applied for real, in forked children, read back from
/proc/self/status."""

import ctypes
import os

import pytest

from berth.errors import PermissionDeniedError
from berth.linux import capabilities as caps
from tests.integration.confinement.child import in_child, proc_status

PR_GET_KEEPCAPS = 7  # <linux/prctl.h>

DOCKER_14 = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
    "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _root(privileged):
    pass


def _sets() -> dict[str, int]:
    st = proc_status()
    return {k: int(st[k], 16) for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")}


def _switch_to(uid: int, gid: int):
    def switch() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return switch


def test_docker_defaults_as_root():
    mask = caps.parse_caps(DOCKER_14)
    cfg = {k: DOCKER_14 for k in ("bounding", "effective", "permitted")}
    res = in_child(lambda: (caps.apply(cfg, None), _sets())[1]).get()
    assert res == {"CapInh": 0, "CapPrm": mask, "CapEff": mask, "CapBnd": mask, "CapAmb": 0}
    assert mask == 0xA80425FB  # what docker run shows for CapEff


def test_no_config_means_no_capabilities():
    res = in_child(lambda: (caps.apply(None, None), _sets())[1]).get()
    assert res == dict.fromkeys(("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"), 0)


def test_keepcaps_across_uid_switch():
    want = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    cfg = {"bounding": want, "effective": want, "permitted": want}

    def child():
        caps.apply(cfg, _switch_to(1000, 1000))
        keep = ctypes.CDLL(None, use_errno=True).prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0)
        return {**_sets(), "uid": os.getuid(), "euid": os.geteuid(), "keep": keep}

    res = in_child(child).get()
    mask = caps.parse_caps(want)
    assert res["uid"] == res["euid"] == 1000
    assert res["CapPrm"] == res["CapEff"] == res["CapBnd"] == mask
    assert res["CapInh"] == res["CapAmb"] == 0
    assert res["keep"] == 0  # cleared again after the switch


def test_without_keepcaps_the_switch_loses_everything():
    # the control for the test above: switching user outside apply() drops the sets
    def child():
        _switch_to(1000, 1000)()
        return _sets()

    res = in_child(child).get()
    assert res["CapPrm"] == res["CapEff"] == 0


def test_ambient_for_non_root_user():
    want = ["CAP_NET_BIND_SERVICE"]
    cfg = {k: want for k in caps.FIELDS}

    def child():
        caps.apply(cfg, _switch_to(1000, 1000))
        # ambient caps survive execve of an unprivileged program: check the real thing
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.execv("/bin/grep", ["grep", "^Cap", "/proc/self/status"])
        os.close(w)
        out = os.read(r, 4096).decode()
        os.waitpid(pid, 0)
        return dict(line.split(":\t") for line in out.split("\n") if line)

    res = in_child(child).get()
    mask = 1 << caps.CAPS["CAP_NET_BIND_SERVICE"]
    assert {k: int(v, 16) for k, v in res.items()} == {
        "CapInh": mask, "CapPrm": mask, "CapEff": mask, "CapBnd": mask, "CapAmb": mask,
    }  # fmt: skip


def test_exec_as_non_root_without_ambient_has_nothing():
    # CVE-2022-29162: with empty inheritable/ambient, an exec'd program of a
    # non-root user gets no capabilities even though the runtime kept some
    want = ["CAP_NET_BIND_SERVICE", "CAP_CHOWN"]
    cfg = {"bounding": want, "effective": want, "permitted": want}

    def child():
        caps.apply(cfg, _switch_to(1000, 1000))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 1)
            os.execv("/bin/grep", ["grep", "^Cap", "/proc/self/status"])
        os.close(w)
        out = os.read(r, 4096).decode()
        os.waitpid(pid, 0)
        return {k: int(v, 16) for k, v in (line.split(":\t") for line in out.split("\n") if line)}

    res = in_child(child).get()
    assert res["CapInh"] == res["CapPrm"] == res["CapEff"] == res["CapAmb"] == 0
    assert res["CapBnd"] == caps.parse_caps(want)


def test_ambient_without_inheritable_is_a_clear_error():
    cfg = {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]}
    res = in_child(lambda: caps.apply(cfg, None))
    assert res.error is not None
    assert "PermissionDeniedError" in res.error
    assert (
        "raise ambient capability CAP_KILL: operation not permitted "
        "(it must be in the permitted and inheritable sets)"
    ) in res.error


def test_ambient_without_inheritable_is_skipped_like_runc_when_collecting():
    # runc 1.1.5 runs this config and shows CapAmb 0; berth does the same when
    # the caller collects what was passed over
    cfg = {"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"], "ambient": ["CAP_KILL"]}

    def child():
        ignored: list[str] = []
        caps.apply(cfg, None, ignored=ignored)
        return {**_sets(), "ignored": ignored}

    res = in_child(child).get()
    assert res["ignored"] == [
        "CAP_KILL (ambient: it must be in the permitted and inheritable sets)"
    ]
    assert res["CapAmb"] == res["CapInh"] == 0
    assert res["CapPrm"] == 1 << caps.CAPS["CAP_KILL"]


def test_permitted_beyond_bounding_cannot_be_regained():
    # after dropping SETPCAP from bounding and permitted, asking for it back fails
    def child():
        caps.apply({"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"]}, None)
        try:
            caps.capset(0, 1 << caps.CAPS["CAP_SYS_ADMIN"], 0)
        except PermissionDeniedError as e:
            return str(e)
        return "no error"

    msg = in_child(child).get()
    assert msg.startswith("capset effective=0x0 permitted=0x200000")
    assert "operation not permitted" in msg


def test_drop_bounding_and_capset_directly():
    def child():
        caps.drop_bounding(caps.parse_caps(["CAP_CHOWN", "CAP_KILL"]))
        caps.capset(1 << 5, (1 << 5) | 1, 1)
        return {**_sets(), "get": list(caps.capget())}

    res = in_child(child).get()
    assert res["CapBnd"] == 0b100001
    assert res["get"] == [1 << 5, 0b100001, 1]
    assert res["CapEff"] == 1 << 5 and res["CapInh"] == 1
