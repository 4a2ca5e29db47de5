"""Image references, parsed and normalised as Docker does.

Grammar (distribution/reference)::

    reference  := name [ ":" tag ] [ "@" digest ]
    name       := [domain "/"] path-component ["/" path-component]*
    domain     := host [":" port]
    tag        := [\\w][\\w.-]{0,127}

Normalisation: a first component without ``.`` or ``:`` that is not
``localhost`` (and is lower-case) is not a domain, so the domain is
``docker.io``; a single-component name on docker.io gets ``library/``; no tag
and no digest means ``:latest``. ``index.docker.io`` is ``docker.io``::

    busybox                  -> docker.io/library/busybox:latest
    host:5000/a/b@sha256:... -> host:5000/a/b@sha256:...

Pure: no I/O.
"""


from berth.errors import InvalidArgumentError
from berth.oci.digest import Digest, validate
from berth.structs import dataclass

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_REPO_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"



class _Pattern:
    """A regular expression compiled on first use, after `quick` (a check
    that accepts only strings the expression matches, and None when unsure)
    had no answer: the common references never import `re` (its import and
    these compiles are a few ms of a `berth run`)."""

    def __init__(self, pattern: str, quick) -> None:
        self.pattern = pattern
        self.quick = quick
        self._re = None

    def match(self, text: str) -> bool:
        q = self.quick(text)
        if q is not None:
            return q
        if self._re is None:
            import re

            self._re = re.compile(self.pattern)
        return self._re.match(text) is not None


_LOWER_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_TAG_FIRST = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_TAG_REST = _TAG_FIRST | {".", "-"}
_DIGITS = frozenset("0123456789")


def _quick_path(text: str) -> bool | None:
    # lowercase alphanumeric components joined by "/" match; else ask re
    parts = text.split("/")
    return True if all(p and _LOWER_ALNUM.issuperset(p) for p in parts) else None


def _quick_domain(text: str) -> bool | None:
    host, colon, port = text.partition(":")
    if colon and not (port and _DIGITS.issuperset(port)):
        return None
    parts = host.split(".")
    return True if all(p and _LOWER_ALNUM.issuperset(p) for p in parts) else None


def _quick_tag(text: str) -> bool | None:
    if 0 < len(text) <= 128 and text[0] in _TAG_FIRST and _TAG_REST.issuperset(text):
        return True
    return None


def _quick_id(text: str) -> bool | None:
    return None if len(text) in (64, 65) else False


_PATH_RE = _Pattern(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$", _quick_path)
_DOMAIN_RE = _Pattern(rf"^{_DOMAIN}$", _quick_domain)
_TAG_RE = _Pattern(rf"^{_TAG}$", _quick_tag)
_ANCHORED_ID = _Pattern(r"^[a-f0-9]{64}$", _quick_id)


@dataclass(frozen=True)
class Reference:
    """A fully normalised reference. `tag` and `digest` may both be set."""

    domain: str
    path: str
    tag: str | None = None
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """domain/path, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    @property
    def familiar_name(self) -> str:
        """The short name Docker shows: ``busybox``, ``user/app``, ``host:5000/app``."""
        if self.domain == DEFAULT_DOMAIN:
            if self.path.startswith(OFFICIAL_REPO_PREFIX) and self.path.count("/") == 1:
                return self.path[len(OFFICIAL_REPO_PREFIX) :]
            return self.path
        return self.name

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    @property
    def familiar(self) -> str:
        out = self.familiar_name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_tag(self, tag: str) -> "Reference":
        validate_tag(tag)
        return Reference(self.domain, self.path, tag, None)

    def with_digest(self, digest: str) -> "Reference":
        return Reference(self.domain, self.path, None, Digest(digest))

    @property
    def tagged(self) -> str:
        """name:tag (the tag being `latest` when absent)."""
        return f"{self.name}:{self.tag or DEFAULT_TAG}"


def validate_tag(tag: str) -> None:
    if not _TAG_RE.match(tag):
        raise InvalidArgumentError(f"parse tag {tag!r}: invalid tag format")


def _split_domain(name: str) -> tuple[str, str]:
    i = name.find("/")
    first = name[:i] if i >= 0 else ""
    if i < 0 or (
        not any(c in first for c in ".:") and first != "localhost" and first.lower() == first
    ):
        domain, remainder = DEFAULT_DOMAIN, name
    else:
        domain, remainder = first, name[i + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in remainder:
        remainder = OFFICIAL_REPO_PREFIX + remainder
    return domain, remainder


def parse(text: str, default_tag: bool = True) -> Reference:
    """Parse and normalise `text`. With `default_tag`, a reference with neither
    tag nor digest gets ``latest``. Raises InvalidArgumentError."""
    if not isinstance(text, str) or not text:
        raise InvalidArgumentError("parse reference: empty reference")
    if _ANCHORED_ID.match(text):
        raise InvalidArgumentError(
            f"parse reference {text!r}: cannot use a 64-byte hexadecimal string as a "
            "repository name (it is an image id)"
        )
    rest = text
    digest: Digest | None = None
    if "@" in rest:
        rest, _, dg = rest.partition("@")
        try:
            validate(dg)
        except InvalidArgumentError as exc:
            raise InvalidArgumentError(f"parse reference {text!r}: {exc.message}") from None
        digest = Digest(dg)
    tag: str | None = None
    # a ":" after the last "/" separates the tag (a ":" before it is a port)
    colon = rest.rfind(":")
    if colon > rest.rfind("/"):
        rest, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidArgumentError(f"parse reference {text!r}: invalid tag {tag!r}")
    if not rest:
        raise InvalidArgumentError(f"parse reference {text!r}: invalid reference format")
    domain, path = _split_domain(rest)
    if not _DOMAIN_RE.match(domain):
        raise InvalidArgumentError(f"parse reference {text!r}: invalid domain {domain!r}")
    if path.lower() != path and _PATH_RE.match(path.lower()):
        raise InvalidArgumentError(
            f"parse reference {text!r}: repository name must be lowercase"
        )
    if not _PATH_RE.match(path):
        raise InvalidArgumentError(f"parse reference {text!r}: invalid reference format")
    if len(f"{domain}/{path}") > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgumentError(
            f"parse reference {text!r}: repository name must not be more than "
            f"{NAME_TOTAL_LENGTH_MAX} characters"
        )
    if tag is None and digest is None and default_tag:
        tag = DEFAULT_TAG
    return Reference(domain, path, tag, digest)


def is_reference(text: str) -> bool:
    try:
        parse(text)
    except InvalidArgumentError:
        return False
    return True
