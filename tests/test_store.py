"""Run store: concurrent writers lose no rows; queries return DataFrames."""

import multiprocessing as mp

from prunezoo.experiments.store import RunStore


def _writer(path, worker, n):
    store = RunStore(path)
    for i in range(n):
        rows = [{"method": "gm", "kind": "oneshot", "sparsity": s / 10, "test_acc": 0.5} for s in range(3)]
        hist = {"dense": [{"epoch": e, "test_acc": 0.1 * e} for e in range(1, 4)]}
        store.record_study(f"s{worker}-{i}", "s", f"h{worker}{i}", "/tmp/x", {"w": worker}, "complete", rows, hist)


def test_many_concurrent_writer_processes_lose_no_rows(tmp_path):
    path = tmp_path / "index.sqlite"
    RunStore(path)
    workers, per_worker = 8, 15
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, per_worker)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    store = RunStore(path)
    assert len(store.studies()) == workers * per_worker
    assert len(store.results()) == workers * per_worker * 3
    with store.connection() as con:
        assert con.execute("SELECT COUNT(*) FROM metrics").fetchone()[0] == workers * per_worker * 3
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_queries_and_replace(tmp_path):
    store = RunStore(tmp_path / "i.sqlite")
    store.record_study(
        "a-123",
        "a",
        "123",
        "p",
        {},
        "complete",
        [{"method": "dense", "test_acc": 0.9}],
        {"dense": [{"epoch": 1, "test_acc": 0.8, "train_loss": 1.0}]},
    )
    store.record_study("a-123", "a", "123", "p", {}, "complete", [{"method": "dense", "test_acc": 0.95}])
    df = store.results("a-123")
    assert df["test_acc"].tolist() == [0.95]
    assert store.resolve("12") == "a-123"
    assert store.metrics("a-123").empty


def _files(directory):
    """Every file in ``directory`` with its bytes and mtime: any write shows up here."""
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(directory.iterdir())}


def test_readonly_store_reads_everything_and_writes_nothing(tmp_path):
    import pytest

    path = tmp_path / "index.sqlite"
    RunStore(path).record_study(
        "a-123",
        "a",
        "123",
        "p",
        {"x": 1},
        "complete",
        [{"method": "dense", "test_acc": 0.9}],
        {"dense": [{"epoch": 1, "test_acc": 0.8}]},
    )
    before = _files(tmp_path)
    assert list(before) == ["index.sqlite"]  # the writer checkpointed and removed its WAL on close
    store = RunStore(path, readonly=True)
    assert store.studies()["study_id"].tolist() == ["a-123"]
    assert store.results("a-123")["test_acc"].tolist() == [0.9]
    assert store.metrics("a-123")["test_acc"].tolist() == [0.8]
    assert store.resolve("12") == "a-123"
    with pytest.raises(PermissionError) as err:
        store.record_study("b-1", "b", "1", "p", {}, "running")
    assert err.value.filename == str(path)
    assert _files(tmp_path) == before  # no -wal/-shm, no schema migration, no new rows
    with pytest.raises(FileNotFoundError):
        RunStore(tmp_path / "missing.sqlite", readonly=True)
    assert _files(tmp_path) == before


def _limit_pages(monkeypatch):
    """From now on the store cannot grow: SQLite answers SQLITE_FULL, as on a full disk."""
    import sqlite3

    connect = RunStore._connect

    def full(self) -> sqlite3.Connection:
        con = connect(self)
        (pages,) = con.execute("PRAGMA page_count").fetchone()
        con.execute(f"PRAGMA max_page_count={pages}")
        return con

    monkeypatch.setattr(RunStore, "_connect", full)


def test_full_disk_is_an_enospc_error_naming_the_store_and_keeps_what_was_there(tmp_path, monkeypatch):
    import errno

    import pytest

    path = tmp_path / "index.sqlite"
    store = RunStore(path)
    store.record_study("a-1", "a", "1", "p", {}, "complete", [{"method": "dense", "test_acc": 0.9}])
    _limit_pages(monkeypatch)
    rows = [{"method": "gm", "test_acc": 0.5, "point": "x" * 200} for _ in range(2000)]
    # Before: SQLite rolled back itself, so the store's own ROLLBACK raised "cannot rollback" instead.
    with pytest.raises(OSError) as err:
        store.record_study("b-2", "b", "2", "p", {}, "complete", rows)
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(path)
    monkeypatch.undo()
    assert store.studies()["study_id"].tolist() == ["a-1"]  # all or nothing
    assert store.results()["test_acc"].tolist() == [0.9]
    store.record_study("b-2", "b", "2", "p", {}, "complete", rows)  # space again: the same write succeeds
    assert len(store.results("b-2")) == 2000


def test_every_result_column_round_trips_in_a_store_of_the_old_column_order(tmp_path):
    """Rows are inserted by column name: a store created by an older prunezoo (train_flops before
    train_eval_acc) used to get values in the wrong columns from a positional INSERT."""
    import sqlite3

    from prunezoo.experiments.schema import RESULT_SCHEMA

    old = [f for f in RESULT_SCHEMA if f.name != "train_flops"]
    flops = next(f for f in RESULT_SCHEMA if f.name == "train_flops")
    old.insert([f.name for f in old].index("test_ece") + 1, flops)
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as con:
        con.execute(
            "CREATE TABLE results (study_id TEXT NOT NULL, row_index INTEGER NOT NULL, "
            + "".join(f"{f.name} {f.sql_type}, " for f in old)
            + "PRIMARY KEY (study_id, row_index))"
        )
    for fresh in (False, True):
        store = RunStore(tmp_path / "new.sqlite" if fresh else path)
        row = {
            f.name: (f"v{i}" if f.sql_type == "TEXT" else i + 0.5 if f.sql_type == "REAL" else i)
            for i, f in enumerate(RESULT_SCHEMA)
        }
        store.record_study("s-1", "s", "1", "p", {}, "complete", [row])
        got = store.results("s-1").iloc[0]
        assert {k: got[k] for k in row} == row
