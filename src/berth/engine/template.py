"""A subset of Go's text/template, as `docker ... --format` uses it:
``{{.State.Pid}}``, ``{{.Name}}``, ``{{json .Config}}``, ``{{index .Labels "k"}}``,
``{{upper .X}}``, ``{{lower .X}}``, ``{{join .Args " "}}``, ``{{println .X}}``,
literal text with ``\\t`` and ``\\n`` escapes (as the Docker CLI expands
them). Pure."""

from __future__ import annotations

from typing import Any

from berth import jsonio
from berth.errors import InvalidArgumentError


def _split(template: str) -> list[tuple[bool, str]]:
    parts: list[tuple[bool, str]] = []
    i = 0
    while i < len(template):
        j = template.find("{{", i)
        if j < 0:
            parts.append((False, template[i:]))
            break
        if j > i:
            parts.append((False, template[i:j]))
        k = template.find("}}", j)
        if k < 0:
            raise InvalidArgumentError(f"template parsing error: unclosed action in "
                                       f"{template!r}")
        parts.append((True, template[j + 2:k].strip().strip("-").strip()))
        i = k + 2
    return parts


def _tokens(expr: str) -> list[str]:
    out, cur, quoted = [], "", False
    for ch in expr:
        if ch == '"':
            quoted = not quoted
            cur += ch
        elif ch.isspace() and not quoted:
            if cur:
                out.append(cur)
                cur = ""
        else:
            cur += ch
    if cur:
        out.append(cur)
    return out


def _value(token: str, data: Any) -> Any:
    if token.startswith('"') and token.endswith('"') and len(token) >= 2:
        return token[1:-1].replace("\\n", "\n").replace("\\t", "\t")
    if token == ".":
        return data
    if not token.startswith("."):
        if token.isdigit():
            return int(token)
        raise InvalidArgumentError(f'template: function "{token}" not defined')
    cur = data
    for key in token[1:].split("."):
        if isinstance(cur, dict):
            if key not in cur:
                raise InvalidArgumentError(
                    f'template: executing "" at <{token}>: map has no entry for key "{key}"')
            cur = cur[key]
        else:
            cur = getattr(cur, key, None)
    return cur


def _text(v: Any) -> str:
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{_text(x)}" for k, x in sorted(v.items())) + "]"
    if isinstance(v, list):
        return "[" + " ".join(_text(x) for x in v) + "]"
    return str(v)


def _call(tokens: list[str], data: Any) -> Any:
    fn = tokens[0]
    args = [_value(t, data) for t in tokens[1:]]
    if fn == "json":
        return jsonio.dumps(args[0] if args else None)
    if fn == "index":
        cur = args[0]
        for key in args[1:]:
            cur = cur.get(key) if isinstance(cur, dict) else cur[int(key)]
        return cur
    if fn == "upper":
        return _text(args[0]).upper()
    if fn == "lower":
        return _text(args[0]).lower()
    if fn == "join":
        return str(args[1]).join(_text(x) for x in args[0] or [])
    if fn == "println":
        return " ".join(_text(a) for a in args) + "\n"
    if fn == "printf":
        return str(args[0]) % tuple(args[1:]) if len(args) > 1 else str(args[0])
    if fn in ("title",):
        return _text(args[0]).title()
    if fn == "len":
        return len(args[0] or [])
    raise InvalidArgumentError(f'template: function "{fn}" not defined')


def render(template: str, data: Any) -> str:
    template = template.replace("\\t", "\t").replace("\\n", "\n")
    out = []
    for is_action, text in _split(template):
        if not is_action:
            out.append(text)
            continue
        tokens = _tokens(text)
        if not tokens:
            continue
        if tokens[0].startswith(".") or tokens[0].startswith('"'):
            v = _value(tokens[0], data)
        else:
            v = _call(tokens, data)
        out.append(v if isinstance(v, str) else _text(v))
    return "".join(out)
