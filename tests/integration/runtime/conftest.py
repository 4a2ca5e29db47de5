"""Bundles for runtime tests: a private copy of the busybox rootfs and a
config.json from berth's default spec, adjusted per test."""

import json
import os
import subprocess
import uuid

import pytest

from berth.oci.runtime import default_spec


class Bundle:
    def __init__(self, path: str, rootfs_src: str) -> None:
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")
        subprocess.run(["cp", "-a", rootfs_src, self.rootfs], check=True)
        self.config = default_spec()
        self.config["process"]["terminal"] = False
        self.config["root"]["readonly"] = False
        self.config["hostname"] = "berthtest"
        # one top-level cgroup per bundle: nothing to clean up above it
        self.config["linux"]["cgroupsPath"] = f"/berthit-{uuid.uuid4().hex[:12]}"

    def set_args(self, *args: str) -> "Bundle":
        self.config["process"]["args"] = list(args)
        return self

    def write(self) -> str:
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f, indent=2)
        return self.path


@pytest.fixture
def make_bundle(workdir, busybox_rootfs):
    n = [0]

    def make(*args: str) -> Bundle:
        n[0] += 1
        path = os.path.join(workdir, f"bundle{n[0]}")
        os.mkdir(path)
        b = Bundle(path, busybox_rootfs)
        if args:
            b.set_args(*args)
        return b

    return make
