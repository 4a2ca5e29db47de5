import os

import pytest

from berth.errors import NotFoundError, PermissionDeniedError
from berth.image.auth import Credentials
from berth.image.registry import RegistryOptions
from berth.image.service import ImageService
from berth.oci import image as oi
from berth.paths import Paths
from tests.integration.image.conftest import PASSWORD, USER


def service(workdir, name="berth", **opts):
    return ImageService(Paths(os.path.join(workdir, name, "root"),
                              os.path.join(workdir, name, "state")),
                        registry_options=RegistryOptions(
                            credentials_path=os.path.join(workdir, "docker-config.json"),
                            backoff=0.01, **opts))


def rootfs_file(svc, image, path):
    info = svc.snapshots.stat(image.chain_id)
    # the top layer's own directory holds files that layer changed
    return os.path.join(svc.snapshots.fs(info), path)


def test_pull_umoci_image_from_plain_registry(workdir, oci_layout, registry):
    registry.push_layout(oci_layout, "v1", "test/busybox", "v1")
    svc = service(workdir)
    image = svc.pull(f"{registry.host}/test/busybox:v1")
    assert image.tags == (f"{registry.host}/test/busybox:v1",)
    assert len(image.repo_digests) == 1
    cfg = svc.config(image)
    assert cfg.config.cmd == ["sh"] and len(cfg.rootfs.diff_ids) == 2
    with open(rootfs_file(svc, image, "etc/marker"), "rb") as f:
        assert f.read() == b"second layer\n"
    assert svc.get(f"{registry.host}/test/busybox:v1").id == image.id
    # the layers, unpacked side by side, stack in order under a container
    assert svc.snapshots.stat(image.chain_id).parent == oi.chain_ids(cfg.rootfs.diff_ids)[0]
    from berth.image.snapshots import mount_all, unmount_all

    target = os.path.join(workdir, "rootfs")
    os.makedirs(target)
    mount_all(svc.rootfs(image.id, "c1"), target)
    try:
        import subprocess

        out = subprocess.run(["chroot", target, "/bin/cat", "/etc/marker"],
                             capture_output=True, check=True).stdout
        assert out == b"second layer\n"
    finally:
        unmount_all(target)
    # pulled again: nothing downloaded, same image
    assert svc.pull(f"{registry.host}/test/busybox:v1").id == image.id
    # by digest
    digest = image.repo_digests[0].split("@")[1]
    assert svc.pull(f"{registry.host}/test/busybox@{digest}").id == image.id
    svc.close()


def test_multi_arch_index_selects_platform(workdir, oci_layout, registry):
    registry.push_layout(oci_layout, "multi", "multi/bb", "latest", all=True)
    for plat in ("linux/amd64", "linux/arm64"):
        svc = service(workdir, plat.replace("/", "-"))
        image = svc.pull(f"{registry.host}/multi/bb", platform=oi.parse_platform(plat))
        assert svc.config(image).architecture == plat.split("/")[1]
        with open(rootfs_file(svc, image, "arch")) as f:
            assert f.read() == plat.split("/")[1] + "\n"
        assert image.index_digest
        svc.close()
    svc = service(workdir, "s390x")
    with pytest.raises(NotFoundError, match="no matching manifest"):
        svc.pull(f"{registry.host}/multi/bb", platform=oi.parse_platform("linux/s390x"))
    svc.close()


def test_pull_with_basic_auth(workdir, oci_layout, registry_factory):
    registry = registry_factory("htpasswd")
    registry.push_layout(oci_layout, "v1", "private/bb", "v1")
    anon = service(workdir, "anon")
    with pytest.raises(PermissionDeniedError):
        anon.pull(f"{registry.host}/private/bb:v1")
    anon.close()
    # credentials from a docker config.json
    from berth.image import credentials

    credentials.store(registry.host, Credentials(USER, PASSWORD),
                      os.path.join(workdir, "docker-config.json"))
    svc = service(workdir)
    assert svc.pull(f"{registry.host}/private/bb:v1").tags
    svc.close()


