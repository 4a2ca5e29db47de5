"""Container and volume records in the engine's database.

A container row keeps what Docker's inspect shows that is not derived: the
Docker-shaped `Config` and `HostConfig` (as JSON), and the state the monitor
records (status, pid, exit code, OOM kill, times, restart count, why it
stopped). Rows are changed by short transactions only; the lifecycle lock of
a container is a flock (`lock`), not a database lock, so a monitor can record
an exit while a CLI holds the container's lock.
"""

from __future__ import annotations

import _sqlite3 as sqlite3  # the C module alone (see berth/db.py)
import fcntl
import os

from berth import db, jsonio
from berth.engine import names
from berth.errors import AlreadyExistsError, InvalidArgumentError, NotFoundError
from berth.paths import Paths
from berth.structs import dataclass, field

TYPE_CHECKING = False  # typing is not imported on a container start's path
if TYPE_CHECKING:
    from typing import Any

ZERO_TIME = "0001-01-01T00:00:00Z"

SCHEMA = [
    """
    CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        image TEXT NOT NULL,
        image_id TEXT NOT NULL,
        created TEXT NOT NULL,
        config TEXT NOT NULL,
        host_config TEXT NOT NULL,
        extra TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL DEFAULT 'created',
        pid INTEGER NOT NULL DEFAULT 0,
        exit_code INTEGER NOT NULL DEFAULT 0,
        oom_killed INTEGER NOT NULL DEFAULT 0,
        error TEXT NOT NULL DEFAULT '',
        started_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        finished_at TEXT NOT NULL DEFAULT '0001-01-01T00:00:00Z',
        restart_count INTEGER NOT NULL DEFAULT 0,
        monitor_pid INTEGER NOT NULL DEFAULT 0,
        monitor_start INTEGER NOT NULL DEFAULT 0,
        stop_requested INTEGER NOT NULL DEFAULT 0,
        reason TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE volumes (
        name TEXT PRIMARY KEY,
        driver TEXT NOT NULL,
        created TEXT NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        options TEXT NOT NULL DEFAULT '{}',
        anonymous INTEGER NOT NULL DEFAULT 0
    );
    """,
    "ALTER TABLE containers ADD COLUMN health TEXT NOT NULL DEFAULT '';",
    """
    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time_nano INTEGER NOT NULL,
        type TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        attributes TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX events_time ON events (time_nano);
    """,
]

EVENT_INSERT = ("INSERT INTO events (time_nano, type, action, actor, attributes)"
                " VALUES (?, ?, ?, ?, ?)")

STATE_FIELDS = (
    "status", "pid", "exit_code", "oom_killed", "error", "started_at", "finished_at",
    "restart_count", "monitor_pid", "monitor_start", "stop_requested", "reason",
)


@dataclass
class ContainerRecord:
    id: str
    name: str
    image: str
    image_id: str
    created: str
    config: dict[str, Any]
    host_config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    status: str = "created"
    pid: int = 0
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""
    started_at: str = ZERO_TIME
    finished_at: str = ZERO_TIME
    restart_count: int = 0
    monitor_pid: int = 0
    monitor_start: int = 0
    stop_requested: bool = False
    reason: str = ""
    health: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> ContainerRecord:
        return cls(
            id=row["id"], name=row["name"], image=row["image"], image_id=row["image_id"],
            created=row["created"], config=_obj(row["config"]),
            host_config=_obj(row["host_config"]), extra=_obj(row["extra"]),
            status=row["status"], pid=row["pid"], exit_code=row["exit_code"],
            oom_killed=bool(row["oom_killed"]), error=row["error"],
            started_at=row["started_at"], finished_at=row["finished_at"],
            restart_count=row["restart_count"], monitor_pid=row["monitor_pid"],
            monitor_start=row["monitor_start"], stop_requested=bool(row["stop_requested"]),
            reason=row["reason"],
            health=_obj(row["health"]) if row["health"] else {},
        )

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def is_running(self) -> bool:
        return self.status in ("running", "paused", "restarting")


def _obj(text: str) -> dict[str, Any]:
    value = jsonio.loads(text)
    assert isinstance(value, dict)
    return value


