"""Auth challenges and negotiation, pure; the client against a fake transport."""

import base64
import json
import os

import httpx
import pytest

from berth.errors import InvalidArgumentError, PermissionDeniedError
from berth.image import auth as au
from berth.image import credentials
from berth.image.registry import Registry, RegistryOptions


def test_parse_challenges():
    [c] = au.parse_challenges(
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/busybox:pull"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.docker.io/token",
                        "service": "registry.docker.io",
                        "scope": "repository:library/busybox:pull"}
    cs = au.parse_challenges('Basic realm="x, y", Bearer realm=https://a/t, error=invalid_token')
    assert [c.scheme for c in cs] == ["basic", "bearer"]
    assert cs[0].params == {"realm": "x, y"}
    assert cs[1].params == {"realm": "https://a/t", "error": "invalid_token"}
    assert au.choose(cs).scheme == "bearer"
    assert au.parse_challenges('Basic realm="a\\"b"')[0].params["realm"] == 'a"b'
    with pytest.raises(InvalidArgumentError):
        au.parse_challenges('Bearer realm="unterminated')


def test_token_request_shapes():
    ch = au.Challenge("bearer", {"realm": "https://auth/token", "service": "reg",
                                 "scope": "repository:a:pull"})
    anon = au.token_request(ch, ["repository:a:pull", "repository:b:pull"], au.ANONYMOUS)
    assert anon.method == "GET" and "Authorization" not in anon.headers
    assert anon.url == ("https://auth/token?service=reg&scope=repository%3Aa%3Apull"
                        "&scope=repository%3Ab%3Apull")
    user = au.token_request(ch, [], au.Credentials("u", "p"))
    assert user.headers["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()
    assert "account=u" in user.url
    refresh = au.token_request(ch, [], au.Credentials(identity_token="rt"))
    assert refresh.method == "POST" and refresh.form["grant_type"] == "refresh_token"
    with pytest.raises(InvalidArgumentError):
        au.token_request(au.Challenge("bearer", {"realm": "file:///x"}), [], au.ANONYMOUS)


def test_token_response():
    t = au.parse_token_response(200, b'{"access_token":"abc","expires_in":10}', "r")
    assert t.value == "abc" and t.valid()
    with pytest.raises(PermissionDeniedError, match="refused the credentials"):
        au.parse_token_response(401, b"", "r")
    with pytest.raises(PermissionDeniedError, match="no token"):
        au.parse_token_response(200, b"{}", "r")


def fake_registry(log):
    """A registry behind a Bearer challenge, and its token server."""

    def handler(request: httpx.Request) -> httpx.Response:
        log.append((request.method, str(request.url), request.headers.get("authorization")))
        if request.url.host == "auth.example":
            scope = request.url.params.get_list("scope")
            return httpx.Response(200, json={"token": "T:" + " ".join(scope)})
        if request.headers.get("authorization", "").startswith("Bearer T:repository:lib/x"):
            if "/manifests/" in request.url.path:
                assert "application/vnd.oci.image.index.v1+json" in request.headers["accept"]
                body = json.dumps({"schemaVersion": 2, "mediaType":
                                   "application/vnd.docker.distribution.manifest.list.v2+json",
                                   "manifests": []}).encode()
                return httpx.Response(200, content=body, headers={
                    "content-type": "application/vnd.docker.distribution.manifest.list.v2+json"})
            return httpx.Response(200, json={})
        return httpx.Response(401, headers={"www-authenticate":
                                            'Bearer realm="https://auth.example/token",'
                                            'service="reg.example"'})

    return httpx.MockTransport(handler)


def test_bearer_flow_against_fake_transport():
    log = []
    reg = Registry("reg.example", RegistryOptions(transport=fake_registry(log),
                                                  credentials={"reg.example": au.ANONYMOUS}))
    _data, media_type, _ = reg.get_manifest("lib/x", "latest")
    assert media_type == "application/vnd.docker.distribution.manifest.list.v2+json"
    assert [m for m, *_ in log] == ["GET", "GET", "GET"]
    assert log[1][1].startswith("https://auth.example/token?service=reg.example&scope=")
    # the token is cached for the scope: one request only the second time
    reg.get_manifest("lib/x", "latest")
    assert len(log) == 4
    reg.close()


def test_docker_config_credentials(tmp_path):
    path = str(tmp_path / "config.json")
    credentials.store("docker.io", au.Credentials("me", "pw"), path)
    credentials.store("reg:5000", au.Credentials("you", "x:y"), path)
    with open(path) as f:
        doc = json.load(f)
    assert "https://index.docker.io/v1/" in doc["auths"]
    assert credentials.lookup("docker.io", path) == au.Credentials("me", "pw")
    assert credentials.lookup("reg:5000", path) == au.Credentials("you", "x:y")
    assert credentials.lookup("other", path).anonymous
    assert credentials.erase("reg:5000", path)
    assert credentials.lookup("reg:5000", path).anonymous


def test_credential_helper(tmp_path, monkeypatch):
    """A real helper program speaking the docker-credential protocol."""
    store = tmp_path / "helper-store.json"
    helper = tmp_path / "bin" / "docker-credential-berthtest"
    helper.parent.mkdir()
    helper.write_text(f"""#!/usr/bin/env python3
import json, sys
path = {str(store)!r}
try:
    data = json.load(open(path))
except FileNotFoundError:
    data = {{}}
action, payload = sys.argv[1], sys.stdin.read().strip()
if action == "store":
    doc = json.loads(payload)
    data[doc["ServerURL"]] = [doc["Username"], doc["Secret"]]
    json.dump(data, open(path, "w"))
elif action == "get":
    if payload not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps({{"ServerURL": payload, "Username": data[payload][0],
                      "Secret": data[payload][1]}}))
elif action == "erase":
    data.pop(payload, None)
    json.dump(data, open(path, "w"))
""")
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}:{os.environ['PATH']}")
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"credHelpers": {"reg.example": "berthtest"}}))
    assert credentials.lookup("reg.example", str(config)).anonymous
    credentials.store("reg.example", au.Credentials("me", "tok"), str(config))
    assert credentials.lookup("reg.example", str(config)) == au.Credentials("me", "tok")
    assert "auths" not in json.loads(config.read_text())  # kept by the helper only
    credentials.erase("reg.example", str(config))
    assert credentials.lookup("reg.example", str(config)).anonymous
