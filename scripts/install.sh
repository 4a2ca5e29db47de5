#!/usr/bin/env bash
# Installs everything berth and its tests need on a fresh Debian 12 machine (as root):
# Debian packages, then a virtualenv in .venv with berth installed (editable) and
# the test tools. Idempotent: safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PKGS=(python3 python3-venv busybox-static runc skopeo umoci docker-registry openssl debootstrap
      libseccomp2 iproute2 nftables iptables apache2-utils hyperfine procps containerd
      gcc libc6-dev docker.io podman xfsprogs)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's interpreter, not a pyenv shim: the venv's python must start fast.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
# The installed launchers: scripts/berth and scripts/berth-runtime with the
# venv's interpreter and `-IS` on their #! line (no shell starts first) and
# the paths they would search for at each start written in (no compile of a
# long script, no search: ~0.7 ms of every command); see make_launchers.py.
.venv/bin/python scripts/make_launchers.py