def test_pull_and_push_with_bearer_token(workdir, oci_layout, registry_factory):
    registry = registry_factory("token")
    registry.push_layout(oci_layout, "v1", "tok/bb", "v1")
    creds = {registry.host: Credentials(USER, PASSWORD)}
    svc = service(workdir, credentials=creds)
    image = svc.pull(f"{registry.host}/tok/bb:v1")
    scopes = [s for r in registry.token.requests for s in r["scopes"]]
    assert "repository:tok/bb:pull" in scopes
    assert all(r["user"] == USER and r["service"] == "berth-registry"
               for r in registry.token.requests)
    # push under another name: cross-repository mount of the layers
    svc.tag(image.id, f"{registry.host}/tok/copy:v2")
    svc.push(f"{registry.host}/tok/copy:v2")
    assert any("repository:tok/copy:pull,push" in r["scopes"] for r in registry.token.requests)
    svc.close()
    # anonymous: the token server gives no access, so the registry refuses
    anon = service(workdir, "anon")
    with pytest.raises(PermissionDeniedError):
        anon.pull(f"{registry.host}/tok/bb:v1")
    anon.close()


def test_zstd_layers(workdir, oci_layout, registry):
    import subprocess

    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                    "--dest-compress-format=zstd", f"oci:{oci_layout}:v1",
                    f"docker://{registry.host}/zstd/bb:v1"], check=True, capture_output=True,
                   timeout=120)
    svc = service(workdir)
    image = svc.pull(f"{registry.host}/zstd/bb:v1")
    types = {d.media_type for d in svc.manifest(image).layers}
    assert types == {oi.OCI_LAYER_ZSTD}
    with open(rootfs_file(svc, image, "etc/marker"), "rb") as f:
        assert f.read() == b"second layer\n"
    svc.close()


def test_concurrent_pulls_of_one_image(workdir, oci_layout, registry):
    import subprocess

    from tests.integration.image.test_cli import BERTH

    registry.push_layout(oci_layout, "v1", "conc/bb", "v1")
    env = dict(os.environ, BERTH_ROOT=os.path.join(workdir, "root"),
               BERTH_STATE=os.path.join(workdir, "state"))
    procs = [subprocess.Popen([BERTH, "pull", "-q", f"{registry.host}/conc/bb:v1"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(3)]
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    svc = service(workdir, "")
    [image] = svc.list()
    assert len(svc.snapshots.walk()) == 2  # one snapshot per layer, none left half-made
    assert svc.unpack(image) == image.chain_id
    assert os.listdir(svc.content.ingest_root) == []
    svc.close()


def test_https_registry_verified_with_certs_d(workdir, oci_layout, registry_factory):
    import shutil
    import subprocess

    from berth.errors import UnavailableError

    registry = registry_factory(tls=True)
    subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false",
                    f"oci:{oci_layout}:v1", f"docker://{registry.host}/tls/bb:v1"],
                   check=True, capture_output=True, timeout=120)
    certs = os.path.join(workdir, "certs.d")
    # loopback is not given a pass here: HTTPS, verified
    strict = {"loopback_insecure": False, "certs_dirs": (certs,)}
    with pytest.raises(UnavailableError, match=r"is not trusted .*CERTIFICATE_VERIFY_FAILED"):
        service(workdir, "untrusted", **strict).pull(f"{registry.host}/tls/bb:v1")
    os.makedirs(os.path.join(certs, registry.host))
    shutil.copy(registry.ca, os.path.join(certs, registry.host, "ca.crt"))
    svc = service(workdir, "trusted", **strict)
    assert svc.pull(f"{registry.host}/tls/bb:v1").tags
    svc.close()
    # --insecure-registry: HTTPS without verification, as Docker
    svc = service(workdir, "insecure", loopback_insecure=False,
                  insecure_registries=(registry.host,))
    assert svc.pull(f"{registry.host}/tls/bb:v1").tags
    svc.close()


def test_docker_hub_names_pulled_from_a_mirror(workdir, oci_layout, registry):
    registry.push_layout(oci_layout, "v1", "library/mirrored", "v1")
    svc = service(workdir, mirrors=(registry.host,))
    image = svc.pull("mirrored:v1")
    assert image.tags == ("docker.io/library/mirrored:v1",)
    assert svc.get("mirrored:v1").id == image.id
    svc.close()
