"""Registry authentication, sans-I/O: challenges, scopes, token requests and
responses, Basic credentials. The registry client does the I/O and asks this
module what to send next.

The flow (distribution spec, token auth)::

    GET /v2/<name>/manifests/<ref>         -> 401, WWW-Authenticate: Bearer
                                              realm="https://auth/token",
                                              service="registry",
                                              scope="repository:<name>:pull"
    GET <realm>?service=..&scope=..        -> {"token": "..."} (with Basic
                                              credentials when the user has any)
    GET /v2/<name>/manifests/<ref>         -> 200, with "Authorization: Bearer <token>"

A registry may ask for Basic auth instead (``WWW-Authenticate: Basic realm=..``).
"""

import base64
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

import msgspec

from berth.errors import InvalidArgumentError, PermissionDeniedError


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-case: "bearer" or "basic"
    params: dict[str, str]


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""  # an OAuth2 refresh token (docker login with a token)

    @property
    def anonymous(self) -> bool:
        return not (self.username or self.identity_token)


ANONYMOUS = Credentials()


def parse_challenges(header: str) -> list[Challenge]:
    """Parse a WWW-Authenticate header (RFC 7235): one or more challenges,
    each a scheme and comma-separated ``key=value`` or ``key="quoted"`` params."""
    out: list[Challenge] = []
    i, n = 0, len(header)
    scheme: str | None = None
    params: dict[str, str] = {}

    def skip_ws(i: int) -> int:
        while i < n and header[i] in " \t":
            i += 1
        return i

    while True:
        i = skip_ws(i)
        while i < n and header[i] == ",":
            i = skip_ws(i + 1)
        if i >= n:
            break
        start = i
        while i < n and header[i] not in " \t,=":
            i += 1
        token = header[start:i]
        j = skip_ws(i)
        if j < n and header[j] == "=" and scheme is not None:
            # key=value param of the current challenge
            j = skip_ws(j + 1)
            if j < n and header[j] == '"':
                j += 1
                value = []
                while j < n and header[j] != '"':
                    if header[j] == "\\" and j + 1 < n:
                        j += 1
                    value.append(header[j])
                    j += 1
                if j >= n:
                    raise InvalidArgumentError(
                        f"parse WWW-Authenticate {header!r}: unterminated quoted string"
                    )
                j += 1
                params[token.lower()] = "".join(value)
            else:
                vstart = j
                while j < n and header[j] not in " \t,":
                    j += 1
                params[token.lower()] = header[vstart:j]
            i = j
        else:
            if scheme is not None:
                out.append(Challenge(scheme, params))
            if not token:
                raise InvalidArgumentError(f"parse WWW-Authenticate {header!r}: bad syntax")
            scheme, params = token.lower(), {}
            i = j
    if scheme is not None:
        out.append(Challenge(scheme, params))
    return out


def repository_scope(name: str, actions: tuple[str, ...] = ("pull",)) -> str:
    return f"repository:{name}:{','.join(actions)}"


def basic_header(creds: Credentials) -> str:
    raw = f"{creds.username}:{creds.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class TokenRequest:
    """What to send to the token server (GET with query; or POST form for a
    refresh token, as Docker does with an identity token)."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    form: dict[str, str] | None = None


def token_request(challenge: Challenge, scopes: list[str], creds: Credentials) -> TokenRequest:
    realm = challenge.params.get("realm")
    if not realm:
        raise InvalidArgumentError("bearer challenge without a realm")
    if not realm.startswith(("https://", "http://")):
        raise InvalidArgumentError(f"bearer challenge realm {realm!r}: not an http(s) URL")
    service = challenge.params.get("service", "")
    all_scopes = list(dict.fromkeys([*scopes, *challenge.params.get("scope", "").split()]))
    all_scopes = [s for s in all_scopes if s]
    if creds.identity_token:
        form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token,
                "client_id": "berth", "service": service, "scope": " ".join(all_scopes)}
        return TokenRequest("POST", realm, {}, form)
    query = [("service", service)] if service else []
    query += [("scope", s) for s in all_scopes]
    if not creds.anonymous:
        query.append(("account", creds.username))
    sep = "&" if "?" in realm else "?"
    url = realm + (sep + urlencode(query) if query else "")
    headers = {} if creds.anonymous else {"Authorization": basic_header(creds)}
    return TokenRequest("GET", url, headers)


class _TokenResponse(msgspec.Struct):
    token: str = ""
    access_token: str = ""
    expires_in: int = 60
    issued_at: str | None = None


@dataclass(frozen=True)
class Token:
    value: str
    expires: float  # monotonic seconds

    def valid(self, now: float | None = None) -> bool:
        return (now if now is not None else time.monotonic()) < self.expires


def parse_token_response(status: int, body: bytes, registry: str) -> Token:
    if status in (401, 403):
        raise PermissionDeniedError(
            f"authenticate to {registry}: token server refused the credentials ({status})",
            registry=registry,
        )
    if status != 200:
        raise PermissionDeniedError(
            f"authenticate to {registry}: token server answered {status}", registry=registry
        )
    try:
        r = msgspec.json.decode(body, type=_TokenResponse)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise PermissionDeniedError(
            f"authenticate to {registry}: bad token response: {exc}"
        ) from None
    value = r.token or r.access_token
    if not value:
        raise PermissionDeniedError(f"authenticate to {registry}: token response has no token")
    # a minimum of 60 s, as the spec says; refresh a little early
    lifetime = max(r.expires_in, 60)
    return Token(value, time.monotonic() + lifetime - 5)


def choose(challenges: list[Challenge]) -> Challenge | None:
    """Bearer is preferred over Basic, as Docker does."""
    for scheme in ("bearer", "basic"):
        for c in challenges:
            if c.scheme == scheme:
                return c
    return None
