"""The one executor layer: a task graph run inline, on a process pool or on Ray, with the same results."""

import errno
import os
import time
from pathlib import Path

import pytest

from prunezoo.errors import ConfigError
from prunezoo.experiments.executors import Task, TaskFailed, run_graph
from prunezoo.zoo.runner import run_tasks


def record(directory, name, deps, threads):
    """Fails unless every dependency finished before this task started; returns what it saw."""
    import torch

    missing = [d for d in deps if not (Path(directory) / d).exists()]
    if missing:
        raise RuntimeError(f"{name} started before {missing}")
    time.sleep(0.05)
    (Path(directory) / name).write_text(str(os.getpid()))
    return {"name": name, "threads": torch.get_num_threads(), "pid": os.getpid()}


def fail_on(name, bad, threads):
    if name == bad:
        raise OSError(errno.ENOSPC, "No space left on device", f"/zoo/{name}/params.json")
    return name


def _diamond(directory):
    """a -> (b, c) -> d, plus an independent e."""
    edges = {"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c"), "e": ()}
    return [Task(k, (str(directory), k, deps), deps, label=f"task {k}") for k, deps in edges.items()]


@pytest.mark.parametrize("workers", [1, 2])
def test_graph_runs_each_task_once_after_its_dependencies(tmp_path, workers):
    import torch

    before = torch.get_num_threads()
    done = []
    results = run_graph(
        record, _diamond(tmp_path), workers=workers, threads=2, on_done=lambda task, result: done.append(task.key)
    )
    assert sorted(done) == sorted(results) == ["a", "b", "c", "d", "e"]
    assert (
        done.index("a")
        < min(done.index("b"), done.index("c"))
        < max(done.index("b"), done.index("c"))
        < done.index("d")
    )
    assert {r["threads"] for r in results.values()} == {2}
    pids = {r["pid"] for r in results.values()}
    assert (pids == {os.getpid()}) == (workers == 1)  # workers=2: spawned processes, not this one
    assert torch.get_num_threads() == before  # inline tasks leave this process's setting alone
    if workers == 1:
        assert done == ["a", "b", "c", "d", "e"]  # inline: input order


def test_a_failed_task_names_itself_and_stops_the_run(tmp_path):
    seen = []
    tasks = [Task(i, (name, "b"), label=f"model {name}") for i, name in enumerate("abc")]
    with pytest.raises(TaskFailed, match="model b failed: no space left on device: /zoo/b/params.json") as err:
        run_graph(fail_on, tasks, workers=1, on_done=lambda task, result: seen.append(result))
    assert err.value.label == "model b" and isinstance(err.value.__cause__, OSError)
    assert seen == ["a"]  # c never ran


def test_bad_graphs_and_options_are_refused_before_running(tmp_path):
    with pytest.raises(ValueError, match="unknown tasks"):
        run_graph(record, [Task("a", (str(tmp_path), "a", ()), ("z",))])
    with pytest.raises(ValueError, match="unique"):
        run_graph(record, [Task("a", ()), Task("a", ())])
    with pytest.raises(ValueError, match="cycle"):
        run_graph(
            record,
            [Task("a", (str(tmp_path), "a", ()), ("b",)), Task("b", (str(tmp_path), "b", ()), ("a",))],
            workers=1,
        )
    with pytest.raises(ConfigError, match="executor"):
        run_graph(record, [], executor="slurm")
    with pytest.raises(ConfigError, match="threads"):
        run_tasks(record, [], threads=0)
    assert list(tmp_path.iterdir()) == []


def test_zoo_tasks_use_the_same_layer_and_keep_task_order(tmp_path):
    tasks = [(str(tmp_path), name, ()) for name in "xyz"]
    for workers in (1, 2):
        out = run_tasks(record, tasks, workers=workers, progress=False)
        assert [r["name"] for r in out] == ["x", "y", "z"]
    with pytest.raises(TaskFailed, match="task 1 failed"):  # default labels
        run_tasks(fail_on, [("a", "b"), ("b", "b")], workers=1, progress=False)
