"""berth-runtime containers from busybox bundles wired as the engine does
(berth.network.attach between `create` and `start`): names over the
embedded DNS with busybox wget/nslookup, the generated /etc files, a
published port served by busybox httpd, release on stop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid

import pytest

from berth.network.attach import (
    attach_container,
    network_settings,
    port_bindings,
    release_container,
    start_request,
)
from berth.network.model import OPT_BRIDGE_NAME
from berth.oci.runtime import default_spec
from tests.integration.conftest import unique
from tests.integration.network.conftest import bridge_name, dns_servers, free_subnet


def _bundle(workdir: str, rootfs_src: str, *args: str) -> str:
    path = os.path.join(workdir, unique("bundle"))
    os.makedirs(path)
    subprocess.run(["cp", "-a", rootfs_src, os.path.join(path, "rootfs")], check=True)
    os.makedirs(os.path.join(path, "rootfs", "www"), exist_ok=True)
    with open(os.path.join(path, "rootfs", "www", "index.html"), "w") as f:
        f.write("hello from httpd\n")
    for name in ("hosts", "resolv.conf"):
        open(os.path.join(path, name), "w").close()
    cfg = default_spec()
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = list(args)
    cfg["root"]["readonly"] = False
    cfg["linux"]["cgroupsPath"] = f"/berthit-{uuid.uuid4().hex[:12]}"
    for name in ("hosts", "resolv.conf"):
        cfg["mounts"].append({"destination": f"/etc/{name}", "type": "bind",
                              "source": os.path.join(path, name), "options": ["rbind", "rw"]})
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    return path


@pytest.fixture
def containers(berth_runtime, workdir, busybox_rootfs, nm):
    made: list[str] = []

    def start(name: str, network_mode: str, *args: str, publish: tuple[str, ...] = (),
              aliases: tuple[str, ...] = (), ip: str | None = None):
        b = _bundle(workdir, busybox_rootfs, *args)
        cid = uuid.uuid4().hex + uuid.uuid4().hex
        berth_runtime.run("create", "--bundle", b, cid, check=True)
        made.append(cid)
        pid = json.loads(berth_runtime.run("state", cid, check=True).stdout)["pid"]
        bindings, exposed = port_bindings(list(publish))
        eps = {network_mode: {"Aliases": list(aliases),
                              "IPAMConfig": {"IPv4Address": ip} if ip else None}}
        req = start_request({"NetworkMode": network_mode, "PortBindings": bindings},
                            {"Hostname": name, "ExposedPorts": exposed}, f"/{name}", eps)
        json.dumps(req)  # it travels in monitor.json
        attach_container(nm.paths, cid, pid, req, b)
        berth_runtime.run("start", cid, check=True)
        return cid

    yield start
    for cid in made:
        berth_runtime.run("delete", "--force", cid)
        release_container(nm.paths, cid)


def test_containers_by_name_with_busybox(nm, containers, berth_runtime):
    nm.create("app", subnet=free_subnet(), options={OPT_BRIDGE_NAME: bridge_name()})
    web = containers("web", "app", "httpd", "-f", "-p", "80", "-h", "/www",
                     aliases=("frontend",))
    client = containers("client", "app", "sleep", "300")

    def sh(cid: str, script: str) -> subprocess.CompletedProcess:
        return berth_runtime.run("exec", cid, "sh", "-c", script, timeout=30)

    p = sh(client, "cat /etc/resolv.conf /etc/hosts")
    assert "nameserver 127.0.0.11" in p.stdout and "\tclient\n" in p.stdout, p.stdout
    web_ip = network_settings(nm.paths, web)["Networks"]["app"]["IPAddress"]
    for name in ("web", "frontend", web[:12]):
        p = sh(client, f"nslookup {name}")
        assert web_ip in p.stdout, p.stdout + p.stderr
        p = sh(client, f"wget -q -O - http://{name}/")
        assert p.stdout == "hello from httpd\n", p.stdout + p.stderr
    assert len(dns_servers(nm.paths.database)) == 2
    release_container(nm.paths, web)
    release_container(nm.paths, client)
    assert dns_servers(nm.paths.database) == []


def test_default_bridge_container_publishes_a_port(nm, containers, berth_runtime):
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        hp = s.getsockname()[1]
    web = containers("web", "bridge", "httpd", "-f", "-p", "80", "-h", "/www",
                     publish=(f"{hp}:80",))
    settings = network_settings(nm.paths, web)
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(hp)}]}
    assert settings["Networks"]["bridge"]["Gateway"] == str(nm.get("bridge").gateway)
    with socket.create_connection(("127.0.0.1", hp), timeout=5) as c:
        c.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := c.recv(4096):
            data += chunk
    assert data.endswith(b"hello from httpd\n")
    # the default bridge: the host's resolvers (never 127.0.0.11), no DNS server
    p = berth_runtime.run("exec", web, "cat", "/etc/resolv.conf")
    assert "127.0.0.11" not in p.stdout
    assert dns_servers(nm.paths.database) == []
