"""The Go-template subset of --format."""

import pytest

from berth.engine.template import render
from berth.errors import InvalidArgumentError

DATA = {"Id": "abc", "State": {"Pid": 42, "Running": True, "Error": ""},
        "Config": {"Cmd": ["sh", "-c", "x"], "Labels": {"a.b": "c"}, "Entrypoint": None},
        "Name": "/web"}


def test_fields_and_text():
    assert render("{{.State.Pid}}", DATA) == "42"
    assert render("{{ .Name }} is {{.State.Running}}", DATA) == "/web is true"
    assert render("{{.Config.Entrypoint}}", DATA) == "<no value>"
    assert render("{{.Config.Cmd}}", DATA) == "[sh -c x]"
    assert render("{{.ID}}\\t{{.Name}}", {"ID": "1", "Name": "n"}) == "1\tn"


def test_functions():
    assert render("{{json .Config.Cmd}}", DATA) == '["sh","-c","x"]'
    assert render("{{json .State}}", DATA) == '{"Pid":42,"Running":true,"Error":""}'
    assert render('{{index .Config.Labels "a.b"}}', DATA) == "c"
    assert render('{{join .Config.Cmd ","}}', DATA) == "sh,-c,x"
    assert render("{{upper .Id}}", DATA) == "ABC"


def test_errors():
    with pytest.raises(InvalidArgumentError, match="map has no entry for key"):
        render("{{.Nope}}", DATA)
    with pytest.raises(InvalidArgumentError, match='function "nosuch" not defined'):
        render("{{nosuch .Id}}", DATA)
    with pytest.raises(InvalidArgumentError, match="unclosed action"):
        render("{{.Id", DATA)
