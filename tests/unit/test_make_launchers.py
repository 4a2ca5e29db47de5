"""scripts/make_launchers.py: the installed launchers are the scripts'
statements with their search for paths done once, at install."""

import ast
import importlib.util
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _module():
    spec = importlib.util.spec_from_file_location(
        "make_launchers", os.path.join(REPO, "scripts", "make_launchers.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_launchers_search_nothing_and_start():
    mod = _module()
    for name in ("berth", "berth-runtime"):
        text = mod.installed(name)
        first, *rest = text.splitlines()
        assert first == f"#!{mod.VENV}/bin/python3 -IS"
        code = [line for line in rest if not line.lstrip().startswith("#")]
        body = "\n".join(code)
        assert "_add_paths" not in body and '"""' not in body and "exec " not in body
        paths = [line for line in rest if line.startswith("sys.path")]
        assert len(paths) == 1
        path: list[str] = ["/std"]
        exec(paths[0], {"sys": type("S", (), {"path": path})})
        added = [p for p in path if p != "/std"]
        # berth is importable from what it adds, as from the script's own search
        assert any(os.path.isdir(os.path.join(p, "berth")) for p in added)
        with open(os.path.join(REPO, "scripts", name)) as f:
            tree = ast.parse(f.read())
        found = mod.search_path(tree, f"{mod.VENV}/bin/{name}")
        assert sorted(added) == sorted(found)
        # site-packages after the standard library; a source directory first
        assert path.index(found[0]) > path.index("/std")
        assert all(path.index(p) < path.index("/std") for p in found[1:])
    # and the generated runtime launcher runs, from any directory
    out = subprocess.run([sys.executable, "-IS", "-c", mod.installed("berth-runtime"), "--version"],
                         capture_output=True, text=True, cwd="/", check=True).stdout
    assert out.startswith("berth-runtime version")
