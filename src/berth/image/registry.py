"""A client for the OCI distribution API (registry v2), over httpx.

httpx was chosen over aiohttp: the engine and CLI are synchronous, a thread
pool gives parallel layer downloads without an event loop (``import asyncio``
alone costs ~50 ms here), and httpx offers streaming bodies, connection pools,
HTTP/1.1 keep-alive, redirects that drop ``Authorization`` across origins, and
a pluggable transport that the unit tests fake. Authentication decisions are
made by the sans-I/O `berth.image.auth`.

Every byte is verified: manifests fetched by digest are hashed, blobs are
committed to the content store only when size and digest match.
"""

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import urlencode, urljoin

import httpx

from berth import __version__
from berth.errors import (
    BerthError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)
from berth.image import auth as au
from berth.image.content import ContentStore, DigestMismatchError
from berth.oci import digest as dg
from berth.oci import image as oi
from berth.oci.digest import Digest

log = logging.getLogger(__name__)

DOCKER_HUB_HOST = "registry-1.docker.io"
LOOPBACK = ("localhost", "127.0.0.1", "::1", "[::1]")
TRANSIENT_STATUS = (429, 500, 502, 503, 504)
MAX_MANIFEST = 4 << 20


@dataclass(frozen=True)
class RegistryOptions:
    insecure_registries: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()  # for docker.io, tried in order before it
    credentials_path: str | None = None
    credentials: dict[str, au.Credentials] = field(default_factory=dict)  # override per host
    timeout: float = 60.0
    retries: int = 3
    backoff: float = 0.2
    transport: httpx.BaseTransport | None = None  # a fake, for unit tests only
    # CA certificates (*.crt) and client certificates (*.cert + *.key) per registry
    # host, in Docker's layout: <dir>/<host[:port]>/
    certs_dirs: tuple[str, ...] = ("/etc/berth/certs.d", "/etc/docker/certs.d")
    loopback_insecure: bool = True  # as Docker: 127.0.0.0/8 and localhost may use HTTP


def api_host(domain: str) -> str:
    return DOCKER_HUB_HOST if domain in ("docker.io", "index.docker.io") else domain


def is_insecure(domain: str, options: RegistryOptions) -> bool:
    host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
    if domain in options.insecure_registries or host in options.insecure_registries:
        return True
    return options.loopback_insecure and (host in LOOPBACK or host.startswith("127."))


def tls_config(domain: str, options: RegistryOptions) -> ssl.SSLContext | bool:
    """What to verify the registry's certificate with: the system's CAs plus
    any in its certs.d directory; a client certificate from there too. An
    insecure registry is not verified (as Docker does)."""
    if is_insecure(domain, options):
        return False
    for base in options.certs_dirs:
        d = os.path.join(base, domain)
        if not os.path.isdir(d):
            continue
        ctx = ssl.create_default_context()
        for name in sorted(os.listdir(d)):
            path = os.path.join(d, name)
            if name.endswith(".crt"):
                ctx.load_verify_locations(cafile=path)
            elif name.endswith(".cert"):
                key = path[: -len(".cert")] + ".key"
                if not os.path.exists(key):
                    raise InvalidArgumentError(f"registry {domain}: client certificate {path} "
                                               f"without its key {key}")
                ctx.load_cert_chain(path, key)
        return ctx
    return True


class RegistryError(UnavailableError):
    """A registry answered something berth cannot use, or did not answer."""


