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
    store.record_study("a-123", "a", "123", "p", {}, "complete", [{"method": "dense", "test_acc": 0.9}],
                       {"dense": [{"epoch": 1, "test_acc": 0.8, "train_loss": 1.0}]})
    store.record_study("a-123", "a", "123", "p", {}, "complete", [{"method": "dense", "test_acc": 0.95}])
    df = store.results("a-123")
    assert df["test_acc"].tolist() == [0.95]
    assert store.resolve("12") == "a-123"
    assert store.metrics("a-123").empty
