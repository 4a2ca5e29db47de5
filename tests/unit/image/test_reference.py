import pytest

from berth.errors import InvalidArgumentError
from berth.oci import digest as dg
from berth.oci.reference import parse

D = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    "text, full, familiar",
    [
        ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
        ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
        ("user/app", "docker.io/user/app:latest", "user/app:latest"),
        ("index.docker.io/library/x", "docker.io/library/x:latest", "x:latest"),
        ("docker.io/a/b/c:t", "docker.io/a/b/c:t", "a/b/c:t"),
        ("localhost/app", "localhost/app:latest", "localhost/app:latest"),
        ("localhost:5000/a/b:v1", "localhost:5000/a/b:v1", "localhost:5000/a/b:v1"),
        (f"host:5000/a/b@{D}", f"host:5000/a/b@{D}", f"host:5000/a/b@{D}"),
        (f"quay.io/x/y:t@{D}", f"quay.io/x/y:t@{D}", f"quay.io/x/y:t@{D}"),
        ("127.0.0.1:5000/r", "127.0.0.1:5000/r:latest", "127.0.0.1:5000/r:latest"),
        ("[::1]:5000/r:t", "[::1]:5000/r:t", "[::1]:5000/r:t"),
        ("a__b/c-d.e_f", "docker.io/a__b/c-d.e_f:latest", "a__b/c-d.e_f:latest"),
        ("Foo.com/bar", "Foo.com/bar:latest", "Foo.com/bar:latest"),
    ],
)
def test_normalisation(text, full, familiar):
    ref = parse(text)
    assert str(ref) == full
    assert ref.familiar == familiar


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty"),
        ("Busybox", "must be lowercase"),
        ("docker.io/Library/x", "must be lowercase"),
        ("a" * 64, "hexadecimal"),
        ("busybox:", "invalid tag"),
        ("busybox:-bad", "invalid tag"),
        ("busybox:" + "t" * 129, "invalid tag"),
        ("busybox@sha256:abc", "invalid sha256"),
        ("busybox@md5:" + "a" * 32, "unsupported digest algorithm"),
        ("a/" * 130 + "b", "more than 255"),
        ("-x", "invalid reference format"),
        ("a//b", "invalid reference format"),
        ("a/b/", "invalid reference format"),
        (":tag", "invalid reference format"),
    ],
)
def test_invalid(text, message):
    with pytest.raises(InvalidArgumentError, match=message):
        parse(text)


def test_digest_only_has_no_tag():
    ref = parse(f"busybox@{D}")
    assert ref.tag is None and ref.digest == D


def test_digests():
    d = dg.from_bytes(b"")
    assert d == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert d.algorithm == "sha256" and d.short == "e3b0c44298fc"
    d512 = dg.from_bytes(b"", "sha512")
    assert dg.Digest(str(d512)).algorithm == "sha512"
    for bad in ("sha256:" + "A" * 64, "sha256:" + "a" * 63, "sha1:" + "a" * 40, "nocolon"):
        with pytest.raises(InvalidArgumentError):
            dg.Digest(bad)
