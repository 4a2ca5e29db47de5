"""A real registry (Debian's docker-registry, the CNCF distribution server) on
127.0.0.1, plain, with htpasswd Basic auth, or with a token server for the
Bearer flow; and OCI layouts made with umoci for skopeo to push there."""

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

USER, PASSWORD = "berth", "s3cret-pw"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues registry JWTs (RS256, x5c header) for user berth, as a real
    token server does: GET /token?service=..&scope=.. with Basic credentials,
    or anonymously for pull-only scopes when `anonymous_pull`."""

    def __init__(self, directory: str, service: str, issuer: str) -> None:
        self.key = os.path.join(directory, "token.key")
        self.cert = os.path.join(directory, "token.crt")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.key,
             "-out", self.cert, "-days", "2", "-subj", "/CN=berth-test-token"],
            check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", self.cert, "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self.x5c = base64.b64encode(der).decode()
        self.service, self.issuer = service, issuer
        self.requests: list[dict] = []
        self.anonymous_pull = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                q = parse_qs(urlparse(self.path).query)
                user = ""
                authz = self.headers.get("Authorization", "")
                if authz.startswith("Basic "):
                    u, _, p = base64.b64decode(authz[6:]).decode().partition(":")
                    if (u, p) != (USER, PASSWORD):
                        self.send_response(401)
                        self.end_headers()
                        return
                    user = u
                scopes = [s for v in q.get("scope", []) for s in v.split()]
                server.requests.append({"user": user, "scopes": scopes,
                                        "service": q.get("service", [""])[0]})
                access = []
                for s in scopes:
                    kind, name, actions = s.split(":")
                    acts = actions.split(",") if user else (
                        ["pull"] if server.anonymous_pull and "pull" in actions else [])
                    access.append({"type": kind, "name": name, "actions": acts})
                body = json.dumps({"token": server.sign(user, access), "expires_in": 300})
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body.encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, user: str, access: list) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self.x5c]}
        claims = {"iss": self.issuer, "sub": user, "aud": self.service, "exp": now + 300,
                  "nbf": now - 10, "iat": now, "jti": hashlib.sha1(os.urandom(8)).hexdigest(),
                  "access": access}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key],
                             input=signing_input.encode(), check=True,
                             capture_output=True).stdout
        return f"{signing_input}.{b64url(sig)}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class RegistryServer:
    def __init__(self, workdir: str, auth: str | None = None, tls: bool = False) -> None:
        self.dir = os.path.join(workdir, f"registry-{auth or 'plain'}{'-tls' if tls else ''}")
        os.makedirs(self.dir)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.token: TokenServer | None = None
        self.ca: str | None = None
        tls_cfg = ""
        if tls:
            self.ca = os.path.join(self.dir, "registry.crt")
            key = os.path.join(self.dir, "registry.key")
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-keyout", key, "-out", self.ca, "-days", "2", "-subj",
                            "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                           check=True, capture_output=True)
            tls_cfg = f"  tls:\n    certificate: {self.ca}\n    key: {key}\n"
        auth_cfg = ""
        if auth == "htpasswd":
            htpasswd = os.path.join(self.dir, "htpasswd")
            subprocess.run(["htpasswd", "-Bbc", htpasswd, USER, PASSWORD], check=True,
                           capture_output=True)
            auth_cfg = f"auth:\n  htpasswd:\n    realm: berth-test\n    path: {htpasswd}\n"
        elif auth == "token":
            self.token = TokenServer(self.dir, "berth-registry", "berth-issuer")
            auth_cfg = (f"auth:\n  token:\n    realm: {self.token.realm}\n"
                        f"    service: berth-registry\n    issuer: berth-issuer\n"
                        f"    rootcertbundle: {self.token.cert}\n")
        config = os.path.join(self.dir, "config.yml")
        with open(config, "w") as f:
            f.write(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {self.dir}/data\n"
                "  delete:\n    enabled: true\n"
                f"http:\n  addr: {self.host}\n" + tls_cfg + auth_cfg)
        self.log = open(os.path.join(self.dir, "registry.log"), "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["docker-registry", "serve", config], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        import ssl

        unverified = ssl._create_unverified_context()
        while True:
            try:
                urllib.request.urlopen(f"{'https' if tls else 'http'}://{self.host}/v2/",
                                       timeout=1, context=unverified if tls else None)
                break
            except urllib.error.HTTPError:
                break  # 401: up, and asking for credentials
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    with open(os.path.join(self.dir, "registry.log")) as f:
                        raise RuntimeError(f"docker-registry did not start: {f.read()}")
                time.sleep(0.05)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        if self.token:
            self.token.close()

    def skopeo_creds(self) -> list[str]:
        return [] if self.token is None and not os.path.exists(
            os.path.join(self.dir, "htpasswd")) else ["--dest-creds", f"{USER}:{PASSWORD}"]

    def push_layout(self, layout: str, tag: str, repo: str, rtag: str, all: bool = False):
        cmd = ["skopeo", "copy", "-q", "--dest-tls-verify=false", *self.skopeo_creds()]
        if all:
            cmd.append("--all")
        subprocess.run([*cmd, f"oci:{layout}:{tag}", f"docker://{self.host}/{repo}:{rtag}"],
                       check=True, capture_output=True, timeout=120)


@pytest.fixture
def registry_factory(workdir):
    servers = []

    def make(auth=None, tls=False):
        s = RegistryServer(workdir, auth, tls)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


@pytest.fixture
def registry(registry_factory):
    return registry_factory()


def umoci(*args):
    subprocess.run(["umoci", *args], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="session")
def oci_layout(tmp_path_factory, busybox_rootfs):
    """An OCI layout made once by umoci, with tags: ``v1`` (the busybox rootfs
    plus a layer adding /etc/marker), ``amd64`` and ``arm64`` (tiny images
    with an /arch file) and ``multi`` (an image index over those two)."""
    work = str(tmp_path_factory.mktemp("ocilayout"))
    layout = os.path.join(work, "oci")
    make_umoci_image(work, busybox_rootfs, layout, "v1", extra={"etc/marker": b"second layer\n"})
    empty = os.path.join(work, "empty")
    os.makedirs(empty)
    for arch in ("amd64", "arm64"):
        make_umoci_image(work, empty, layout, arch, arch, extra={"arch": f"{arch}\n".encode()})
    add_index(layout, [("amd64", "linux/amd64"), ("arm64", "linux/arm64/v8")], "multi")
    return layout


def make_umoci_image(workdir: str, rootfs: str, layout: str, tag: str,
                     arch: str = "amd64", extra: dict[str, bytes] | None = None,
                     cmd: str = "sh") -> str:
    """An OCI layout image made by umoci: the busybox rootfs as one layer, plus
    a second layer with `extra` files when given."""
    if not os.path.isdir(layout):
        umoci("init", "--layout", layout)
    umoci("new", "--image", f"{layout}:{tag}")
    bundle = os.path.join(workdir, f"bundle-{tag}")
    umoci("unpack", "--image", f"{layout}:{tag}", bundle)
    subprocess.run(["cp", "-a", f"{rootfs}/.", f"{bundle}/rootfs/"], check=True)
    umoci("repack", "--refresh-bundle", "--image", f"{layout}:{tag}", bundle)
    if extra:
        for name, data in extra.items():
            path = os.path.join(bundle, "rootfs", name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        umoci("repack", "--image", f"{layout}:{tag}", bundle)
    umoci("config", "--image", f"{layout}:{tag}", "--architecture", arch, "--os", "linux",
          "--config.cmd", cmd, "--config.env", "PATH=/bin:/usr/bin")
    shutil.rmtree(bundle)
    return layout


def add_index(layout: str, tags_platforms: list[tuple[str, str]], name: str) -> str:
    """Add to `layout` an image index `name` over the manifests tagged in it."""
    with open(os.path.join(layout, "index.json")) as f:
        idx = json.load(f)
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in idx["manifests"]}
    manifests = []
    for tag, platform in tags_platforms:
        m = dict(by_tag[tag])
        m.pop("annotations", None)
        os_, arch, *variant = platform.split("/")
        m["platform"] = {"os": os_, "architecture": arch, **({"variant": variant[0]}
                                                               if variant else {})}
        manifests.append(m)
    blob = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": manifests}).encode()
    digest = hashlib.sha256(blob).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(blob)
    idx["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                             "digest": f"sha256:{digest}", "size": len(blob),
                             "annotations": {"org.opencontainers.image.ref.name": name}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(idx, f)
    return f"sha256:{digest}"
