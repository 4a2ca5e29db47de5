"""Content digests (`algorithm:hex`), as the OCI image-spec defines them.

sha256 is the canonical algorithm; sha512 is accepted for reading. Pure: no I/O.
"""

from berth.errors import InvalidArgumentError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import hashlib

ALGORITHMS: dict[str, int] = {"sha256": 64, "sha512": 128}
CANONICAL = "sha256"

# image-spec descriptor.md: algorithm-component ([a-z0-9]+) joined by [+._-]
_DIGEST_RE = r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$"
_LOWER_HEX = frozenset("0123456789abcdef")


class Digest(str):
    """A validated digest string, e.g. ``sha256:e3b0...``. Compares as a str."""

    __slots__ = ()

    def __new__(cls, value: str) -> "Digest":
        if isinstance(value, Digest):
            return value
        validate(value)
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.split(":", 1)[0]

    @property
    def hex(self) -> str:
        return self.split(":", 1)[1]

    @property
    def short(self) -> str:
        """The 12-character id Docker prints."""
        return self.hex[:12]


def validate(value: str) -> None:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"parse digest {value!r}: not a string")
    algorithm, colon, encoded = value.partition(":")
    # the common cases without `re` (its import and this compile are a few ms
    # of a `berth run`): a well-formed sha256 digest, and no ":" at all
    if algorithm == "sha256" and len(encoded) == 64 and _LOWER_HEX.issuperset(encoded):
        return
    if not colon:
        raise InvalidArgumentError(f"parse digest {value!r}: invalid digest format")
    import re

    m = re.match(_DIGEST_RE, value)
    if m is None:
        raise InvalidArgumentError(f"parse digest {value!r}: invalid digest format")
    algorithm, encoded = m.groups()
    if algorithm not in ALGORITHMS:
        raise InvalidArgumentError(
            f"parse digest {value!r}: unsupported digest algorithm {algorithm!r}",
            digest=value,
        )
    if len(encoded) != ALGORITHMS[algorithm] or not _LOWER_HEX.issuperset(encoded):
        raise InvalidArgumentError(
            f"parse digest {value!r}: invalid {algorithm} hex of length {len(encoded)}",
            digest=value,
        )


def is_digest(value: str) -> bool:
    try:
        validate(value)
    except InvalidArgumentError:
        return False
    return True


def hasher(algorithm: str = CANONICAL) -> "hashlib._Hash":
    if algorithm not in ALGORITHMS:
        raise InvalidArgumentError(f"hash: unsupported digest algorithm {algorithm!r}")
    import hashlib

    return hashlib.new(algorithm)


def from_bytes(data: bytes, algorithm: str = CANONICAL) -> Digest:
    h = hasher(algorithm)
    h.update(data)
    return Digest(f"{algorithm}:{h.hexdigest()}")


def from_hash(h: "hashlib._Hash") -> Digest:
    return Digest(f"{h.name}:{h.hexdigest()}")
