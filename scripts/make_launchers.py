"""Write the installed launchers, .venv/bin/berth and .venv/bin/berth-runtime,
from scripts/berth and scripts/berth-runtime (run by scripts/install.sh with
the environment's interpreter, after pip has installed berth).

The scripts in scripts/ find their paths when they start (their _add_paths:
the environment's site-packages, and an editable install's source directory
from its .pth file) and carry a long docstring and shell lines: a script run
as a program is compiled on every start (no bytecode cache), ~0.5 ms, and the
search costs ~0.2 ms more, on every `berth` and `berth-runtime` command. The
installed copies get what _add_paths would find written in (computed here by
running that very function; an editable install's source directory first,
see path_statement), the interpreter and `-IS` on their #! line, and no
docstring: the same statements otherwise, in the same order.

    .venv/bin/python scripts/make_launchers.py
"""

import ast
import os
import sys
import types

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))


def installed(name: str) -> str:
    path = os.path.join(SCRIPTS, name)
    with open(path) as f:
        src = f.read()
    tree = ast.parse(src, path)
    target = os.path.join(VENV, "bin", name)
    out = [f"#!{VENV}/bin/python3 -IS",
           f"# written by scripts/make_launchers.py from scripts/{name} (which explains it):",
           "# its statements, with the paths its _add_paths finds written in"]
    for node in tree.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # the shell lines and the docstring
        if isinstance(node, ast.FunctionDef) and node.name == "_add_paths":
            continue
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id == "_add_paths"):
            out.append(path_statement(search_path(tree, target)))
            continue
        out.append(ast.get_source_segment(src, node, padded=True))
    return "\n".join(out) + "\n"


def path_statement(added: list[str]) -> str:
    """The statement that puts `added` (search_path's) on sys.path: an
    editable install's source directory (which holds berth alone) first, so
    that `import berth` looks in no other directory (~0.25 ms: a listing of
    each directory it would look in first); the environment's site-packages
    last, as the script puts it (it must not shadow the standard library)."""
    site, sources = added[:1], added[1:]
    if not sources:
        return f"sys.path += {site!r}"
    return f"sys.path[:0] = {sources!r}; sys.path += {site!r}"


def search_path(tree: ast.Module, target: str) -> list[str]:
    """What the script's _add_paths appends to sys.path when run as `target`."""
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_add_paths")
    fake = types.SimpleNamespace(version_info=sys.version_info, path=[])
    ns: dict = {"sys": fake, "__file__": target}
    exec(compile(ast.Module(body=[fn], type_ignores=[]), "_add_paths", "exec"), ns)
    ns["_add_paths"]()
    return fake.path


def main() -> None:
    for name in ("berth", "berth-runtime"):
        text = installed(name)
        compile(text, name, "exec")  # never write a launcher that cannot start
        target = os.path.join(VENV, "bin", name)
        tmp = f"{target}.tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)


if __name__ == "__main__":
    main()