class Registry:
    """One registry host. Thread-safe: layer downloads share it."""

    def __init__(self, domain: str, options: RegistryOptions | None = None) -> None:
        self.domain = domain
        self.options = options or RegistryOptions()
        self.host = api_host(domain)
        self._scheme: str | None = None
        self._lock = threading.Lock()
        self._tokens: dict[str, au.Token] = {}
        self._challenge: au.Challenge | None = None
        self._creds: au.Credentials | None = None
        self.client = httpx.Client(
            timeout=httpx.Timeout(self.options.timeout, connect=10.0),
            follow_redirects=True,
            headers={"User-Agent": f"berth/{__version__}"},
            transport=self.options.transport,
            verify=tls_config(domain, self.options),
            limits=httpx.Limits(max_connections=16, max_keepalive_connections=16),
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # connection --------------------------------------------------------------------------

    @property
    def credentials(self) -> au.Credentials:
        if self._creds is None:
            if self.domain in self.options.credentials:
                self._creds = self.options.credentials[self.domain]
            else:
                from berth.image import credentials

                self._creds = credentials.lookup(self.domain, self.options.credentials_path)
        return self._creds

    @property
    def base(self) -> str:
        if self._scheme is None:
            with self._lock:
                if self._scheme is None:
                    self._scheme = self._probe_scheme()
        return f"{self._scheme}://{self.host}"

    def _probe_scheme(self) -> str:
        if not is_insecure(self.domain, self.options):
            return "https"
        # as Docker: an insecure registry is tried over HTTPS first, then HTTP
        try:
            self.client.get(f"https://{self.host}/v2/", timeout=5.0)
            return "https"
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
                httpx.ConnectTimeout):
            return "http"

    def _scope_key(self, scopes: list[str]) -> str:
        return " ".join(sorted(scopes))

    def _auth_header(self, scopes: list[str]) -> dict[str, str]:
        ch = self._challenge
        if ch is None:
            return {}
        if ch.scheme == "basic":
            creds = self.credentials
            return {} if creds.anonymous else {"Authorization": au.basic_header(creds)}
        key = self._scope_key(scopes)
        token = self._tokens.get(key)
        if token is None or not token.valid():
            token = self._fetch_token(ch, scopes)
            self._tokens[key] = token
        return {"Authorization": f"Bearer {token.value}"}

    def _fetch_token(self, ch: au.Challenge, scopes: list[str]) -> au.Token:
        req = au.token_request(ch, scopes, self.credentials)
        try:
            if req.method == "POST":
                r = self.client.post(req.url, data=req.form, headers=req.headers)
            else:
                r = self.client.get(req.url, headers=req.headers)
        except httpx.TransportError as exc:
            raise RegistryError(f"authenticate to {self.domain}: token server: {exc}") from exc
        return au.parse_token_response(r.status_code, r.content, self.domain)

    def _handle_401(self, response: httpx.Response, what: str) -> bool:
        """Learn the challenge of a 401; True when a retry may now succeed."""
        challenges = au.parse_challenges(response.headers.get("www-authenticate", ""))
        ch = au.choose(challenges)
        if ch is None:
            raise PermissionDeniedError(f"{what}: unauthorized, and no usable challenge")
        first = self._challenge is None or self._challenge.params != ch.params
        if ch.scheme == "basic" and self.credentials.anonymous:
            raise PermissionDeniedError(f"{what}: authentication required (berth login "
                                        f"{self.domain})")
        self._challenge = ch
        self._tokens.clear()
        return first

    def request(self, method: str, url: str, scopes: list[str], what: str,
                headers: dict[str, str] | None = None, content: bytes | None = None,
                body: Callable[[], Iterator[bytes]] | None = None,
                ok: tuple[int, ...] = (200,), stream: bool = False) -> httpx.Response:
        """Send with auth and retries. Returns a response whose status is in
        `ok` or 404 (the caller decides); a streamed one must be closed."""
        if not url.startswith(("http://", "https://")):
            url = self.base + url
        attempts = self.options.retries + 1
        auth_retried = False
        last: str = ""
        attempt = 0
        while attempt < attempts:
            attempt += 1
            h = dict(headers or {})
            h.update(self._auth_header(scopes))
            data = body() if body is not None else content
            try:
                req = self.client.build_request(method, url, headers=h, content=data)
                r = self.client.send(req, stream=True)
            except httpx.TransportError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise RegistryError(
                        f"{what}: the TLS certificate of {self.host} is not trusted ({exc}); "
                        f"add its CA as {self.options.certs_dirs[-1]}/{self.domain}/ca.crt, "
                        "or allow it with --insecure-registry"
                    ) from exc
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                self._sleep(attempt)
                continue
            if r.status_code == 401 and not auth_retried:
                r.read()
                r.close()
                auth_retried = True
                self._handle_401(r, what)
                attempt -= 1
                continue
            if r.status_code in TRANSIENT_STATUS:
                r.read()
                r.close()
                last = f"server answered {r.status_code}"
                self._sleep(attempt)
                continue
            if r.status_code in ok or r.status_code == 404:
                if not stream:
                    r.read()
                    r.close()
                return r
            r.read()
            r.close()
            raise _status_error(r, what)
        raise RegistryError(f"{what}: {last} (after {attempts} attempts)")

    def _sleep(self, attempt: int) -> None:
        if attempt <= self.options.retries:
            time.sleep(self.options.backoff * (2 ** (attempt - 1)))

    # API ---------------------------------------------------------------------------------

    def ping(self) -> None:
        self.request("GET", "/v2/", [], f"ping registry {self.domain}")

    def get_manifest(self, repo: str, ref: str) -> tuple[bytes, str, Digest]:
        """(bytes, media type, digest) of manifest `ref` (a tag or a digest)."""
        what = f"fetch manifest {self.domain}/{repo}:{ref}" if not dg.is_digest(ref) else \
            f"fetch manifest {self.domain}/{repo}@{ref}"
        r = self.request("GET", f"/v2/{repo}/manifests/{ref}", [au.repository_scope(repo)],
                         what, headers={"Accept": ", ".join(
                             (*oi.MANIFEST_ACCEPT, oi.DOCKER_SCHEMA1_SIGNED, oi.DOCKER_SCHEMA1))})
        if r.status_code == 404:
            raise NotFoundError(f"{what}: manifest unknown", repository=repo, reference=ref)
        data = r.content
        if len(data) > MAX_MANIFEST:
            raise InvalidArgumentError(f"{what}: manifest of {len(data)} bytes is too large")
        media_type = oi.media_type_of(data, r.headers.get("content-type", "").split(";")[0])
        oi.check_not_schema1(media_type, what)
        if dg.is_digest(ref):
            actual = dg.from_bytes(data, Digest(ref).algorithm)
            if actual != ref:
                raise DigestMismatchError(f"{what}: content digest is {actual}", digest=ref)
            return data, media_type, Digest(ref)
        return data, media_type, dg.from_bytes(data)

    def blob_exists(self, repo: str, digest: str, scopes: list[str] | None = None) -> bool:
        r = self.request("HEAD", f"/v2/{repo}/blobs/{digest}",
                         scopes or [au.repository_scope(repo)],
                         f"check blob {digest} in {self.domain}/{repo}")
        return r.status_code == 200

    def fetch_blob(self, repo: str, desc: oi.Descriptor, store: ContentStore,
                   progress: Callable[[int], None] | None = None) -> Digest:
        """Download blob `desc` into the store, resuming a partial ingest and
        retrying a broken transfer; verify size and digest."""
        digest = Digest(desc.digest)
        what = f"pull blob {digest} from {self.domain}/{repo}"
        with store.writer(f"pull-{digest}", digest, desc.size) as w:
            if w.committed:
                if progress:
                    progress(desc.size)
                return digest
            if w.offset > desc.size:
                w.truncate()
            if progress and w.offset:
                progress(w.offset)
            failures, last = 0, ""
            while w.offset < desc.size or desc.size == 0:
                headers = {"Range": f"bytes={w.offset}-"} if w.offset else {}
                r = self.request("GET", f"/v2/{repo}/blobs/{digest}",
                                 [au.repository_scope(repo)], what, headers=headers,
                                 ok=(200, 206), stream=True)
                try:
                    if r.status_code == 404:
                        raise NotFoundError(f"{what}: blob unknown", digest=digest)
                    if r.status_code == 200 and w.offset:
                        if progress:
                            progress(-w.offset)
                        w.truncate()  # the server ignored Range: start again
                    for chunk in r.iter_bytes():
                        if w.offset + len(chunk) > desc.size:
                            raise DigestMismatchError(
                                f"{what}: more data than the expected {desc.size} bytes",
                                digest=digest)
                        w.write(chunk)
                        if progress:
                            progress(len(chunk))
                except httpx.TransportError as exc:
                    failures += 1
                    last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                    log.info("%s: transfer broken at %d bytes: %s", what, w.offset, last)
                    if failures > self.options.retries:
                        raise RegistryError(
                            f"{what}: transfer broken at {w.offset} of {desc.size} bytes: "
                            f"{last} (after {failures} attempts)", digest=digest
                        ) from exc
                    self._sleep(failures)
                    continue
                finally:
                    r.close()
                if w.offset < desc.size:
                    failures += 1
                    last = "connection closed early"
                    if failures > self.options.retries:
                        raise RegistryError(
                            f"{what}: truncated at {w.offset} of {desc.size} bytes "
                            f"(after {failures} attempts)", digest=digest)
                    self._sleep(failures)
                    continue
                break
            return w.commit()

    def upload_blob(self, repo: str, digest: str, size: int,
                    chunks: Callable[[], Iterator[bytes]],
                    mount_from: str | None = None) -> str:
        """Push a blob unless the registry has it; 'exists', 'mounted' or 'pushed'."""
        scopes = [au.repository_scope(repo, ("pull", "push"))]
        if mount_from:
            scopes.append(au.repository_scope(mount_from))
        what = f"push blob {digest} to {self.domain}/{repo}"
        if self.blob_exists(repo, digest, scopes):
            return "exists"
        params = {"mount": digest, "from": mount_from} if mount_from else {}
        url = f"/v2/{repo}/blobs/uploads/" + (f"?{urlencode(params)}" if params else "")
        r = self.request("POST", url, scopes, what, ok=(201, 202))
        if r.status_code == 201 and mount_from:
            return "mounted"
        if r.status_code != 202:
            raise _status_error(r, what)
        location = r.headers.get("location")
        if not location:
            raise RegistryError(f"{what}: upload started without a Location")
        location = urljoin(self.base + "/", location)
        sep = "&" if "?" in location else "?"
        r = self.request("PUT", f"{location}{sep}{urlencode({'digest': digest})}", scopes, what,
                         headers={"Content-Type": "application/octet-stream",
                                  "Content-Length": str(size)},
                         body=chunks, ok=(201, 204))
        if r.status_code == 404:
            raise _status_error(r, what)
        return "pushed"

    def put_manifest(self, repo: str, ref: str, data: bytes, media_type: str) -> Digest:
        what = f"push manifest {self.domain}/{repo}:{ref}"
        r = self.request("PUT", f"/v2/{repo}/manifests/{ref}",
                         [au.repository_scope(repo, ("pull", "push"))], what,
                         headers={"Content-Type": media_type}, content=data, ok=(201, 200))
        if r.status_code == 404:
            raise _status_error(r, what)
        digest = dg.from_bytes(data)
        said = r.headers.get("docker-content-digest")
        if said and said != digest:
            raise RegistryError(f"{what}: registry computed digest {said}, not {digest}")
        return digest


def _status_error(r: httpx.Response, what: str) -> BerthError:
    detail = ""
    try:
        doc = r.json()
        errs = doc.get("errors") or []
        if errs:
            detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errs)
    except ValueError:
        detail = r.text[:200]
    msg = f"{what}: {r.status_code} {r.reason_phrase.lower()}" + (f" ({detail})" if detail else "")
    if r.status_code in (401, 403):
        return PermissionDeniedError(msg)
    if r.status_code == 404:
        return NotFoundError(msg)
    if 400 <= r.status_code < 500:
        return InvalidArgumentError(msg)
    return RegistryError(msg)
