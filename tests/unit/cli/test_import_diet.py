"""What `berth run`/`berth exec` import at start-up stays light: no click,
typing, dataclasses, msgspec, shutil, re or logging at module level in the
modules on their path (each costs milliseconds on these machines; see
cli/fast.py). And the stand-ins that made that possible behave as what
they replace."""

import dataclasses
import os
import random
import re
import subprocess
import sys

import pytest

from berth.errors import InvalidArgumentError
from berth.oci import digest, reference
from berth.structs import FrozenInstanceError
from berth.structs import dataclass as sdataclass
from berth.structs import field as sfield

SRC = os.path.dirname(os.path.dirname(os.path.abspath(reference.__file__)))
HEAVY = ("click", "typing", "dataclasses", "inspect", "msgspec", "shutil", "re", "logging",
         "subprocess", "hashlib", "httpx", "berth.network")
RUN_PATH = ("berth.cli.fast", "berth.cli.runner", "berth.engine.containers",
            "berth.engine.imageview", "berth.image.content", "berth.image.snapshots",
            "berth.image.store", "berth.oci.reference", "berth.oci.digest", "berth.fsutil")


def test_run_path_imports_stay_light():
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(SRC)!r})\n"
            f"for m in {RUN_PATH!r}: __import__(m)\n"
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == []


def test_structs_as_dataclasses():
    @sdataclass
    class A:
        x: int
        y: list = sfield(default_factory=list)
        z: str = "z"

    @dataclasses.dataclass
    class B:
        x: int
        y: list = dataclasses.field(default_factory=list)
        z: str = "z"

    a1, a2 = A(1), A(1)
    assert a1 == a2 and a1.y is not a2.y and a1.z == "z"
    assert repr(A(1, [2], "q")) == repr(B(1, [2], "q")).replace("B(", "A(")
    assert A(1) != A(2) and A.__hash__ is None
    with pytest.raises(TypeError):
        A()  # type: ignore[call-arg]

    @sdataclass(frozen=True)
    class F:
        a: str
        b: int = 0

    f = F("a")
    with pytest.raises(FrozenInstanceError):
        f.a = "b"  # type: ignore[misc]
    assert hash(f) == hash(F("a")) and {f: 1}[F("a", 0)] == 1
    assert isinstance(FrozenInstanceError(), AttributeError)


def _random_text(rng: random.Random) -> str:
    alphabet = "abcAZ09_.-:/@[]\n" + "é"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))


@pytest.mark.parametrize("name", ["_PATH_RE", "_DOMAIN_RE", "_TAG_RE", "_ANCHORED_ID"])
def test_reference_quick_checks_agree_with_re(name):
    pattern = getattr(reference, name)
    compiled = re.compile(pattern.pattern)
    rng = random.Random(name)
    samples = ["docker.io", "localhost:5000", "library/busybox", "a/b/c", "latest", "v1.2-rc_3",
               "a" * 64, "A" * 64, "0" * 64 + "\n", "", "a..b", "a__b", "x:", "[::1]:80"]
    samples += [_random_text(rng) for _ in range(3000)]
    for text in samples:
        assert pattern.match(text) == (compiled.match(text) is not None), text


def test_digest_validation_without_re():
    good = "sha256:" + "a" * 64
    digest.validate(good)
    for bad in ("busybox", "sha256:" + "A" * 64, "sha256:" + "a" * 63, good + "\n" + "x",
                "md5:" + "a" * 32, ""):
        with pytest.raises(InvalidArgumentError):
            digest.validate(bad)
    assert digest.is_digest("sha512:" + "b" * 128)
