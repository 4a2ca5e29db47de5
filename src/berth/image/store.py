"""The image index: names and tags -> images, kept in the engine's database.

An image is identified, as in Docker, by the digest of its config (its ID).
It records the manifest it came with (the blobs of config, manifest and
layers are in the content store), the top chain ID of its unpacked layers,
its tags (``docker.io/library/busybox:latest``) and repo digests
(``docker.io/library/busybox@sha256:...``).
"""

from __future__ import annotations

import _sqlite3 as sqlite3  # the C module alone (see berth/db.py)
import time

from berth import db
from berth.errors import ConflictError, InvalidArgumentError, NotFoundError
from berth.oci import reference
from berth.oci.digest import Digest, is_digest
from berth.structs import dataclass

SCHEMA = [
    """
    CREATE TABLE images (
        id TEXT PRIMARY KEY,
        manifest TEXT NOT NULL,
        manifest_media_type TEXT NOT NULL,
        index_digest TEXT NOT NULL DEFAULT '',
        created TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL DEFAULT 0,
        chain_id TEXT NOT NULL DEFAULT '',
        added REAL NOT NULL,
        last_tag_time TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE image_tags (
        ref TEXT PRIMARY KEY,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
    );
    CREATE TABLE image_repo_digests (
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        PRIMARY KEY (name, digest)
    );
    CREATE TABLE image_layers (
        chain_id TEXT PRIMARY KEY,
        diff_id TEXT NOT NULL,
        size INTEGER NOT NULL
    );
    CREATE INDEX image_tags_by_image ON image_tags (image_id);
    CREATE INDEX image_repo_digests_by_image ON image_repo_digests (image_id);
    """
]


@dataclass(frozen=True)
class ImageRecord:
    id: Digest
    manifest: Digest
    manifest_media_type: str
    index_digest: str
    created: str
    size: int
    chain_id: str
    added: float
    last_tag_time: str
    tags: tuple[str, ...]
    repo_digests: tuple[str, ...]

    @property
    def short_id(self) -> str:
        return self.id.hex[:12]

    @property
    def dangling(self) -> bool:
        return not self.tags


def _now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


