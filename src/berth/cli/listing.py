"""`berth ps/logs/inspect/top/stats`: reading commands, Docker's columns and
formats."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

from berth.cli.containers import command, engine
from berth.errors import BerthError, InvalidArgumentError

PS_TABLE = ("table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.CreatedAt}}\t{{.Status}}\t{{.Ports}}"
            "\t{{.Names}}")
PS_HEADERS = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND",
              "CreatedAt": "CREATED", "RunningFor": "CREATED", "Status": "STATUS",
              "Ports": "PORTS", "Names": "NAMES", "State": "STATE", "Labels": "LABELS",
              "Size": "SIZE", "Mounts": "MOUNTS", "Networks": "NETWORKS"}


def table(rows: list[list[str]], headers: list[str]) -> str:
    """Docker's tabwriter: columns padded to the widest cell plus 3 spaces."""
    widths = [len(h) for h in headers]
    for r in rows:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))
    lines = []
    for r in [headers, *rows]:
        cells = [c.ljust(widths[i] + 3) if i < len(r) - 1 else c for i, c in enumerate(r)]
        lines.append("".join(cells).rstrip())
    return "\n".join(lines)


def render_rows(fmt: str, items: list[dict[str, Any]], headers: dict[str, str]) -> str:
    from berth.engine import template

    if fmt.startswith("table"):
        body = fmt[len("table"):].strip()
        body = body.replace("\\t", "\t")
        cols = body.split("\t")
        head = []
        for c in cols:
            key = c.strip().removeprefix("{{").removesuffix("}}").strip().lstrip(".")
            head.append(headers.get(key, key.upper()))
        rows = [[template.render(c, it) for c in cols] for it in items]
        return table(rows, head)
    return "\n".join(template.render(fmt, it) for it in items)


def _name_matches(pattern: str, name: str) -> bool:
    """Docker's name filter: a regular expression searched in the name
    (`name=^web$` for an exact name); one that does not compile matches nothing."""
    import re

    try:
        return re.search(pattern, name) is not None
    except re.error:
        return False


