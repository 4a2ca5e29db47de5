"""Registry credentials in Docker's client config (~/.docker/config.json):
``auths`` (base64 user:password, or an identity token), ``credHelpers`` and
``credsStore`` (``docker-credential-<name> get|store|erase``)."""

import base64
import os
import subprocess

import msgspec

from berth import jsonio
from berth.errors import InvalidArgumentError, UnavailableError
from berth.image.auth import ANONYMOUS, Credentials

DOCKER_HUB_KEY = "https://index.docker.io/v1/"


def config_path() -> str:
    base = os.environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker")
    return os.path.join(base, "config.json")


def _key(registry: str) -> str:
    return DOCKER_HUB_KEY if registry in ("docker.io", "index.docker.io",
                                          "registry-1.docker.io") else registry


def _load(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            data = msgspec.json.decode(f.read())
    except FileNotFoundError:
        return {}
    except msgspec.DecodeError as exc:
        raise InvalidArgumentError(f"read docker config {path}: {exc}") from None
    return data if isinstance(data, dict) else {}


def _helper(name: str, action: str, payload: str) -> str:
    prog = f"docker-credential-{name}"
    try:
        proc = subprocess.run([prog, action], input=payload, capture_output=True, text=True,
                              timeout=30)
    except FileNotFoundError:
        raise UnavailableError(f"credential helper {prog}: not found in PATH") from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr).strip()
        if action == "get" and "credentials not found" in out.lower():
            return ""
        raise UnavailableError(f"credential helper {prog} {action}: {out}")
    return proc.stdout


def lookup(registry: str, path: str | None = None) -> Credentials:
    path = path or config_path()
    cfg = _load(path)
    key = _key(registry)
    helper = (cfg.get("credHelpers") or {}).get(key) or (cfg.get("credHelpers") or {}).get(
        registry
    ) or cfg.get("credsStore")
    if helper:
        out = _helper(helper, "get", key)
        if out:
            doc = msgspec.json.decode(out)
            user, secret = doc.get("Username", ""), doc.get("Secret", "")
            if user == "<token>":
                return Credentials(identity_token=secret)
            return Credentials(user, secret)
    auths = cfg.get("auths") or {}
    entry = auths.get(key) or auths.get(registry) or auths.get(f"https://{registry}") or {}
    if entry.get("identitytoken"):
        return Credentials(identity_token=entry["identitytoken"])
    if entry.get("auth"):
        try:
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except ValueError:
            raise InvalidArgumentError(f"read docker config {path}: bad auth for {key}") from None
        return Credentials(user, password)
    if entry.get("username"):
        return Credentials(entry["username"], entry.get("password", ""))
    return ANONYMOUS


def store(registry: str, creds: Credentials, path: str | None = None) -> None:
    path = path or config_path()
    cfg = _load(path)
    key = _key(registry)
    helper = (cfg.get("credHelpers") or {}).get(key) or cfg.get("credsStore")
    if helper:
        payload = jsonio.dumps({"ServerURL": key, "Username": creds.username,
                                "Secret": creds.password})
        _helper(helper, "store", payload)
        return
    auth = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    cfg.setdefault("auths", {})[key] = {"auth": auth}
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    jsonio.write_atomic(path, jsonio.dumps(cfg, indent=1) + "\n", mode=0o600)


def erase(registry: str, path: str | None = None) -> bool:
    path = path or config_path()
    cfg = _load(path)
    key = _key(registry)
    helper = (cfg.get("credHelpers") or {}).get(key) or cfg.get("credsStore")
    if helper:
        _helper(helper, "erase", key)
        return True
    auths = cfg.get("auths") or {}
    if key not in auths:
        return False
    del auths[key]
    jsonio.write_atomic(path, jsonio.dumps(cfg, indent=1) + "\n", mode=0o600)
    return True
