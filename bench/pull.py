"""Benchmark: pull + unpack from a local registry, berth against its peers.

Images are made locally and pushed to Debian's docker-registry on 127.0.0.1:
a many-layer image (synthetic files) and, when debootstrap is installed, a
Debian bookworm minbase root filesystem as one layer (made once and cached
under .cache/). Each run pulls into an empty store:

- berth:  ``berth --root R pull -q IMAGE`` (download, verify, unpack to snapshots)
- peer:   ``skopeo copy docker://IMAGE oci:D:tag`` + ``umoci unpack --image D:tag B``
- docker: ``docker pull`` when a dockerd is running (its socket answers)

Usage: .venv/bin/python bench/pull.py [--runs N] [--layers N] [--no-debian] [--no-many]
Prints medians of N runs and the ratio berth / peer (lower is better).
"""

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(REPO, ".cache")
BERTH = os.path.join(REPO, ".venv", "bin", "berth")
sys.path.insert(0, os.path.join(REPO, "src"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(work: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = os.path.join(work, "registry.yml")
    with open(config, "w") as f:
        f.write("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                f"storage:\n  filesystem:\n    rootdirectory: {work}/registry\n"
                f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1)
            break
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    return proc, f"127.0.0.1:{port}"


def many_layer_image(svc, layers: int, tmp: str):
    """`layers` layers of 40 files each (half text, half random: ~50% gzip ratio)."""
    from berth.oci import image as oi

    rnd = random.Random(42)
    blobs = []
    for i in range(layers):
        path = os.path.join(tmp, f"layer{i}.tar")
        with tarfile.open(path, "w") as tf:
            for j in range(40):
                text = (f"layer {i} file {j} " * 2000).encode()[:30_000]
                data = text + rnd.randbytes(30_000)
                ti = tarfile.TarInfo(f"data/l{i:03d}/f{j:03d}")
                ti.size = len(data)
                ti.mtime = 1_700_000_000
                import io

                tf.addfile(ti, io.BytesIO(data))
        blobs.append(svc.add_layer_tar(path))
        os.unlink(path)
    plat = oi.host_platform()
    config = oi.ImageConfig(architecture=plat.architecture, os=plat.os,
                            rootfs=oi.RootFS("layers", [str(b.diff_id) for b in blobs]),
                            config=oi.ContainerConfig(cmd=["sh"]))
    return svc.create(config, blobs, ["bench/many:latest"])


def debian_tar() -> str | None:
    path = os.path.join(CACHE, "debian-bookworm-minbase.tar")
    if os.path.exists(path):
        return path
    if not shutil.which("debootstrap"):
        print("debootstrap not installed: skipping the Debian image", file=sys.stderr)
        return None
    mirror = "http://deb.debian.org/debian"
    try:
        with open("/etc/apt/sources.list.d/debian.sources") as f:
            for line in f:
                if line.startswith("URIs:"):
                    mirror = line.split()[1]
                    break
    except OSError:
        pass
    os.makedirs(CACHE, exist_ok=True)
    rootfs = tempfile.mkdtemp(dir=CACHE, prefix="debootstrap-")
    try:
        print(f"debootstrap --variant=minbase bookworm (mirror {mirror}) ...", file=sys.stderr)
        subprocess.run(["debootstrap", "--variant=minbase", "bookworm", rootfs, mirror],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["tar", "-C", rootfs, "--numeric-owner", "--xattrs", "-cf",
                        path + ".tmp", "."], check=True)
        os.rename(path + ".tmp", path)
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    return path


def timed(cmd: list[str], env: dict | None = None) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t


def bench_image(image: str, runs: int, work: str) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"berth": [], "skopeo+umoci": []}
    docker = shutil.which("docker") and subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0
    if docker:
        out["docker"] = []
    for run in range(runs):
        root = os.path.join(work, f"berth-{run}")
        out["berth"].append(timed([BERTH, "--root", root, "--state", root + "-state", "pull",
                                   "-q", image]))
        shutil.rmtree(root, ignore_errors=True)
        oci, bundle = os.path.join(work, f"oci-{run}"), os.path.join(work, f"bundle-{run}")
        t = time.perf_counter()
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{image}",
                        f"oci:{oci}:t"], check=True)
        subprocess.run(["umoci", "unpack", "--image", f"{oci}:t", bundle], check=True,
                       stdout=subprocess.DEVNULL)
        out["skopeo+umoci"].append(time.perf_counter() - t)
        shutil.rmtree(oci, ignore_errors=True)
        shutil.rmtree(bundle, ignore_errors=True)
        if docker:
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
            out["docker"].append(timed(["docker", "pull", "-q", image]))
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--no-debian", action="store_true")
    ap.add_argument("--no-many", action="store_true", help="skip the many-layer image")
    args = ap.parse_args()

    from berth.image.service import ImageService
    from berth.paths import Paths

    os.makedirs(CACHE, exist_ok=True)
    work = tempfile.mkdtemp(prefix="bench-pull-", dir=CACHE)
    proc, host = start_registry(work)
    try:
        svc = ImageService(Paths(os.path.join(work, "src-root"), os.path.join(work, "src-st")))
        images = []
        if not args.no_many:
            img = many_layer_image(svc, args.layers, work)
            svc.tag(img.id, f"{host}/bench/many:latest")
            svc.push(f"{host}/bench/many:latest")
            images.append((f"{args.layers}-layer image ({img.size / 1e6:.0f} MB)",
                           f"{host}/bench/many:latest"))
        tar = None if args.no_debian else debian_tar()
        if tar:
            from berth.image import archive

            with open(tar, "rb") as f:
                deb = archive.import_rootfs(svc, f, f"{host}/bench/debian:bookworm",
                                            ['CMD ["bash"]'])
            svc.push(f"{host}/bench/debian:bookworm")
            blob = svc.manifest(deb).layers[0].size
            images.append((f"debian bookworm minbase ({deb.size / 1e6:.0f} MB, "
                           f"{blob / 1e6:.0f} MB gzip)", f"{host}/bench/debian:bookworm"))
        svc.close()
        print(f"pull + unpack from a local registry, median of {args.runs} runs (seconds)")
        for label, image in images:
            res = bench_image(image, args.runs, work)
            b = statistics.median(res["berth"])
            line = f"{label}: berth {b:.2f}"
            for peer, values in res.items():
                if peer == "berth":
                    continue
                p = statistics.median(values)
                line += f" | {peer} {p:.2f} | ratio berth/{peer} {b / p:.2f}"
            print(line)
            print("   runs: " + "; ".join(f"{k} " + " ".join(f"{v:.2f}" for v in vs)
                                          for k, vs in res.items()))
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
