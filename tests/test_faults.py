"""Failure behaviour of processes and storage: workers die with their parent, read-only stores stay
untouched, a full disk is a one-line error that keeps finished work."""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import pkgutil
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prunezoo.experiments.store import RunStore

LONG_STUDY = {  # two independent dense jobs (two seeds), long enough to be killed while training
    "name": "orphans",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [32]}},
    "training": {"epochs": 500, "batch_size": 32, "lr": 0.05},
    "replicates": 2,
    "methods": [{"name": "gm", "kind": "oneshot", "sparsities": [0.8]}],
}


def _proc_table() -> dict[int, tuple[int, str, str]]:
    """``{pid: (ppid, state, start time)}`` from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # exited meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state ppid ... starttime (22nd)
        table[int(entry)] = (int(fields[1]), fields[0], fields[19])
    return table


def _descendants(pid: int) -> dict[int, str]:
    """Live descendants of ``pid``: ``{pid: start time}`` (the start time tells a reused pid apart)."""
    table = _proc_table()
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, (ppid, state, start) in table.items():
            if ppid == parent and child not in found and state != "Z":
                found[child] = start
                frontier.append(child)
    return found


def _alive(pids: dict[int, str]) -> list[int]:
    table = _proc_table()
    return [p for p, start in pids.items() if p in table and table[p][2] == start and table[p][1] != "Z"]


def _kill_main_and_check_orphans(cmd: list[str], busy, n_workers: int, cwd: Path) -> None:
    """Run ``cmd``; once ``busy()`` says every worker is working, SIGKILL the main process only."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    kids: dict[int, str] = {}
    try:
        deadline = time.time() + 240
        while not busy():
            assert proc.poll() is None, f"ended before it could be killed: {proc.stderr.read().decode()}"
            assert time.time() < deadline, "the workers never started working"
            time.sleep(0.1)
        kids = _descendants(proc.pid)
        assert len(kids) >= n_workers + 1, kids  # the workers and the multiprocessing resource tracker
        os.kill(proc.pid, signal.SIGKILL)  # only the main process, not its process group
        proc.wait()
        deadline = time.time() + 15
        while (left := _alive(kids)) and time.time() < deadline:
            time.sleep(0.1)
        assert not left, f"orphans still running after their parent was killed: {left}"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _alive(kids | _descendants(proc.pid)):  # leave no orphans behind when failing
            os.kill(pid, signal.SIGKILL)


@pytest.mark.slow  # two spawned workers importing torch and training: ~30-80 s on a loaded 2-core machine
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_study_workers_die_with_a_killed_main_process(tmp_path):
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(LONG_STUDY))
    cmd = [
        sys.executable,
        "-m",
        "prunezoo",
        "run",
        str(config),
        "--out",
        str(tmp_path / "runs"),
        "--workers",
        "2",
        "-q",
    ]
    # Both dense jobs have written an epoch checkpoint: both workers are training.
    busy = lambda: len(list(tmp_path.glob("runs/*/runs/dense-*/checkpoint/checkpoint.json"))) == 2
    _kill_main_and_check_orphans(cmd, busy, 2, tmp_path)


@pytest.mark.slow  # two spawned workers importing torch: ~25 s on a loaded 2-core machine
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_zoo_task_workers_die_with_a_killed_main_process(tmp_path):
    (tmp_path / "slowtask.py").write_text(
        "import pathlib, time\n\ndef nap(marker, threads):\n    pathlib.Path(marker).touch()\n    time.sleep(300)\n"
    )
    script = (
        "import sys; sys.path.insert(0, '.')\n"
        "from prunezoo.zoo.runner import run_tasks\nfrom slowtask import nap\n"
        "if __name__ == '__main__':\n"
        "    run_tasks(nap, [('a.started',), ('b.started',)], workers=2, progress=False)\n"
    )
    (tmp_path / "main.py").write_text(script)
    busy = lambda: (tmp_path / "a.started").exists() and (tmp_path / "b.started").exists()
    _kill_main_and_check_orphans([sys.executable, "main.py"], busy, 2, tmp_path)