class Store:
    """The containers and volumes tables."""

    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.conn = db.connect(paths.database)
        db.ensure_schema(self.conn, "containers", SCHEMA)

    def close(self) -> None:
        self.conn.close()

    # containers ----------------------------------------------------------------------------

    def insert(self, rec: ContainerRecord) -> None:
        """Insert a new container; a taken name is Docker's conflict error."""
        try:
            with db.transaction(self.conn):
                self.conn.execute(
                    "INSERT INTO containers (id, name, image, image_id, created, config,"
                    " host_config, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (rec.id, rec.name, rec.image, rec.image_id, rec.created,
                     jsonio.dumps(rec.config), jsonio.dumps(rec.host_config),
                     jsonio.dumps(rec.extra)),
                )
        except sqlite3.IntegrityError:
            other = self.conn.execute(
                "SELECT id FROM containers WHERE name = ?", (rec.name,)).fetchone()
            raise name_conflict(rec.name, other[0] if other else "") from None

    def pick_name(self) -> str:
        for retry in range(20):
            name = names.random_name(retry // 5)
            if not self.conn.execute(
                    "SELECT 1 FROM containers WHERE name = ?", (name,)).fetchone():
                return name
        return names.random_name(1) + names.new_id()[:4]

    def get(self, cid: str) -> ContainerRecord:
        row = self.conn.execute("SELECT * FROM containers WHERE id = ?", (cid,)).fetchone()
        if row is None:
            raise NotFoundError(f"No such container: {cid}", container_id=cid)
        return ContainerRecord.from_row(row)

    def resolve(self, ref: str) -> ContainerRecord:
        """Docker's lookup order: full id, exact name, unique id prefix."""
        if not ref:
            raise InvalidArgumentError("container name or ID cannot be empty")
        row = self.conn.execute("SELECT * FROM containers WHERE id = ?", (ref,)).fetchone()
        if row is None:
            row = self.conn.execute(
                "SELECT * FROM containers WHERE name = ?", (ref.removeprefix("/"),)).fetchone()
        if row is None and all(c in "0123456789abcdef" for c in ref):
            rows = self.conn.execute(
                "SELECT * FROM containers WHERE id >= ? AND id < ? LIMIT 2",
                (ref, ref + "g")).fetchall()
            if len(rows) > 1:
                raise InvalidArgumentError(
                    f"multiple IDs found with provided prefix: {ref}", container_id=ref)
            row = rows[0] if rows else None
        if row is None:
            raise NotFoundError(f"No such container: {ref}", container_id=ref)
        return ContainerRecord.from_row(row)

    def list(self) -> list[ContainerRecord]:
        rows = self.conn.execute("SELECT * FROM containers ORDER BY created DESC").fetchall()
        return [ContainerRecord.from_row(r) for r in rows]

    def update(self, cid: str, **values: Any) -> None:
        if not values:
            return
        cols = ", ".join(f"{k} = ?" for k in values)
        args = [jsonio.dumps(v) if isinstance(v, dict) else v for v in values.values()]
        with db.transaction(self.conn):
            self.conn.execute(f"UPDATE containers SET {cols} WHERE id = ?", (*args, cid))

    def record_exit(self, cid: str, code: int, info: dict[str, Any],
                    attributes: dict[str, str]) -> None:
        """The exit of a foreground `run --rm` container, recorded by its CLI
        before it removes it (engine/monitor.py: Monitor.cli_removes): the
        row's state and the oom and die events, as its monitor records them
        (`info` is from it: oom, finished_at and the reason, as stopped or not)."""
        import time

        with db.transaction(self.conn):
            row = self.conn.execute("SELECT stop_requested FROM containers WHERE id = ?",
                                    (cid,)).fetchone()
            if row is None:
                return
            self.conn.execute(
                "UPDATE containers SET status = 'exited', pid = 0, exit_code = ?,"
                " oom_killed = ?, finished_at = ?, reason = ? WHERE id = ?",
                (code, int(bool(info["oom"])), info["finished_at"],
                 info["reason_stopped" if row[0] else "reason"], cid))
            events = [("oom", {})] if info["oom"] else []
            events.append(("die", {"exitCode": str(code)}))
            for action, extra in events:
                self.conn.execute(EVENT_INSERT, (time.time_ns(), "container", action, cid,
                                                 jsonio.dumps({**attributes, **extra})))

    def rename(self, cid: str, new_name: str) -> None:
        try:
            self.update(cid, name=new_name)
        except sqlite3.IntegrityError:
            other = self.conn.execute(
                "SELECT id FROM containers WHERE name = ?", (new_name,)).fetchone()
            raise name_conflict(new_name, other[0] if other else "") from None

    def delete(self, cid: str) -> None:
        with db.transaction(self.conn):
            self.conn.execute("DELETE FROM containers WHERE id = ?", (cid,))

    # events --------------------------------------------------------------------------------

    def event(self, action: str, actor: str, attributes: dict[str, str],
              kind: str = "container") -> None:
        import time

        with db.transaction(self.conn):
            self.conn.execute(EVENT_INSERT, (time.time_ns(), kind, action, actor,
                                             jsonio.dumps(attributes)))

    def events(self, after_seq: int = 0, since_ns: int = 0, until_ns: int = 0
               ) -> list[sqlite3.Row]:
        q = "SELECT * FROM events WHERE seq > ? AND time_nano >= ?"
        args: list[int] = [after_seq, since_ns]
        if until_ns:
            q += " AND time_nano <= ?"
            args.append(until_ns)
        return self.conn.execute(q + " ORDER BY seq", args).fetchall()

    # volumes -------------------------------------------------------------------------------

    def volume_insert(self, name: str, driver: str, created: str, labels: dict[str, str],
                      options: dict[str, str], anonymous: bool = False) -> bool:
        """Insert a volume; False if one of that name exists."""
        with db.transaction(self.conn):
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO volumes (name, driver, created, labels, options,"
                " anonymous) VALUES (?, ?, ?, ?, ?, ?)",
                (name, driver, created, jsonio.dumps(labels), jsonio.dumps(options),
                 int(anonymous)))
            return cur.rowcount == 1

    def volume_get(self, name: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM volumes WHERE name = ?", (name,)).fetchone()

    def volume_list(self) -> list[sqlite3.Row]:
        return self.conn.execute("SELECT * FROM volumes ORDER BY name").fetchall()

    def volume_delete(self, name: str) -> None:
        with db.transaction(self.conn):
            self.conn.execute("DELETE FROM volumes WHERE name = ?", (name,))


def name_conflict(name: str, other: str) -> AlreadyExistsError:
    return AlreadyExistsError(
        f'Conflict. The container name "/{name}" is already in use by container "{other}".'
        " You have to remove (or rename) that container to be able to reuse that name.",
        name=name)


class Lock:
    """An exclusive flock on a container's lock file (lifecycle operations on
    one container are serialised across processes)."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Lock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
