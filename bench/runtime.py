"""berth-runtime against runc: `run` of /bin/true in the busybox bundle,
cold (a new process each time), alternating, same bundle, same run.

    sudo .venv/bin/python bench/runtime.py [--runs N]
"""

import argparse
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import BERTH_RUNTIME, alternate, busybox_bundle, report


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    if not shutil.which("runc"):
        sys.exit("runc is not installed (apt-get install runc)")
    bundle = busybox_bundle("true", ["/bin/true"])
    # both runtimes keep state on tmpfs, as with their defaults (/run/...)
    roots = tempfile.mkdtemp(prefix="berth-bench-", dir="/run")
    try:
        n = [0]

        def argv(rt: list[str], root: str) -> list[str]:
            return [*rt, "--root", root, "run", "--bundle", bundle, "bench"]

        res = alternate({
            "berth": argv([BERTH_RUNTIME], os.path.join(roots, "berth")),
            "runc": argv(["runc"], os.path.join(roots, "runc")),
        }, runs=args.runs, before=lambda name: n.__setitem__(0, n[0] + 1))
        report("runtime run /bin/true", res["berth"], "runc", res["runc"])
    finally:
        shutil.rmtree(roots, ignore_errors=True)


if __name__ == "__main__":
    main()