def test_worker_initializer_exits_when_the_parent_is_already_gone(monkeypatch):
    from prunezoo.experiments import executors

    exits = []
    monkeypatch.setattr(os, "_exit", lambda code: exits.append(code))
    executors._die_with_parent(os.getppid())  # our parent is the one that started us: stay
    assert exits == []
    executors._die_with_parent(-1)  # reparented before the death signal was armed: leave at once
    assert exits == [1]
    if sys.platform.startswith("linux"):
        # The parent-death signal is armed (a worker would get SIGKILL with its parent). Reset it.
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        sig = ctypes.c_int()
        assert libc.prctl(2, ctypes.byref(sig), 0, 0, 0) == 0  # PR_GET_PDEATHSIG
        assert sig.value == signal.SIGKILL
        libc.prctl(1, 0, 0, 0, 0)


# ------------------------------------------------------------------------------- read-only storage


@contextlib.contextmanager
def _unprivileged():
    """Root ignores permission bits: act as nobody (effective ids only) so a read-only directory
    really is read-only to this process."""
    if os.geteuid() != 0:
        yield
        return
    uid, gid, groups = os.geteuid(), os.getegid(), os.getgroups()
    cwd = os.getcwd()
    os.chdir("/")  # the checkout may sit in a root-only (0700) directory, e.g. a mktemp -d clone
    os.setgroups([])
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(uid)
        os.setegid(gid)
        os.setgroups(groups)
        os.chdir(cwd)


@pytest.fixture
def shared_dir():
    """A directory nobody can reach (pytest's tmp_path sits under a 0700 root-only directory)."""
    path = Path(tempfile.mkdtemp(prefix="prunezoo-faults-"))
    path.chmod(0o755)
    yield path
    for p in [path, *path.rglob("*")]:
        if p.is_dir() and not p.is_symlink():
            p.chmod(0o755)
    shutil.rmtree(path)


def _read_only(path: Path) -> None:
    for p in [*path.rglob("*"), path]:
        p.chmod(0o555 if p.is_dir() else 0o444)


