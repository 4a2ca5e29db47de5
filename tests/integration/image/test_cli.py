"""The `berth` image commands end to end, as a user runs them."""

import json
import os
import subprocess

from tests.conftest import REPO

BERTH = os.path.join(REPO, ".venv", "bin", "berth")


def berth(workdir, *args, input=None, check=True):
    env = dict(os.environ, BERTH_ROOT=os.path.join(workdir, "root"),
               BERTH_STATE=os.path.join(workdir, "state"),
               DOCKER_CONFIG=os.path.join(workdir, "docker"))
    p = subprocess.run([BERTH, *args], capture_output=True, env=env, input=input, timeout=120)
    if check:
        assert p.returncode == 0, p.stderr.decode() + p.stdout.decode()
    return p


def test_cli_bootstrap_push_pull_images(workdir, registry):
    image_id = berth(workdir, "image", "bootstrap", "busybox").stdout.decode().strip()
    assert image_id.startswith("sha256:")
    target = f"{registry.host}/cli/busybox:1"
    berth(workdir, "tag", "busybox", target)
    out = berth(workdir, "push", target).stdout.decode()
    assert "Pushed" in out
    berth(workdir, "rmi", target)
    out = berth(workdir, "pull", target).stdout.decode()
    assert out.strip().endswith(f"{registry.host}/cli/busybox:1")
    assert "Status: Downloaded newer image for" in out
    out = berth(workdir, "pull", target).stdout.decode()
    assert f"Status: Image is up to date for {target}" in out
    lines = berth(workdir, "images", "--digests").stdout.decode().splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "DIGEST", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = {tuple(line.split()[:2]): line.split() for line in lines[1:]}
    assert rows[("busybox", "latest")][3] == image_id[7:19]
    assert rows[(f"{registry.host}/cli/busybox", "1")][2].startswith("sha256:")
    assert berth(workdir, "images", "-q").stdout.decode().split() == [image_id[7:19]]
    doc = json.loads(berth(workdir, "image", "inspect", "busybox").stdout)
    assert doc[0]["Id"] == image_id and doc[0]["Config"]["Cmd"] == ["sh"]
    assert sorted(doc[0]["RepoTags"]) == sorted(["busybox:latest", target])
    fmt = berth(workdir, "image", "inspect", "-f", "{{.Os}} {{json .RootFS.Layers}}", "busybox")
    assert fmt.stdout.decode().startswith("linux [\"sha256:")
    # rmi by ID with tags in two repositories needs -f, as Docker
    p = berth(workdir, "rmi", image_id[7:19], check=False)
    assert p.returncode == 5 and b"referenced in multiple repositories" in p.stderr
    out = berth(workdir, "rmi", "-f", image_id[7:19]).stdout.decode()
    assert "Untagged: busybox:latest" in out and f"Deleted: {image_id}" in out
    assert berth(workdir, "images", "-q").stdout == b""
    assert os.listdir(os.path.join(workdir, "root", "blobs", "sha256")) == []


def test_cli_errors(workdir):
    p = berth(workdir, "pull", "Upper/Case", check=False)
    assert p.returncode == 2 and b"must be lowercase" in p.stderr
    p = berth(workdir, "rmi", "nothere", check=False)
    assert p.returncode == 3 and b"no such image: nothere" in p.stderr


def test_cli_login_logout_with_basic_auth(workdir, oci_layout, registry_factory):
    from tests.integration.image.conftest import PASSWORD, USER

    registry = registry_factory("htpasswd")
    registry.push_layout(oci_layout, "v1", "private/bb", "v1")
    p = berth(workdir, "pull", "-q", f"{registry.host}/private/bb:v1", check=False)
    assert p.returncode == 6 and b"authentication required" in p.stderr
    p = berth(workdir, "login", "-u", USER, "-p", "wrong", registry.host, check=False)
    assert p.returncode == 6
    out = berth(workdir, "login", "-u", USER, "--password-stdin", registry.host,
                input=PASSWORD.encode()).stdout
    assert out == b"Login Succeeded\n"
    with open(os.path.join(workdir, "docker", "config.json")) as f:
        assert registry.host in json.load(f)["auths"]
    berth(workdir, "pull", "-q", f"{registry.host}/private/bb:v1")
    assert berth(workdir, "logout", registry.host).stdout.startswith(b"Removing login")
    berth(workdir, "rmi", f"{registry.host}/private/bb:v1")
    assert berth(workdir, "pull", f"{registry.host}/private/bb:v1", check=False).returncode == 6
