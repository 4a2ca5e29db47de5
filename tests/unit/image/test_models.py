import pytest

from berth.errors import InvalidArgumentError, NotFoundError
from berth.oci import image as oi

INDEX = b"""{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
"manifests":[
 {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":1,
  "platform":{"architecture":"arm","os":"linux","variant":"v6"}},
 {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":2,
  "platform":{"architecture":"arm","os":"linux","variant":"v7"}},
 {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":3,
  "platform":{"architecture":"amd64","os":"linux"}},
 {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":4,
  "platform":{"architecture":"arm64","os":"linux","variant":"v8"}}
]}""" % (b"1" * 64, b"2" * 64, b"3" * 64, b"4" * 64)


def test_select_platform():
    idx = oi.decode_index(INDEX)
    assert oi.select_manifest(idx, oi.parse_platform("linux/amd64")).size == 3
    assert oi.select_manifest(idx, oi.parse_platform("linux/arm/v6")).size == 1
    assert oi.select_manifest(idx, oi.parse_platform("linux/arm")).size == 2  # arm means v7
    assert oi.select_manifest(idx, oi.parse_platform("linux/aarch64")).size == 4
    with pytest.raises(NotFoundError, match="no matching manifest"):
        oi.select_manifest(idx, oi.parse_platform("linux/s390x"))
    with pytest.raises(InvalidArgumentError):
        oi.parse_platform("linux")


def test_media_type_detection_and_schema1():
    assert oi.media_type_of(INDEX) == oi.OCI_INDEX
    assert oi.media_type_of(b'{"schemaVersion":2,"manifests":[]}') == oi.OCI_INDEX
    s1 = oi.media_type_of(b'{"schemaVersion":1,"fsLayers":[]}')
    with pytest.raises(InvalidArgumentError, match="schema 1 is deprecated"):
        oi.check_not_schema1(s1, "pull x")


def test_config_roundtrip():
    raw = (b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},'
           b'"config":{"Env":["A=1"],"Cmd":["sh"],"WorkingDir":"/w"},'
           b'"history":[{"created_by":"x","empty_layer":true}]}')
    cfg = oi.decode_config(raw)
    assert cfg.config.env == ["A=1"] and cfg.config.working_dir == "/w"
    assert oi.decode_config(oi.encode(cfg)) == cfg
    assert b'"WorkingDir":"/w"' in oi.encode(cfg)
    with pytest.raises(InvalidArgumentError, match="decode image config"):
        oi.decode_config(b'{"os":"linux"}')


def test_chain_ids():
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    import hashlib

    assert oi.chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()]
