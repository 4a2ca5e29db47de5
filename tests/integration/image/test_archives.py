"""save / load / import, and interchange with skopeo and the registry."""

import io
import json
import os
import subprocess
import tarfile

import pytest

from berth.errors import InvalidArgumentError
from berth.image import archive
from tests.integration.image.test_pull import service


def skopeo(*args) -> str:
    p = subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture
def busybox(workdir):
    svc = service(workdir)
    image = svc.bootstrap_busybox("busybox:latest")
    yield svc, image
    svc.close()


def test_save_docker_archive_read_by_skopeo_and_loaded_back(workdir, busybox):
    svc, image = busybox
    path = os.path.join(workdir, "bb.tar")
    with open(path, "wb") as f:
        archive.save_docker(svc, ["busybox"], f)
    info = json.loads(skopeo("inspect", f"docker-archive:{path}"))
    assert info["Architecture"] == svc.config(image).architecture
    assert len(info["Layers"]) == 1
    with tarfile.open(path) as tf:
        manifest = json.load(tf.extractfile("manifest.json"))
        assert manifest[0]["RepoTags"] == ["busybox:latest"]
        assert "repositories" in tf.getnames()
    other = service(workdir, "other")
    with open(path, "rb") as f:
        assert archive.load(other, f) == ["Loaded image: busybox:latest"]
    assert other.get("busybox").id == image.id
    other.close()


def test_save_oci_archive_read_by_skopeo_and_loaded_back(workdir, busybox):
    svc, image = busybox
    path = os.path.join(workdir, "bb-oci.tar")
    with open(path, "wb") as f:
        archive.save_oci(svc, ["busybox"], f)
    info = json.loads(skopeo("inspect", f"oci-archive:{path}"))
    assert info["Digest"] == image.manifest
    other = service(workdir, "other")
    with open(path, "rb") as f:
        assert archive.load(other, f) == ["Loaded image: busybox:latest"]
    loaded = other.get("busybox")
    assert loaded.id == image.id and loaded.manifest == image.manifest
    other.close()


def test_load_skopeo_docker_archive_and_oci_archive(workdir, oci_layout):
    dpath = os.path.join(workdir, "skopeo-docker.tar")
    skopeo("copy", "-q", f"oci:{oci_layout}:v1", f"docker-archive:{dpath}:made/by-skopeo:v1")
    svc = service(workdir)
    with open(dpath, "rb") as f:
        assert archive.load(svc, f) == ["Loaded image: made/by-skopeo:v1"]
    image = svc.get("made/by-skopeo:v1")
    info = svc.snapshots.stat(image.chain_id)
    with open(os.path.join(svc.snapshots.fs(info), "etc", "marker"), "rb") as f:
        assert f.read() == b"second layer\n"
    opath = os.path.join(workdir, "skopeo-oci.tar")
    skopeo("copy", "-q", f"oci:{oci_layout}:v1", f"oci-archive:{opath}:v1")
    with open(opath, "rb") as f:
        out = archive.load(svc, f)
    assert out == [f"Loaded image ID: {image.id}"]  # same config: the same image
    svc.close()


def test_push_read_back_by_skopeo(workdir, busybox, registry):
    svc, image = busybox
    target = f"{registry.host}/berth/busybox:v1"
    svc.tag("busybox", target)
    digest = svc.push(target)
    info = json.loads(skopeo("inspect", "--tls-verify=false", f"docker://{target}"))
    assert info["Digest"] == digest
    assert info["Layers"] == [d.digest for d in svc.manifest(image).layers]
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{target}"))
    assert raw["config"]["digest"] == image.id
    out = os.path.join(workdir, "copied")
    skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{target}", f"oci:{out}:v1")
    # and pulled back by a fresh berth, the same image
    other = service(workdir, "other")
    assert other.pull(target).id == image.id
    other.close()


