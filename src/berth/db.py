"""The engine's SQLite database: one file (WAL), schema migrations per component.

Each subsystem (images, containers, ...) owns its tables and declares its
schema as an ordered list of SQL scripts; `migrate` applies the ones not yet
applied, recording the version in `schema_versions`. Connections are cheap and
per-thread (sqlite3 objects are not shared between threads)::

    IMAGES_SCHEMA = ["CREATE TABLE images (...)", "ALTER TABLE images ADD ..."]
    conn = connect(paths.database)
    migrate(conn, "images", IMAGES_SCHEMA)
    with transaction(conn):
        conn.execute("INSERT ...")
"""

from __future__ import annotations

# the C module alone: the sqlite3 package around it adds Python-level
# aliases, the (deprecated) datetime adapters and Row's registration as a
# Sequence, and imports datetime for them (~2.5 ms of a cold `berth run`);
# its classes and exceptions are these very objects
import _sqlite3 as sqlite3
import os

from berth.errors import InternalError, UnavailableError

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from collections.abc import Sequence

BUSY_TIMEOUT_S = 30.0


def connect(path: str) -> sqlite3.Connection:
    """Open (creating) the database at `path` in WAL mode, autocommit, rows as
    sqlite3.Row."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    try:
        conn = sqlite3.connect(
            path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    except sqlite3.Error as exc:
        raise UnavailableError(f"open database {path}: {exc}", path=path) from exc
    return conn


class transaction:
    """``with transaction(conn):`` BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on
    error. Not re-entrant. (A class: contextlib is not imported on a
    container start's path, see berth/ctx.py.)"""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, typ: object, value: object, tb: object) -> bool:
        self.conn.execute("COMMIT" if typ is None else "ROLLBACK")
        return False


def ensure_schema(conn: sqlite3.Connection, component: str, scripts: Sequence[str]) -> None:
    """`migrate`, unless the recorded version is already the latest: read
    first, since migrate always writes (a transaction, a WAL frame per
    command), and a container start opens every table it uses."""
    try:
        row = conn.execute("SELECT version FROM schema_versions WHERE component = ?",
                           (component,)).fetchone()
    except sqlite3.OperationalError:
        row = None
    if row is None or row[0] != len(scripts):
        migrate(conn, component, scripts)


def migrate(conn: sqlite3.Connection, component: str, scripts: Sequence[str]) -> int:
    """Apply the scripts of `component` past its recorded version, each in one
    transaction; return the new version."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions"
        " (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    with transaction(conn):
        row = conn.execute(
            "SELECT version FROM schema_versions WHERE component = ?", (component,)
        ).fetchone()
        current = row[0] if row else 0
        if current > len(scripts):
            raise InternalError(
                f"migrate {component} schema: database version {current} is newer than "
                f"this berth ({len(scripts)})"
            )
        for version in range(current, len(scripts)):
            for statement in _statements(scripts[version]):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
            " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
            (component, len(scripts)),
        )
    return len(scripts)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction; split on complete statements instead
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