def _ps_filter(rec, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        ok = False
        for v in values:
            if key == "id":
                ok = rec.id.startswith(v)
            elif key == "name":
                ok = _name_matches(v, rec.name)
            elif key == "status":
                ok = rec.status == v
            elif key == "label":
                k, eq, val = v.partition("=")
                labels = rec.config.get("Labels") or {}
                ok = k in labels and (not eq or labels[k] == val)
            elif key == "exited":
                ok = rec.status == "exited" and str(rec.exit_code) == v
            elif key == "ancestor":
                ok = rec.image == v or rec.image_id.removeprefix("sha256:").startswith(
                    v.removeprefix("sha256:"))
            else:
                raise InvalidArgumentError(f"invalid filter '{key}'")
            if ok:
                break
        if not ok:
            return False
    return True


@command("ps")
@click.option("-a", "--all", "show_all", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.option("--no-trunc", is_flag=True)
@click.option("-f", "--filter", "filters", multiple=True)
@click.option("--format", "fmt", default="")
@click.option("-n", "--last", type=int, default=-1)
@click.option("-l", "--latest", is_flag=True)
@click.option("-s", "--size", is_flag=True)
@click.pass_context
def ps(ctx: click.Context, show_all: bool, quiet: bool, no_trunc: bool,
       filters: tuple[str, ...], fmt: str, last: int, latest: bool, size: bool) -> None:
    """List containers."""
    from berth.engine import views

    parsed: dict[str, list[str]] = {}
    for f in filters:
        k, eq, v = f.partition("=")
        if not eq:
            raise InvalidArgumentError(f"bad format of filter (expected name=value): {f}")
        parsed.setdefault(k, []).append(v)
    eng = engine(ctx)
    recs = eng.list()
    if latest:
        last = 1
    if last > 0:
        show_all = True
        recs = recs[:last]
    if not show_all and "status" not in parsed:
        recs = [r for r in recs if r.status in ("running", "paused", "restarting")]
    recs = [r for r in recs if _ps_filter(r, parsed)]
    if quiet:
        for r in recs:
            click.echo(r.id if no_trunc else r.short_id)
        return
    from berth.network.attach import ports_column

    published = ports_column(eng.paths)
    items = []
    for r in recs:
        items.append({
            "ID": r.id if no_trunc else r.short_id,
            "Image": r.image,
            "Command": views.command_text(r, not no_trunc),
            "CreatedAt": views.created_text(r),
            "RunningFor": views.created_text(r),
            "Status": views.status_text(r),
            "State": r.status,
            "Ports": published.get(r.id, ""),
            "Names": r.name,
            "Labels": ",".join(f"{k}={v}" for k, v in (r.config.get("Labels") or {}).items()),
            "Mounts": ",".join(m.get("Source", "")[:15] for m in
                               r.host_config.get("Mounts") or []),
            "Networks": r.host_config.get("NetworkMode") or "none",
            "Size": "0B",
        })
    text = render_rows(fmt or PS_TABLE, items, PS_HEADERS)
    if text:
        click.echo(text)


@command("logs")
@click.option("-f", "--follow", is_flag=True)
@click.option("-n", "--tail", default="all")
@click.option("-t", "--timestamps", is_flag=True)
@click.option("--since", default="")
@click.option("--until", default="")
@click.option("--details", is_flag=True)
@click.argument("container")
@click.pass_context
def logs(ctx: click.Context, container: str, follow: bool, tail: str, timestamps: bool,
         since: str, until: str, details: bool) -> None:
    """Fetch the logs of a container."""
    from berth.engine import logs as lg

    eng = engine(ctx)
    rec = eng.get(container)
    path = eng.log_path(rec.id)
    if tail != "all" and not tail.lstrip("-").isdigit():
        raise InvalidArgumentError(f'invalid value for "tail": "{tail}"')
    n = None if tail == "all" or int(tail) < 0 else int(tail)
    offset = lg.size(path)
    out = sys.stdout.buffer
    err = sys.stderr.buffer

    def emit(e: lg.Entry) -> None:
        stream = err if e.stream == "stderr" else out
        text = f"{e.time} {e.text}" if timestamps else e.text
        stream.write(text.encode())
        stream.flush()

    for e in lg.read(path, n, _ts(since), _ts(until)):
        emit(e)
    if follow:
        def running() -> bool:
            try:
                return eng.store.get(rec.id).is_running
            except BerthError:
                return False

        try:
            for e in lg.follow(path, running, offset):
                emit(e)
        except KeyboardInterrupt:
            return


def _ts(text: str) -> str:
    """--since/--until: an RFC 3339 time, a unix time or a duration (10m)."""
    if not text:
        return ""
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        t = time.time() - float(text[:-1]) * units[text[-1]]
    elif text.replace(".", "", 1).isdigit():
        t = float(text)
    else:
        return text
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


@command("inspect")
@click.option("-f", "--format", "fmt", default="")
@click.option("-s", "--size", is_flag=True)
@click.option("--type", "kind", default="")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...], fmt: str, size: bool,
            kind: str) -> None:
    """Return low-level information on containers (and volumes, images)."""
    from berth import jsonio
    from berth.engine import template
    from berth.errors import NotFoundError

    eng = engine(ctx)
    results, failed = [], False
    for ref in names:
        try:
            results.append(inspect_container(eng, ref))
            continue
        except NotFoundError:
            pass
        try:
            if kind in ("", "volume"):
                results.append(eng.volumes.inspect(ref))
                continue
        except NotFoundError:
            pass
        try:
            if kind in ("", "image"):
                results.append(eng.images.inspect(ref))
                continue
        except NotFoundError:
            pass
        click.echo(f"Error: No such object: {ref}", err=True)
        failed = True
    if fmt:
        for r in results:
            click.echo(template.render(fmt, r))
    else:
        click.echo(jsonio.dumps(results, indent=4) if results else "[]")
    if failed:
        sys.exit(1)


def inspect_container(eng, ref: str) -> dict[str, Any]:
    from berth.engine import views

    rec = eng.get(ref)
    graph: dict[str, Any] = {"Driver": "", "Data": None}
    try:
        snaps = eng.images.snapshots
        graph = {"Driver": snaps.driver, "Data": {"MergedDir": eng.rootfs(rec.id)}}
    except BerthError:
        pass
    out = views.inspect(rec, eng.bundle(rec.id), eng.log_path(rec.id), graph)
    if rec.is_running:
        from berth.network.attach import network_settings

        settings = network_settings(eng.paths, rec.id)
        if settings["Networks"]:
            out["NetworkSettings"].update(settings)
    for m in out["Mounts"]:
        if m["Type"] == "volume":
            m["Source"] = eng.volumes.path(m["Name"])
    return out


