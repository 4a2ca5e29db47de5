"""A registry that lies or breaks: a real HTTP server on 127.0.0.1 (in a
thread) answering with wrong digests, truncated blobs, 500s and schema 1."""

import hashlib
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from berth.errors import InvalidArgumentError
from berth.image.content import DigestMismatchError
from berth.image.layers import LayerError
from berth.image.registry import RegistryError
from berth.oci import image as oi
from tests.integration.image.test_pull import service
from tests.unit.image.test_layers import make_tar


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Hostile:
    def __init__(self, layer_entries=None):
        gz, raw = make_tar(layer_entries or [("hello", "file", {"data": b"x" * 200_000})],
                           "gzip")
        self.layer, self.diff_id = gz, sha(raw)
        self.config = json.dumps({"architecture": "amd64", "os": "linux",
                                  "rootfs": {"type": "layers", "diff_ids": [self.diff_id]},
                                  "config": {"Cmd": ["sh"]}}).encode()
        self.layer_digest = sha(self.layer)
        self.blob_override: dict[str, bytes] = {}
        self.fail_500 = 0  # answer 500 to this many blob requests
        self.cut = 0  # close this many blob responses half-way
        self.requests: list[tuple[str, str]] = []
        self.auth_seen: list[str | None] = []
        self.manifest_body: bytes | None = None
        self.redirect_to: str | None = None  # blob GETs answered with a 307 to there
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, code, body=b"", ctype="application/json", extra=None):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def do_HEAD(self):
                self.do_GET()

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range", "")))
                if self.path == "/v2/":
                    return self.send(200, b"{}")
                if "/manifests/" in self.path:
                    body = server.manifest()
                    return self.send(200, body, oi.OCI_MANIFEST)
                if "/blobs/" in self.path and server.redirect_to and self.command == "GET" \
                        and not self.path.startswith("/storage/"):
                    digest = self.path.rsplit("/", 1)[1]
                    return self.send(307, b"", extra={
                        "Location": f"{server.redirect_to}/storage/blobs/{digest}"})
                if "/blobs/" in self.path:
                    server.auth_seen.append(self.headers.get("Authorization"))
                    digest = self.path.rsplit("/", 1)[1]
                    data = server.blobs().get(digest)
                    if data is None:
                        return self.send(404, b'{"errors":[{"code":"BLOB_UNKNOWN"}]}')
                    if digest == server.layer_digest and server.fail_500 > 0:
                        server.fail_500 -= 1
                        return self.send(500, b"boom")
                    rng = self.headers.get("Range", "")
                    start = int(rng[6:].split("-")[0]) if rng.startswith("bytes=") else 0
                    if digest == server.layer_digest and server.cut > 0:
                        server.cut -= 1
                        self.send_response(206 if start else 200)
                        self.send_header("Content-Length", str(len(data) - start))
                        self.end_headers()
                        self.wfile.write(data[start : start + (len(data) - start) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    if start:
                        return self.send(206, data[start:], "application/octet-stream",
                                         {"Content-Range": f"bytes {start}-{len(data) - 1}/"
                                          f"{len(data)}"})
                    return self.send(200, data, "application/octet-stream")
                return self.send(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def blobs(self):
        b = {sha(self.config): self.config, self.layer_digest: self.layer}
        b.update(self.blob_override)
        return b

    def manifest(self):
        if self.manifest_body is not None:
            return self.manifest_body
        return json.dumps({
            "schemaVersion": 2, "mediaType": oi.OCI_MANIFEST,
            "config": {"mediaType": oi.OCI_CONFIG, "digest": sha(self.config),
                       "size": len(self.config)},
            "layers": [{"mediaType": oi.OCI_LAYER_GZIP, "digest": self.layer_digest,
                        "size": len(self.layer)}]}).encode()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def hostile():
    servers = []

    def make(**kw):
        s = Hostile(**kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


def assert_nothing_kept(svc, digest=None):
    assert svc.store.list() == []
    if digest:
        assert not svc.content.exists(digest)
    assert [i for i in svc.snapshots.walk() if i.kind != "committed"] == []


def test_blob_digest_mismatch(workdir, hostile):
    h = hostile()
    h.blob_override[h.layer_digest] = h.layer[:-1] + bytes([h.layer[-1] ^ 1])
    svc = service(workdir)
    with pytest.raises(DigestMismatchError, match="content digest is"):
        svc.pull(f"{h.host}/x/y:latest")
    assert_nothing_kept(svc, h.layer_digest)


def test_truncated_blob_retried_then_clear_error(workdir, hostile):
    h = hostile()
    h.cut = 100
    svc = service(workdir, retries=2)
    with pytest.raises(RegistryError, match=r"(truncated|transfer broken).*after 3 attempts"):
        svc.pull(f"{h.host}/x/y:latest")
    assert_nothing_kept(svc, h.layer_digest)


def test_connection_closed_mid_blob_resumes_with_range(workdir, hostile):
    h = hostile()
    h.cut = 1
    svc = service(workdir)
    image = svc.pull(f"{h.host}/x/y:latest")
    assert image.tags
    ranges = [r for p, r in h.requests if p.endswith(h.layer_digest) and r]
    assert ranges and ranges[0] != "bytes=0-", h.requests


def test_500_retried_then_clear_error(workdir, hostile):
    h = hostile()
    h.fail_500 = 100
    svc = service(workdir, retries=2)
    with pytest.raises(RegistryError, match=r"server answered 500 .after 3 attempts"):
        svc.pull(f"{h.host}/x/y:latest")
    assert_nothing_kept(svc, h.layer_digest)
    h.fail_500 = 1
    assert service(workdir, "again", retries=2).pull(f"{h.host}/x/y:latest").tags


def test_schema1_refused(workdir, hostile):
    h = hostile()
    h.manifest_body = json.dumps({"schemaVersion": 1, "name": "x/y", "tag": "latest",
                                  "fsLayers": [], "history": []}).encode()
    with pytest.raises(InvalidArgumentError, match="schema 1 is deprecated"):
        service(workdir).pull(f"{h.host}/x/y:latest")


def test_manifest_by_digest_verified(workdir, hostile):
    h = hostile()
    wrong = sha(b"something else")
    with pytest.raises(DigestMismatchError):
        service(workdir).pull(f"{h.host}/x/y@{wrong}")


def test_diff_id_mismatch(workdir, hostile):
    h = hostile()
    h.config = h.config.replace(h.diff_id.encode(), sha(b"other").encode())
    svc = service(workdir)
    with pytest.raises(DigestMismatchError, match="diff ID"):
        svc.pull(f"{h.host}/x/y:latest")
    assert_nothing_kept(svc)


def test_hostile_layer_from_registry(workdir, hostile):
    h = hostile(layer_entries=[("ok", "file"), ("../../../../escape", "file",
                                                {"data": b"pwned"})])
    svc = service(workdir)
    with pytest.raises(LayerError, match="escapes"):
        svc.pull(f"{h.host}/x/y:latest")
    assert_nothing_kept(svc)
    assert not any("escape" in n for n in os.listdir(workdir))


def test_blob_redirect_followed(workdir, hostile):
    h, storage = hostile(), hostile()
    storage.layer, storage.layer_digest = h.layer, h.layer_digest
    storage.config = h.config
    h.redirect_to = f"http://{storage.host}"
    svc = service(workdir)
    image = svc.pull(f"{h.host}/x/y:latest")
    assert image.tags
    assert any(p.startswith("/storage/blobs/") for p, _ in storage.requests)
    assert not any(p.startswith("/storage/") for p, _ in h.requests)
