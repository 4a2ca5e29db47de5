"""config.json validation: every refusal names the field."""

import copy

import pytest

from berth.errors import InvalidArgumentError
from berth.oci.runtime import default_spec, validate


def test_default_spec_is_valid():
    validate(default_spec())
    validate(default_spec(rootless=True))


def mutate(fn):
    cfg = copy.deepcopy(default_spec())
    fn(cfg)
    return cfg


_IDM = [{"containerID": 0, "hostID": 1000, "size": 1}]

CASES = [
    (lambda c: c["mounts"].append({"destination": "/m", "type": "bind", "source": "/s", "uidMappings": _IDM}),
     "mounts[7]: an id-mapped mount needs both uidMappings and gidMappings"),
    (lambda c: c["mounts"].append({"destination": "/m", "type": "tmpfs", "source": "t", "options": ["idmap"],
                                   "uidMappings": _IDM, "gidMappings": _IDM}),
     "mounts[7]: id mappings are only supported on bind mounts"),
    (lambda c: c["mounts"].append({"destination": "/m", "type": "bind", "source": "/s",
                                   "uidMappings": [{"containerID": 0, "hostID": 1, "size": 0}], "gidMappings": _IDM}),
     "mounts[7].uidMappings[0].size"),
    (lambda c: c.pop("root"), "root: is missing"),
    (lambda c: c["root"].update(path=""), "root.path: is empty"),
    (lambda c: c["process"].update(args=[]), "process.args"),
    (lambda c: c["process"].update(args=["sh", 1]), "process.args[1]"),
    (lambda c: c["process"].update(cwd="relative"), "process.cwd"),
    (lambda c: c["process"].update(env=["NOEQUALS"]), "process.env[0]"),
    (lambda c: c["process"]["user"].update(uid=-1), "process.user.uid"),
    (lambda c: c["process"]["user"].update(gid="0"), "process.user.gid"),
    (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_FOO", "soft": 1, "hard": 1}), "rlimits[1].type"),
    (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_CORE", "soft": 2, "hard": 1}), "exceeds hard"),
    (lambda c: c["process"].update(oomScoreAdj=5000), "oomScoreAdj"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pdi"}), "unknown namespace type 'pdi'"),
    (lambda c: c["linux"]["namespaces"].append({"type": "pid"}), "namespace pid given twice"),
    (lambda c: c["linux"]["namespaces"].append({"type": "user"}), "uidMappings"),
    (lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 0, "size": 0}]), "size"),
    (lambda c: c["mounts"].append({"destination": "/a/../../b"}), "escapes"),
    (lambda c: c["mounts"].append({"destination": ""}), "destination: is empty"),
    (lambda c: c["mounts"].append({"destination": "/x", "options": "ro"}), "mounts[7].options"),
    (lambda c: c.update(hooks={"prestop": []}), "unknown hook kind"),
    (lambda c: c.update(hooks={"prestart": [{"path": "rel"}]}), "hooks.prestart[0].path"),
    (lambda c: c.update(hooks={"prestart": [{"path": "/x", "timeout": 0}]}), "timeout"),
    (lambda c: c["linux"].update(devices=[{"path": "/dev/x", "type": "q"}]), "unknown device type"),
    (lambda c: c["linux"].update(devices=[{"path": "/dev/../x", "type": "c", "major": 1, "minor": 1}]), "escapes"),
    (lambda c: c["linux"].update(rootfsPropagation="sideways"), "rootfsPropagation"),
    (lambda c: c["linux"].update(cgroupsPath="/a/../b"), "cgroupsPath"),
    (lambda c: c.update(annotations={"a": 1}), "annotations.a"),
    (lambda c: c.update(ociVersion=1), "ociVersion"),
]


@pytest.mark.parametrize(("change", "message"), CASES)
def test_refusals_name_the_field(change, message):
    with pytest.raises(InvalidArgumentError) as exc:
        validate(mutate(change))
    assert message in exc.value.message
    assert exc.value.message.startswith("config.json: ")


def test_hostname_needs_uts_namespace():
    def no_uts(c):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "uts"]

    with pytest.raises(InvalidArgumentError, match="uts"):
        validate(mutate(no_uts))


def test_not_an_object():
    with pytest.raises(InvalidArgumentError):
        validate([])