class ImageStore:
    def __init__(self, database: str, conn: sqlite3.Connection | None = None) -> None:
        """`conn`: a connection to `database` to use (its owner closes it)
        rather than one of our own, opened on first use."""
        self.database = database
        self._conn = conn
        self._own = conn is None
        if conn is not None:
            db.ensure_schema(conn, "images", SCHEMA)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = db.connect(self.database)
            db.ensure_schema(self._conn, "images", SCHEMA)
        return self._conn

    def close(self) -> None:
        if self._conn is not None and self._own:
            self._conn.close()
        self._conn = None
        self._own = True

    # reading ----------------------------------------------------------------------------

    def _record(self, row: sqlite3.Row) -> ImageRecord:
        tags = tuple(r[0] for r in self.conn.execute(
            "SELECT ref FROM image_tags WHERE image_id = ? ORDER BY ref", (row["id"],)))
        digests = tuple(f"{r[0]}@{r[1]}" for r in self.conn.execute(
            "SELECT name, digest FROM image_repo_digests WHERE image_id = ? ORDER BY name",
            (row["id"],)))
        return ImageRecord(Digest(row["id"]), Digest(row["manifest"]),
                           row["manifest_media_type"], row["index_digest"], row["created"],
                           row["size"], row["chain_id"], row["added"], row["last_tag_time"],
                           tags, digests)

    def get(self, image_id: str) -> ImageRecord:
        row = self.conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no such image: {image_id}", image=image_id)
        return self._record(row)

    def list(self) -> list[ImageRecord]:
        rows = self.conn.execute("SELECT * FROM images ORDER BY added DESC").fetchall()
        return [self._record(r) for r in rows]

    def resolve(self, text: str) -> ImageRecord:
        """An image by reference (``busybox``, ``name@digest``), full ID
        (``sha256:...``) or unique ID prefix, as Docker resolves them."""
        if not text:
            raise InvalidArgumentError("resolve image: empty name")
        if is_digest(text):
            return self.get(text)
        hexchars = set("0123456789abcdef")
        if "/" not in text and ":" not in text and "@" not in text and set(text) <= hexchars:
            rows = self.conn.execute(
                "SELECT id FROM images WHERE id LIKE ?", (f"sha256:{text}%",)
            ).fetchall()
            if len(rows) == 1:
                return self.get(rows[0][0])
            if len(rows) > 1 and len(text) < 64:
                raise InvalidArgumentError(f"resolve image {text}: ambiguous id prefix")
        try:
            ref = reference.parse(text)
        except InvalidArgumentError:
            raise NotFoundError(f"no such image: {text}", image=text) from None
        if ref.digest is not None:
            row = self.conn.execute(
                "SELECT image_id FROM image_repo_digests WHERE name = ? AND digest = ?",
                (ref.name, ref.digest),
            ).fetchone()
            if row is None:
                # an image pulled by digest may be known by its config digest too
                row = self.conn.execute(
                    "SELECT id FROM images WHERE (manifest = ? OR index_digest = ?)",
                    (ref.digest, ref.digest),
                ).fetchone()
        else:
            row = self.conn.execute(
                "SELECT image_id FROM image_tags WHERE ref = ?", (ref.tagged,)
            ).fetchone()
        if row is None:
            raise NotFoundError(f"no such image: {text}", image=text)
        return self.get(row[0])

    def layer_size(self, chain_id: str) -> int:
        row = self.conn.execute(
            "SELECT size FROM image_layers WHERE chain_id = ?", (chain_id,)
        ).fetchone()
        return row[0] if row else 0

    # writing -----------------------------------------------------------------------------

    def put(self, image_id: str, manifest: str, manifest_media_type: str, created: str,
            size: int, chain_id: str, index_digest: str = "") -> None:
        self.conn.execute(
            "INSERT INTO images (id, manifest, manifest_media_type, index_digest, created, size,"
            " chain_id, added) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(id) DO UPDATE SET manifest = excluded.manifest,"
            " manifest_media_type = excluded.manifest_media_type,"
            " index_digest = excluded.index_digest, size = excluded.size,"
            " chain_id = excluded.chain_id",
            (image_id, manifest, manifest_media_type, index_digest, created, size, chain_id,
             time.time()),
        )

    def put_layer(self, chain_id: str, diff_id: str, size: int) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO image_layers (chain_id, diff_id, size) VALUES (?, ?, ?)",
            (chain_id, diff_id, size),
        )

    def tag(self, image_id: str, ref: reference.Reference) -> str | None:
        """Point tag `ref` at the image; return the image it was taken from, if any."""
        if ref.digest is not None:
            raise InvalidArgumentError(f"tag {ref}: refusing to create a tag with a digest")
        tagged = ref.tagged
        with db.transaction(self.conn):
            row = self.conn.execute(
                "SELECT image_id FROM image_tags WHERE ref = ?", (tagged,)
            ).fetchone()
            self.conn.execute(
                "INSERT INTO image_tags (ref, image_id) VALUES (?, ?)"
                " ON CONFLICT(ref) DO UPDATE SET image_id = excluded.image_id",
                (tagged, image_id),
            )
            self.conn.execute("UPDATE images SET last_tag_time = ? WHERE id = ?",
                              (_now_rfc3339(), image_id))
        previous = row[0] if row else None
        return previous if previous != image_id else None

    def add_repo_digest(self, image_id: str, name: str, digest: str) -> None:
        self.conn.execute(
            "INSERT INTO image_repo_digests (name, digest, image_id) VALUES (?, ?, ?)"
            " ON CONFLICT(name, digest) DO UPDATE SET image_id = excluded.image_id",
            (name, digest, image_id),
        )

    def untag(self, ref: str) -> None:
        self.conn.execute("DELETE FROM image_tags WHERE ref = ?", (ref,))

    def remove_repo_digests(self, image_id: str, name: str) -> list[str]:
        rows = self.conn.execute(
            "SELECT digest FROM image_repo_digests WHERE image_id = ? AND name = ?",
            (image_id, name),
        ).fetchall()
        self.conn.execute("DELETE FROM image_repo_digests WHERE image_id = ? AND name = ?",
                          (image_id, name))
        return [f"{name}@{r[0]}" for r in rows]

    def delete(self, image_id: str) -> None:
        with db.transaction(self.conn):
            n = self.conn.execute("DELETE FROM images WHERE id = ?", (image_id,)).rowcount
        if n == 0:
            raise NotFoundError(f"delete image {image_id}: no such image")

    def remove_layer(self, chain_id: str) -> None:
        self.conn.execute("DELETE FROM image_layers WHERE chain_id = ?", (chain_id,))

    def check_unreferenced(self, image_id: str) -> None:
        if self.get(image_id).tags:
            raise ConflictError(f"delete image {image_id}: it is still tagged")