def _files(directory: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def _crashed_writer(path: Path, study_id: str) -> None:
    """Commit one more study and die without closing: it stays in the -wal (with its -shm)."""
    code = (
        "import os, sqlite3, sys\ncon = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
        "con.execute(\"INSERT INTO studies VALUES (?, 'late', 'h', 'p', 'complete', '{}', 0)\", (sys.argv[2],))\n"
        "os._exit(0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(path), study_id], check=True)


@pytest.mark.parametrize("state", ["clean", "crashed writer", "wal without shm"])
def test_readonly_store_in_a_read_only_directory(shared_dir, state):
    runs = shared_dir / "runs"
    path = runs / "index.sqlite"
    RunStore(path).record_study("a-1", "a", "1", "p", {}, "complete", [{"method": "dense", "test_acc": 0.9}])
    expected = ["a-1"]
    if state != "clean":
        _crashed_writer(path, "late-2")
        expected.append("late-2")
        assert path.with_name("index.sqlite-wal").stat().st_size > 0
    if state == "wal without shm":
        path.with_name("index.sqlite-shm").unlink()
    _read_only(runs)
    before = _files(runs)
    import pandas  # noqa: F401  (nobody cannot read root's site-packages)

    with _unprivileged():
        with pytest.raises(PermissionError):
            (runs / "probe").touch()  # the directory really is read-only to this process
        with pytest.raises(PermissionError) as err:  # writing: an error naming the store, not a raw SQLite one
            RunStore(path).record_study("b-3", "b", "3", "p", {}, "running")
        assert err.value.filename == str(path)
        store = RunStore(path, readonly=True)
        assert sorted(store.studies()["study_id"]) == expected  # committed data in the WAL is read too
        assert store.results("a-1")["test_acc"].tolist() == [0.9]
    assert _files(runs) == before


TINY_STUDY = {
    "name": "tiny",
    "dataset": {"name": "digits"},
    "model": {"name": "mlp", "options": {"hidden": [16]}},
    "training": {"epochs": 1, "batch_size": 64, "lr": 0.05},
    "finetune": {"epochs": 1, "batch_size": 64, "lr": 0.01},
    "methods": [{"name": "gm", "kind": "oneshot", "sparsities": [0.5]}],
}


def _run(args: list[str]):
    from prunezoo.cli import app

    return CliRunner().invoke(app, args)


def _says(output: str, path) -> bool:
    """``path`` appears in ``output`` (which the console may have wrapped anywhere)."""
    return str(path) in "".join(output.split())


def _tiny_study(tmp: Path, out: Path) -> Path:
    config = tmp / "study.yaml"
    config.write_text(yaml.safe_dump(TINY_STUDY))
    res = _run(["run", str(config), "--out", str(out), "--workers", "1", "-q"])
    assert res.exit_code == 0, res.output
    return config


def _read_only_commands(runs: Path, elsewhere: Path, config: Path) -> None:
    study_id = next(p.name for p in runs.iterdir() if p.is_dir())
    ls = _run(["runs", "ls", "--out", str(runs)])
    assert ls.exit_code == 0 and study_id in ls.output, ls.output
    show = _run(["runs", "show", study_id[:6], "--out", str(runs), "--format", "csv"])
    assert show.exit_code == 0 and "gm" in show.output, show.output
    export = _run(["runs", "export", str(elsewhere / "rows.csv"), "--out", str(runs)])
    assert export.exit_code == 0 and (elsewhere / "rows.csv").exists(), export.output
    moved = _run(["report", study_id, "--out", str(runs), "--output", str(elsewhere / "r" / "report.html")])
    assert moved.exit_code == 0 and (elsewhere / "r" / "report.html").exists(), moved.output
    if os.access(runs, os.W_OK, effective_ids=True):
        # the warm-up as root, on a copy (writes would succeed): it also imports every prunezoo module,
        # since nobody may not read the checkout (a clone in a 0700 mktemp -d directory)
        import prunezoo

        for module in pkgutil.walk_packages(prunezoo.__path__, "prunezoo."):
            importlib.import_module(module.name)
        return
    # report and diagnose write into the study directory: a clear error naming it, before any work
    report = _run(["report", study_id, "--out", str(runs)])
    assert report.exit_code == 1 and isinstance(report.exception, SystemExit), report.output
    assert "read-only" in report.output and "--output" in report.output and _says(report.output, study_id)
    diag = _run(["diagnose", study_id, "--out", str(runs), "--no-sharpness"])
    assert diag.exit_code == 1 and isinstance(diag.exception, SystemExit), diag.output
    assert _says(diag.output, runs / study_id / "diagnostics.json") and "read-only" in diag.output
    rerun = _run(
        ["run", str(config), "--out", str(runs), "--workers", "1", "-q", "--set", "training.epochs=2"]
    )  # a new study cannot be written: one line, exit 1
    assert rerun.exit_code == 1 and isinstance(rerun.exception, SystemExit), rerun.output
    assert "Traceback" not in rerun.output and _says(rerun.output, runs)


def test_read_only_commands_work_on_a_read_only_runs_directory(shared_dir, monkeypatch):
    runs, elsewhere = shared_dir / "runs", shared_dir / "elsewhere"
    config = _tiny_study(shared_dir, runs)
    elsewhere.mkdir()
    elsewhere.chmod(0o777)
    monkeypatch.setenv("MPLCONFIGDIR", str(elsewhere / "mpl"))
    _read_only(runs)
    before = _files(runs)
    warm = shared_dir / "warm"
    shutil.copytree(runs, warm / "runs", symlinks=True)
    (warm / "out").mkdir()
    _read_only_commands(warm / "runs", warm / "out", config)
    with _unprivileged():
        _read_only_commands(runs, elsewhere, config)
    assert _files(runs) == before


# ------------------------------------------------------------------------------------- full disks


def _job_results(out: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("*/runs/*/result.json")}


@pytest.mark.parametrize("where", ["histories.json", "run store"])
def test_disk_full_at_the_end_of_a_study(tmp_path, monkeypatch, where):
    import prunezoo.experiments.study as study_module

    out = tmp_path / "runs"
    if where == "histories.json":
        write_json = study_module.write_json

        def full_write(path, obj):
            if Path(path).name == "histories.json":
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            write_json(path, obj)

        monkeypatch.setattr(study_module, "write_json", full_write)
        culprit = "{study}/histories.json"
    else:
        record, connect = RunStore.record_study, RunStore._connect
        full = []

        def record_study(self, *args, **kwargs):  # the final "complete" record is the one that no longer fits
            full.append("complete" in args or kwargs.get("status") == "complete")
            return record(self, *args, **kwargs)

        def limited(self):
            con = connect(self)
            if full and full[-1]:
                (pages,) = con.execute("PRAGMA page_count").fetchone()
                con.execute(f"PRAGMA max_page_count={pages}")
            return con

        monkeypatch.setattr(RunStore, "record_study", record_study)
        monkeypatch.setattr(RunStore, "_connect", limited)
        culprit = "index.sqlite"
    config = tmp_path / "study.yaml"
    # 8 epochs: enough per-epoch metrics that the final record needs new database pages
    config.write_text(yaml.safe_dump(TINY_STUDY | {"training": TINY_STUDY["training"] | {"epochs": 8}}))
    res = _run(["run", str(config), "--out", str(out), "--workers", "1", "-q"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    study_dir = next(p for p in out.iterdir() if p.is_dir())
    culprit = out / culprit.format(study=study_dir.name)
    assert "no space left on device" in res.output and _says(res.output, culprit), res.output
    assert "Traceback" not in res.output and "cannot rollback" not in res.output
    finished = _job_results(out)
    assert len(finished) == 2  # dense and gm, finished before the disk filled up, are kept
    monkeypatch.undo()
    again = _run(["run", str(config), "--out", str(out), "--workers", "1", "-q"])
    assert again.exit_code == 0, again.output
    assert _job_results(out) == finished  # resumed: nothing re-run
    store = RunStore(out / "index.sqlite", readonly=True)
    assert store.studies()["status"].tolist() == ["complete"] and len(store.results()) == 2


def test_disk_full_inside_a_job_names_the_file_and_keeps_finished_jobs(tmp_path, monkeypatch):
    import prunezoo.experiments.executors as executors
    from prunezoo.zoo.runner import TaskFailed

    execute_job = executors.execute_job

    def full_disk(spec, root, threads):
        if spec["kind"] == "oneshot":  # the dense job before it finished; this one finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device", f"{root}/{spec['id']}/masks.safetensors")
        return execute_job(spec, root, threads)

    monkeypatch.setattr(executors, "execute_job", full_disk)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(TINY_STUDY))
    out = tmp_path / "runs"
    res = _run(["run", str(config), "--out", str(out), "--workers", "1", "-q"])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit), res.output
    assert "no space left on device" in res.output and _says(res.output, "masks.safetensors"), res.output
    assert "finished jobs are kept" in res.output
    dense = _job_results(out)
    assert [Path(k).parent.name.split("-")[0] for k in dense] == ["dense"]
    monkeypatch.undo()
    again = _run(["run", str(config), "--out", str(out), "--workers", "1", "-q"])
    assert again.exit_code == 0, again.output
    assert {k: v for k, v in _job_results(out).items() if k in dense} == dense  # dense not re-run
    err = TaskFailed("model 3", OSError(errno.EDQUOT, "Disk quota exceeded", "/zoo/m3/params.json"))
    assert str(err) == "model 3 failed: disk quota exceeded: /zoo/m3/params.json"
