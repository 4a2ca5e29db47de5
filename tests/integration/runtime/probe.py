"""A probe run inside test containers (busybox sh): what the process holds,
read from the kernel, to compare with the config that asked for it.

    probe = install_probe(bundle.rootfs)            # writes /probe.sh
    bundle.set_args("/probe.sh", "/proc/kcore", ...)  # paths to check as masked
    report = parse(stdout)

report: {"CapInh": int, "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp": int,
"NoNewPrivs": int, "uid_map": [(inside, outside, size)], "gid_map": [...],
"mounts": {mountpoint: (fstype, set(options))}, "paths": {path: "kind major:minor"},
"uid": int, "gid": int}
"""

import os

from berth.linux.capabilities import CAPS

PROBE = r"""#!/bin/sh
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|Seccomp|NoNewPrivs):' /proc/self/status | tr -d ' \t' | sed 's/^/status=/'
while read a b c; do echo "uid_map=$a $b $c"; done < /proc/self/uid_map
while read a b c; do echo "gid_map=$a $b $c"; done < /proc/self/gid_map
while read dev mnt fstype opts rest; do echo "mount=$mnt $fstype $opts"; done < /proc/mounts
echo "ids=$(id -u) $(id -g)"
for p in "$@"; do
  if [ -e "$p" ]; then echo "path=$p $(stat -c '%F %t:%T' "$p")"; else echo "path=$p absent"; fi
done
"""


def install_probe(rootfs: str) -> str:
    path = os.path.join(rootfs, "probe.sh")
    with open(path, "w") as f:
        f.write(PROBE)
    os.chmod(path, 0o755)
    return "/probe.sh"


def parse(out: str) -> dict:
    r: dict = {"uid_map": [], "gid_map": [], "mounts": {}, "paths": {}}
    for line in out.splitlines():
        key, _, value = line.partition("=")
        if key == "status":
            name, _, v = value.partition(":")
            r[name] = int(v, 16) if name.startswith("Cap") else int(v)
        elif key in ("uid_map", "gid_map"):
            r[key].append(tuple(int(x) for x in value.split()))
        elif key == "mount":
            mnt, fstype, opts = value.split(" ", 2)
            # the last mount on a path is the one seen there
            r["mounts"][mnt] = (fstype, set(opts.split(",")))
        elif key == "ids":
            r["uid"], r["gid"] = (int(x) for x in value.split())
        elif key == "path":
            p, _, what = value.partition(" ")
            r["paths"][p] = what
    return r


def mask(names: list[str] | None) -> int:
    m = 0
    for n in names or []:
        m |= 1 << CAPS[n]
    return m


def check_against_config(r: dict, config: dict) -> None:
    """Assert that what the probe saw is what `config` asked for."""
    proc = config["process"]
    caps = proc.get("capabilities") or {}
    assert r["CapBnd"] == mask(caps.get("bounding")), hex(r["CapBnd"])
    # CVE-2022-29162: empty unless the config names them (ambient needs inheritable too)
    assert r["CapInh"] == mask(caps.get("inheritable")), hex(r["CapInh"])
    amb = mask(sorted(set(caps.get("ambient") or ()) & set(caps.get("inheritable") or ())
                      & set(caps.get("permitted") or ())))
    assert r["CapAmb"] == amb, hex(r["CapAmb"])
    if (proc.get("user") or {}).get("uid", 0) == 0:
        assert r["CapPrm"] == mask(caps.get("permitted")), hex(r["CapPrm"])
        assert r["CapEff"] == mask(caps.get("effective")), hex(r["CapEff"])
    else:
        # execve as a user other than root keeps only the ambient set
        assert r["CapPrm"] == amb and r["CapEff"] == amb, (hex(r["CapPrm"]), hex(r["CapEff"]))
    assert r["NoNewPrivs"] == (1 if proc.get("noNewPrivileges") else 0)
    assert r["Seccomp"] == (2 if config["linux"].get("seccomp") else 0)
    user = proc.get("user") or {}
    assert (r["uid"], r["gid"]) == (user.get("uid", 0), user.get("gid", 0))
    linux = config["linux"]
    if any(n["type"] == "user" for n in linux["namespaces"]):
        want = [(m["containerID"], m["hostID"], m["size"]) for m in linux["uidMappings"]]
        assert r["uid_map"] == want
        want = [(m["containerID"], m["hostID"], m["size"]) for m in linux["gidMappings"]]
        assert r["gid_map"] == want
    else:
        assert r["uid_map"] == [(0, 0, 4294967295)]
    for p in linux.get("maskedPaths") or []:
        seen = r["paths"].get(p)
        if seen is None or seen == "absent":
            continue
        if seen.startswith("directory"):
            fstype, opts = r["mounts"][p]
            assert fstype == "tmpfs" and "ro" in opts, (p, fstype, opts)
        else:
            assert seen == "character special file 1:3", (p, seen)
    for p in linux.get("readonlyPaths") or []:
        if p in r["mounts"]:
            assert "ro" in r["mounts"][p][1], (p, r["mounts"][p])
