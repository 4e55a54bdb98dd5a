"""SQLite index of studies, result rows and per-epoch metrics.

WAL journal + busy timeout + ``BEGIN IMMEDIATE`` write transactions (retried while another
process holds the write lock) make it safe for many concurrent writer processes; readers never
block writers. Queries return pandas DataFrames.

``RunStore(path, readonly=True)`` never writes: not the database, not its ``-wal``/``-shm`` files,
not the directory (so it works on read-only media and for other users' stores). SQLite errors from
a full disk or an unwritable store are raised as :class:`OSError` naming the store's path.
"""

from __future__ import annotations

import errno
import json
import shutil
import sqlite3
import tempfile
import time
import weakref
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from prunezoo.experiments.schema import FIELDS_BY_NAME, RESULT_COLUMNS, RESULT_SCHEMA, sql_column

_RESULT_DEFS = "".join(f"{sql_column(f)},\n    " for f in RESULT_SCHEMA)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS studies (
    study_id TEXT PRIMARY KEY,          -- <name>-<config hash>
    name TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    path TEXT NOT NULL,
    status TEXT NOT NULL,
    config TEXT NOT NULL,               -- JSON
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    study_id TEXT NOT NULL,
    row_index INTEGER NOT NULL,
    {_RESULT_DEFS}    PRIMARY KEY (study_id, row_index)
);
CREATE TABLE IF NOT EXISTS metrics (
    study_id TEXT NOT NULL,
    run TEXT NOT NULL,                  -- run id: "<job id>" or "<imp job id>/L03"
    epoch INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL,
    PRIMARY KEY (study_id, run, epoch, key)
);
"""
# Columns named: a store written by an older prunezoo has its columns in another order.
_INSERT_RESULT = (
    f"INSERT INTO results (study_id, row_index, {', '.join(RESULT_COLUMNS)}) "
    f"VALUES ({','.join('?' * (len(RESULT_COLUMNS) + 2))})"
)


class RunStore:
    def __init__(self, path: str | Path, *, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        self._snapshot: Path | None = None
        if readonly:
            if not self.path.is_file():
                raise FileNotFoundError(errno.ENOENT, "no run store", str(self.path))
            return
        with self._storage_errors():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.connection() as con:
                con.execute("PRAGMA journal_mode=WAL")
                con.executescript(SCHEMA)  # idempotent; executescript manages its own transaction
                # Stores written by an older prunezoo lack newer result columns: add them (NULL there).
                have = {r[1] for r in con.execute("PRAGMA table_info(results)")}
                for col in RESULT_COLUMNS:
                    if col not in have:
                        con.execute(f"ALTER TABLE results ADD COLUMN {col} {FIELDS_BY_NAME[col].sql_type}")

    def _connect(self) -> sqlite3.Connection:
        if self.readonly:
            return self._connect_readonly()
        con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        con.execute("PRAGMA busy_timeout=60000")
        con.execute("PRAGMA synchronous=NORMAL")
        return con

    def _connect_readonly(self) -> sqlite3.Connection:
        """A connection that cannot write anything, whatever the directory allows.

        No ``-wal`` file: every commit is in the database file, read as immutable (``mode=ro`` would
        create ``-wal``/``-shm`` and leave them). A ``-wal`` (a writer is active, or one was killed):
        ``mode=ro`` reads it through the existing ``-shm``; if that is impossible (e.g. no ``-shm`` in
        a read-only directory), the database and its WAL are read from a private temporary copy.
        (An immutable read racing a writer that starts and checkpoints meanwhile may fail or miss
        that write: read-only commands can simply be repeated.)
        """
        if self._snapshot is not None:
            return sqlite3.connect(self._snapshot, isolation_level=None)
        wal = self.path.with_name(self.path.name + "-wal")
        uri = "file:" + quote(str(self.path.absolute()))
        if not wal.exists():
            return sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None)
        con = sqlite3.connect(uri + "?mode=ro", uri=True, timeout=60.0, isolation_level=None)
        try:
            con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
            return con
        except sqlite3.OperationalError:
            con.close()
        tmp = tempfile.TemporaryDirectory(prefix="prunezoo-store-")
        weakref.finalize(self, tmp.cleanup)
        snapshot = Path(tmp.name) / self.path.name
        shutil.copyfile(self.path, snapshot)
        if wal.exists():
            shutil.copyfile(wal, snapshot.with_name(snapshot.name + "-wal"))
        self._snapshot = snapshot
        return sqlite3.connect(snapshot, isolation_level=None)

    @contextmanager
    def _storage_errors(self) -> Iterator[None]:
        """SQLite's storage failures as OSErrors naming this store (its messages name no file)."""
        try:
            yield
        except Exception as raised:
            # pandas re-raises SQLite's errors as its own DatabaseError, from the original
            err = raised if isinstance(raised, sqlite3.OperationalError) else raised.__cause__
            if not isinstance(err, sqlite3.OperationalError):
                raise
            # "from None": a caller checking __cause__ for sqlite3.DatabaseError (a damaged store) must
            # not take a full disk for one; SQLite's words stay in the message.
            msg, said = str(err).lower(), f"(SQLite: {err})"
            if "disk is full" in msg:
                raise OSError(errno.ENOSPC, f"No space left on device {said}", str(self.path)) from None
            if "disk i/o error" in msg:
                try:
                    full = shutil.disk_usage(self.path.parent).free < 1 << 20
                except OSError:
                    full = False
                code, what = (errno.ENOSPC, "No space left on device") if full else (errno.EIO, "Disk I/O error")
                raise OSError(code, f"{what} {said}", str(self.path)) from None
            if "readonly" in msg or "read-only" in msg or "unable to open database" in msg:
                raise PermissionError(
                    errno.EACCES, f"Cannot open or write the run store {said}", str(self.path)
                ) from None
            raise

    def _write(self, con: sqlite3.Connection, fn, retries: int = 200) -> None:
        if self.readonly:
            raise PermissionError(errno.EACCES, "Run store opened read-only", str(self.path))
        for attempt in range(retries):
            try:
                con.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as err:  # lock contention beyond busy_timeout: back off
                if "locked" not in str(err) or attempt == retries - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
                continue
            try:
                fn(con)
                con.execute("COMMIT")
                return
            except BaseException:
                # After SQLITE_FULL / IOERR SQLite may have rolled back already: a second ROLLBACK
                # would raise "cannot rollback" and hide the real error.
                if con.in_transaction:
                    try:
                        con.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise

    @contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        finally:
            con.close()

    # -- writes ------------------------------------------------------------------------------------
    def record_study(
        self,
        study_id: str,
        name: str,
        config_hash: str,
        path: str | Path,
        config: dict,
        status: str,
        rows: Iterable[dict] = (),
        histories: dict[str, list[dict]] | None = None,
    ) -> None:
        """Insert or replace a study with its result rows and per-epoch metrics, atomically."""
        rows = list(rows)
        metric_rows = [
            (study_id, run, int(h.get("epoch", i)), key, float(val))
            for run, hist in (histories or {}).items()
            for i, h in enumerate(hist)
            for key, val in h.items()
            if key != "epoch" and isinstance(val, (int, float)) and not isinstance(val, bool)
        ]

        def tx(con: sqlite3.Connection) -> None:
            con.execute(
                "INSERT OR REPLACE INTO studies VALUES (?,?,?,?,?,?,?)",
                (study_id, name, config_hash, str(path), status, json.dumps(config, sort_keys=True), time.time()),
            )
            con.execute("DELETE FROM results WHERE study_id=?", (study_id,))
            con.execute("DELETE FROM metrics WHERE study_id=?", (study_id,))
            con.executemany(
                _INSERT_RESULT,
                [(study_id, i, *(r.get(c) for c in RESULT_COLUMNS)) for i, r in enumerate(rows)],
            )
            con.executemany("INSERT OR REPLACE INTO metrics VALUES (?,?,?,?,?)", metric_rows)

        with self._storage_errors(), self.connection() as con:
            self._write(con, tx)

    # -- queries -----------------------------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()):
        import pandas as pd

        with self._storage_errors(), self.connection() as con:
            return pd.read_sql_query(sql, con, params=params)

    def studies(self):
        return self.query("SELECT study_id, name, config_hash, status, path, updated FROM studies ORDER BY updated")

    def results(self, study_id: str | None = None):
        if study_id is None:
            df = self.query("SELECT * FROM results ORDER BY study_id, row_index")
        else:
            df = self.query("SELECT * FROM results WHERE study_id=? ORDER BY row_index", (study_id,))
        for col in RESULT_COLUMNS:  # an older store opened read-only was not migrated
            if col not in df.columns:
                df[col] = None
        return df

    def metrics(self, study_id: str, run: str | None = None):
        """Per-epoch metrics, one row per (run, epoch), one column per metric."""
        sql = "SELECT run, epoch, key, value FROM metrics WHERE study_id=?"
        params: tuple = (study_id,)
        if run is not None:
            sql, params = sql + " AND run=?", (study_id, run)
        long = self.query(sql, params)
        if long.empty:
            return long
        return long.pivot_table(index=["run", "epoch"], columns="key", values="value").reset_index()

    def resolve(self, prefix: str) -> str:
        """Full study id from a unique prefix (of the id or of the config hash)."""
        ids = self.studies()["study_id"].tolist()
        hits = [s for s in ids if s.startswith(prefix) or s.rsplit("-", 1)[-1].startswith(prefix)]
        if len(hits) != 1:
            raise KeyError(f"{prefix!r} matches {len(hits)} studies" + (f": {hits}" if hits else ""))
        return hits[0]