@command("top", context_settings={"allow_interspersed_args": False,
                                  "help_option_names": ["-h", "--help"]})
@click.argument("container")
@click.argument("ps_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def top(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Display the running processes of a container."""
    import subprocess

    eng = engine(ctx)
    rec = eng.get(container)
    pids = set(eng.pids(rec))
    args = list(ps_args) or ["-ef"]
    # as dockerd: the container's pids named with -q (so `-o pid,comm`, which
    # alone selects the caller's terminal, still lists them), and once more
    # without it for options that refuse -q (such as f)
    out = subprocess.run(["ps", *args, "-q", ",".join(map(str, sorted(pids)))],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        out = subprocess.run(["ps", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        # as dockerd: the first line of ps's complaint, or its exit status
        why = (out.stderr.strip().splitlines() or [f"exit status {out.returncode}"])[0]
        raise InvalidArgumentError(f"ps: {why}")
    lines = out.stdout.splitlines()
    if not lines:
        return
    header = lines[0].split()
    try:
        col = header.index("PID")
    except ValueError:
        raise InvalidArgumentError("Couldn't find PID field in ps output") from None
    rows = []
    for line in lines[1:]:
        fields = line.split(None, len(header) - 1)
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            rows.append(fields)
    click.echo(table(rows, header))


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n}B"


def _human_si(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.4g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


@command("stats")
@click.option("-a", "--all", "show_all", is_flag=True)
@click.option("--no-stream", is_flag=True)
@click.option("--no-trunc", is_flag=True)
@click.option("--format", "fmt", default="")
@click.argument("containers", nargs=-1)
@click.pass_context
def stats(ctx: click.Context, containers: tuple[str, ...], show_all: bool, no_stream: bool,
          no_trunc: bool, fmt: str) -> None:
    """Display resource usage statistics of containers."""
    eng = engine(ctx)
    recs = [eng.get(c) for c in containers] if containers else [
        r for r in eng.list() if show_all or r.status in ("running", "paused")]
    fmt = fmt or ("table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}"
                  "\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}")
    headers = {"ID": "CONTAINER ID", "Container": "CONTAINER", "Name": "NAME",
               "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %",
               "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
    while True:
        first = {r.id: _sample(eng, r) for r in recs}
        time.sleep(0.5)
        items = []
        for r in recs:
            a, b = first[r.id], _sample(eng, r)
            items.append(_stats_row(r, a, b, no_trunc))
        text = render_rows(fmt, items, headers)
        if no_stream:
            click.echo(text)
            return
        click.echo("\x1b[2J\x1b[H" + text)


def _sample(eng, rec) -> tuple[float, dict[str, Any] | None]:
    if rec.status not in ("running", "paused"):
        return time.monotonic(), None
    try:
        return time.monotonic(), eng.stats(rec)
    except (BerthError, OSError):
        return time.monotonic(), None


def _total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 0


def _stats_row(rec, a, b, no_trunc: bool) -> dict[str, str]:
    row = {"ID": rec.id if no_trunc else rec.short_id, "Container": rec.short_id,
           "Name": rec.name, "CPUPerc": "--", "MemUsage": "-- / --", "MemPerc": "--",
           "NetIO": "--", "BlockIO": "--", "PIDs": "--"}
    (t0, s0), (t1, s1) = a, b
    if s0 is None or s1 is None:
        row.update({"CPUPerc": "0.00%", "MemUsage": "0B / 0B", "MemPerc": "0.00%",
                    "NetIO": "0B / 0B", "BlockIO": "0B / 0B", "PIDs": "0"})
        return row
    cpu = (s1["cpu"]["usage"]["total"] - s0["cpu"]["usage"]["total"]) / max(
        1e-9, (t1 - t0) * 1e9) * 100
    mem = s1["memory"]["usage"]["usage"]
    # Docker shows usage without the page cache (inactive_file)
    raw = s1["memory"].get("raw") or {}
    mem -= raw.get("total_inactive_file", raw.get("inactive_file", 0))
    limit = s1["memory"]["usage"]["limit"]
    total = _total_memory()
    if not limit or limit > total:
        limit = total
    reads = writes = 0
    for e in s1["blkio"].get("ioServiceBytesRecursive") or []:
        op = (e.get("op") or "").lower()
        if op == "read":
            reads += e.get("value", 0)
        elif op == "write":
            writes += e.get("value", 0)
    row.update({
        "CPUPerc": f"{cpu:.2f}%",
        "MemUsage": f"{_human(max(0, mem))} / {_human(limit)}",
        "MemPerc": f"{(max(0, mem) / limit * 100 if limit else 0):.2f}%",
        "NetIO": "0B / 0B",
        "BlockIO": f"{_human_si(reads)} / {_human_si(writes)}",
        "PIDs": str(s1["pids"]["current"]),
    })
    return row


@command("events")
@click.option("--since", default="")
@click.option("--until", default="")
@click.option("-f", "--filter", "filters", multiple=True)
@click.option("--format", "fmt", default="")
@click.pass_context
def events(ctx: click.Context, since: str, until: str, filters: tuple[str, ...],
           fmt: str) -> None:
    """Get real time events from the engine (past ones with --since; streams
    until --until, or until interrupted)."""
    from berth import jsonio
    from berth.engine import template

    parsed: dict[str, list[str]] = {}
    for f in filters:
        k, eq, v = f.partition("=")
        if not eq or k not in ("container", "event", "type", "image", "label"):
            raise InvalidArgumentError(f"invalid filter '{f}'")
        parsed.setdefault(k, []).append(v)
    eng = engine(ctx)
    now_ns = time.time_ns()
    since_ns = _ns(since, now_ns) if since else now_ns
    until_ns = _ns(until, now_ns) if until else 0

    def matches(e: dict[str, Any]) -> bool:
        attrs = e["Actor"]["Attributes"]
        for k, values in parsed.items():
            if k == "container":
                ok = any(e["Actor"]["ID"].startswith(v) or attrs.get("name") == v
                         for v in values)
            elif k == "event":
                ok = any(e["Action"] == v or e["Action"].split(":")[0] == v for v in values)
            elif k == "type":
                ok = e["Type"] in values
            elif k == "image":
                ok = attrs.get("image") in values
            else:
                ok = any(attrs.get(v.partition("=")[0]) == v.partition("=")[2]
                         if "=" in v else v in attrs for v in values)
            if not ok:
                return False
        return True

    seq = 0
    try:
        while True:
            for row in eng.store.events(seq, since_ns, until_ns):
                seq = row["seq"]
                attrs = jsonio.loads(row["attributes"])
                e = {"Type": row["type"], "Action": row["action"], "status": row["action"],
                     "id": row["actor"], "from": attrs.get("image", ""),
                     "Actor": {"ID": row["actor"], "Attributes": attrs},
                     "scope": "local", "time": row["time_nano"] // 1_000_000_000,
                     "timeNano": row["time_nano"]}
                if not matches(e):
                    continue
                if fmt:
                    click.echo(template.render(fmt, e))
                else:
                    t = row["time_nano"]
                    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t // 10**9))
                    pairs = ", ".join(f"{k}={v}" for k, v in sorted(attrs.items()))
                    click.echo(f"{stamp}.{t % 10**9:09d}Z {row['type']} {row['action']} "
                               f"{row['actor']} ({pairs})")
            if until_ns and time.time_ns() >= until_ns:
                return
            time.sleep(0.1)
    except KeyboardInterrupt:
        return


def _ns(text: str, now_ns: int) -> int:
    """--since/--until: a unix time, a duration ago (10m), or RFC 3339."""
    units = {"s": 1, "m": 60, "h": 3600}
    if text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now_ns - int(float(text[:-1]) * units[text[-1]] * 1e9)
    if text.replace(".", "", 1).isdigit():
        return int(float(text) * 1e9)
    try:
        base = time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise InvalidArgumentError(f"invalid time: {text}") from None
    import calendar

    return calendar.timegm(base) * 10**9


COMMANDS = [ps, logs, inspect, top, stats, events]