def test_import_rootfs_with_changes(workdir, busybox_rootfs):
    from berth.image.tarball import add_tree

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        add_tree(tf, busybox_rootfs)
    buf.seek(0)
    svc = service(workdir)
    image = archive.import_rootfs(svc, buf, "imported:v1",
                                  ['CMD ["echo", "hi"]', "ENV A=1 B=two", "WORKDIR /srv",
                                   "EXPOSE 80", "LABEL k=v"], message="from a tarball")
    cfg = svc.inspect("imported:v1")["Config"]
    assert cfg["Cmd"] == ["echo", "hi"] and cfg["Env"] == ["A=1", "B=two"]
    assert cfg["WorkingDir"] == "/srv" and cfg["ExposedPorts"] == {"80/tcp": {}}
    assert cfg["Labels"] == {"k": "v"}
    assert svc.history(image.id)[0]["Comment"] == "from a tarball"
    with pytest.raises(InvalidArgumentError, match="RUN is not supported"):
        archive.import_rootfs(svc, io.BytesIO(buf.getvalue()), None, ["RUN x"])
    svc.close()


def test_load_refuses_garbage(workdir):
    svc = service(workdir)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        ti = tarfile.TarInfo("../../evil")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"bad"))
    buf.seek(0)
    with pytest.raises(InvalidArgumentError, match=r"neither manifest\.json"):
        archive.load(svc, buf)
    assert not os.path.exists(os.path.join(workdir, "..", "evil"))
    svc.close()


def test_container_rootfs_from_image(workdir, busybox):
    import subprocess as sp

    from berth.image.snapshots import mount_all, unmount_all

    svc, image = busybox
    summary = svc.summary(image)
    assert summary["RepoTags"] == ["busybox:latest"] and summary["Size"] == image.size
    # a GC'd layer is unpacked again from its blob when a container needs it
    svc.snapshots.remove(image.chain_id)
    mounts = svc.rootfs("busybox", "container-1")
    target = os.path.join(workdir, "rootfs")
    os.makedirs(target)
    mount_all(mounts, target)
    try:
        out = sp.run(["chroot", target, "/bin/sh", "-c", "echo hello > /tmp/x; cat /tmp/x"],
                     capture_output=True, text=True, check=True).stdout
        assert out == "hello\n"
    finally:
        unmount_all(target)
    svc.snapshots.remove("container-1")


def test_save_several_images_and_filters(workdir, busybox, busybox_rootfs):
    from berth.image.tarball import add_tree

    svc, image = busybox
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        add_tree(tf, busybox_rootfs)
    buf.seek(0)
    other = archive.import_rootfs(svc, buf, "second:v1", ["CMD sh"])
    svc.tag("busybox", "busybox:alias")
    path = os.path.join(workdir, "two.tar")
    with open(path, "wb") as f:
        archive.save_docker(svc, ["busybox:latest", "second:v1"], f)
    with tarfile.open(path) as tf:
        assert len(json.load(tf.extractfile("manifest.json"))) == 2
    fresh = service(workdir, "fresh")
    with open(path, "rb") as f:
        assert archive.load(fresh, f) == ["Loaded image: busybox:latest",
                                          "Loaded image: second:v1"]
    assert {i.id for i in fresh.list()} == {image.id, other.id}
    fresh.close()
    # filters, as `docker images --filter`
    assert [i.id for i in svc.list(filters={"reference": ["second*"]})] == [other.id]
    assert [i.id for i in svc.list(filters={"reference": ["busybox:alias"]})] == [image.id]
    assert svc.list(filters={"dangling": ["true"]}) == []
    svc.remove("second:v1")
    svc.tag("busybox", "second:v2")
    svc.remove("busybox:latest")
    svc.remove("busybox:alias")
    assert [i.tags for i in svc.list()] == [("docker.io/library/second:v2",)]
    # a tag moved to another image leaves the old one dangling
    moved = archive.import_rootfs(svc, io.BytesIO(buf.getvalue()), "second:v2", ["CMD true"])
    assert [i.id for i in svc.list(filters={"dangling": ["true"]})] == [image.id]
    deleted, _ = svc.prune()
    assert {"Deleted": image.id} in deleted
    assert [i.id for i in svc.list()] == [moved.id]
