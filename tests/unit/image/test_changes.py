import pytest

from berth.cli.image import human_size, render
from berth.errors import InvalidArgumentError
from berth.image.archive import apply_changes
from berth.oci import image as oi


def test_apply_changes():
    cfg = apply_changes(oi.ContainerConfig(env=["A=0"]), [
        "CMD echo hi", 'ENTRYPOINT ["/bin/tini", "--"]', "ENV A=1 B='two words'",
        "ENV C three", "EXPOSE 80 53/udp", "LABEL a=b c=d", 'VOLUME ["/data"]', "USER 1000:1000",
        "WORKDIR /srv", "STOPSIGNAL SIGINT"])
    assert cfg.cmd == ["/bin/sh", "-c", "echo hi"]
    assert cfg.entrypoint == ["/bin/tini", "--"]
    assert cfg.env == ["A=1", "B=two words", "C=three"]
    assert cfg.exposed_ports == {"80/tcp": {}, "53/udp": {}}
    assert cfg.labels == {"a": "b", "c": "d"} and cfg.volumes == {"/data": {}}
    assert (cfg.user, cfg.working_dir, cfg.stop_signal) == ("1000:1000", "/srv", "SIGINT")
    with pytest.raises(InvalidArgumentError, match="COPY is not supported"):
        apply_changes(oi.ContainerConfig(), ["COPY a b"])


def test_cli_formats():
    assert human_size(1_982_657) == "1.98MB" and human_size(999) == "999B"
    assert render("{{.Id}} {{json .Config.Cmd}} {{.Missing}}",
                  {"Id": "x", "Config": {"Cmd": ["sh"]}}) == 'x ["sh"] <no value>'
