"""`berth run` on networks (issue 7's library wired into the engine):
user-defined network with names, published ports, release on rm."""

import os
import subprocess
import time
import urllib.request

from tests.integration.conftest import unique


def _links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_user_network_names_and_published_port(berth):
    links = _links()
    net = unique("brt-e")
    berth("network", "create", "--subnet", "10.123.201.0/24", net, check=True)
    try:
        berth("run", "-d", "--name", "web", "--network", net, "-p", "127.0.0.1:18181:8080",
              "busybox", "sh", "-c", "echo hello-web > /tmp/index.html; exec httpd -f -p 8080 -h /tmp",
              check=True)
        # by name through the embedded DNS (busybox wget crashes on this
        # busybox build, even on the host: nc instead)
        p = berth("run", "--rm", "--network", net, "busybox", "sh", "-c",
                  "for i in 1 2 3 4 5 6 7 8 9 10; do "
                  "printf 'GET /index.html HTTP/1.0\\r\\n\\r\\n' | nc -w 2 web 8080 | grep hello && break; "
                  "sleep 0.3; done")
        assert p.stdout == "hello-web\n", p.stderr
        body = b""
        for _ in range(20):
            try:
                with urllib.request.urlopen("http://127.0.0.1:18181/index.html", timeout=2) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.2)
        assert body == b"hello-web\n"
        assert berth("port", "web", check=True).stdout.strip() == "8080/tcp -> 127.0.0.1:18181"
        inspect = berth("inspect", "--format", "{{json .NetworkSettings.Networks}}", "web", check=True).stdout
        assert net in inspect and "10.123.201." in inspect
        berth("rm", "-f", "web", check=True)
    finally:
        berth("rm", "-f", "web")
        berth("network", "rm", net)
    # veth, bridge, DNS server and nft rules released
    assert _links() == links
    out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    assert "berth" not in out
