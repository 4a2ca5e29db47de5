"""Run every benchmark in bench/ (or those named) and print their result
lines: berth's figure, the peer's, and the ratio, measured in the same run.

    sudo .venv/bin/python bench/run.py [name ...]
"""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SKIP = {"run.py", "common.py", "__init__.py"}


def main() -> int:
    names = sys.argv[1:] or sorted(f[:-3] for f in os.listdir(HERE) if f.endswith(".py") and f not in SKIP)
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        p = subprocess.run([sys.executable, os.path.join(HERE, f"{name}.py")])
        if p.returncode != 0:
            print(f"{name}: failed with exit code {p.returncode}", flush=True)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
