"""Failure behaviour of processes and storage: workers die with their parent, read-only stores stay
untouched, a full disk is a one-line error that keeps finished work."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

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
    cmd = [sys.executable, "-m", "prunezoo", "run", str(config), "--out", str(tmp_path / "runs"),
           "--workers", "2", "-q"]
    # Both dense jobs have written an epoch checkpoint: both workers are training.
    busy = lambda: len(list(tmp_path.glob("runs/*/runs/dense-*/checkpoint/checkpoint.json"))) == 2  # noqa: E731
    _kill_main_and_check_orphans(cmd, busy, 2, tmp_path)


@pytest.mark.slow  # two spawned workers importing torch: ~25 s on a loaded 2-core machine
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_zoo_task_workers_die_with_a_killed_main_process(tmp_path):
    (tmp_path / "slowtask.py").write_text("import pathlib, time\n\ndef nap(marker, threads):\n"
                                          "    pathlib.Path(marker).touch()\n    time.sleep(300)\n")
    script = ("import sys; sys.path.insert(0, '.')\n"
              "from prunezoo.zoo.runner import run_tasks\nfrom slowtask import nap\n"
              "if __name__ == '__main__':\n    run_tasks(nap, [('a.started',), ('b.started',)], workers=2, progress=False)\n")
    (tmp_path / "main.py").write_text(script)
    busy = lambda: (tmp_path / "a.started").exists() and (tmp_path / "b.started").exists()  # noqa: E731
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
