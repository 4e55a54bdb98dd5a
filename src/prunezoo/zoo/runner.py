"""Run independent zoo tasks (train one model, make one twin, train one batched chunk) through the
common executor layer (:func:`prunezoo.experiments.executors.run_graph`: inline, process pool or
Ray), with a progress bar over models.

Every task is a top-level function plus picklable arguments, independent of the others, and skips
itself when its model is already done (resume). Each task sets ``threads`` torch threads, so numbers
do not depend on the executor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from prunezoo.experiments.executors import Task, TaskFailed, run_graph
from prunezoo.utils.progress import ProgressBar


def run_tasks(
    fn: Callable[..., Any],
    tasks: Sequence[tuple],
    *,
    labels: Sequence[str] | None = None,
    weights: Sequence[int] | None = None,
    executor: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
    progress: bool | None = None,
    description: str = "models",
    device: str | None = None,
    gpus_per_job: float = 1.0,
) -> list[Any]:
    """``[fn(*task, threads) for task in tasks]``, in parallel; results in task order.

    ``weights`` (models per task, default 1) drive the progress bar, which counts models. ``device``:
    where the tasks compute (a task on an accelerator also gets ``device=``; under Ray each reserves
    ``gpus_per_job`` GPUs), see :mod:`prunezoo.experiments.executors`.
    """
    labels = list(labels or [f"task {i}" for i in range(len(tasks))])
    weights = list(weights or [1] * len(tasks))
    graph = [Task(i, tuple(task), label=labels[i]) for i, task in enumerate(tasks)]
    with ProgressBar(description, sum(weights), enabled=progress, transient=False) as bar:
        results = run_graph(
            fn,
            graph,
            executor=executor,
            workers=workers,
            threads=threads,
            address=address,
            on_done=lambda task, _result: bar.advance(weights[task.key]),
            device=device,
            gpus_per_job=gpus_per_job,
        )
    return [results[i] for i in range(len(tasks))]


__all__ = ["TaskFailed", "run_tasks"]
