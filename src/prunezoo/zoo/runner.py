"""Run independent zoo tasks (train one model, make one twin, train one batched chunk) in this
process, on a local process pool or on Ray, with a rich progress bar over models.

The study executors (:mod:`prunezoo.experiments.executors`) run *study jobs* (a dependency graph with
``result.json`` as done marker, which is the per-epoch log in the zoo layout), so zoo tasks use this
thin map instead: every task is a top-level function plus picklable arguments, independent of the
others, and skips itself when its model is already done (resume). Each task sets ``threads`` torch
threads, so numbers do not depend on the executor.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, wait
from typing import Any


class TaskFailed(RuntimeError):
    def __init__(self, label: str, cause: BaseException):
        from prunezoo.experiments.executors import describe_failure

        self.label = label
        super().__init__(f"{label} failed: {describe_failure(cause)}")


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
) -> list[Any]:
    """``[fn(*task, threads) for task in tasks]``, in parallel; results in task order.

    ``weights`` (models per task, default 1) drive the progress bar, which counts models.
    """
    from prunezoo.experiments.executors import check_executor_options, default_workers

    check_executor_options(executor, workers, threads)
    labels = list(labels or [f"task {i}" for i in range(len(tasks))])
    weights = list(weights or [1] * len(tasks))
    results: list[Any] = [None] * len(tasks)
    with _Bar(sys.stderr.isatty() if progress is None else progress, description, sum(weights)) as bar:
        def done(i: int, result: Any) -> None:
            results[i] = result
            bar.advance(weights[i])

        if executor == "ray":
            _run_ray(fn, tasks, labels, workers or default_workers(), threads, address, done)
        elif (workers or default_workers()) == 1 or len(tasks) <= 1:
            _run_inline(fn, tasks, labels, threads, done)
        else:
            _run_pool(fn, tasks, labels, workers or default_workers(), threads, done)
    return results


def _run_inline(fn, tasks, labels, threads, done) -> None:
    import torch

    before = torch.get_num_threads()
    try:
        for i, task in enumerate(tasks):
            try:
                result = fn(*task, threads)
            except Exception as err:
                raise TaskFailed(labels[i], err) from err
            done(i, result)
    finally:
        torch.set_num_threads(before)


def _run_pool(fn, tasks, labels, workers, threads, done) -> None:
    from prunezoo.experiments.executors import process_pool  # spawned workers that die with this process

    with process_pool(workers) as pool:
        running = {pool.submit(fn, *task, threads): i for i, task in enumerate(tasks)}
        try:
            while running:
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    i = running.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as err:
                        raise TaskFailed(labels[i], err) from err
                    done(i, result)
        except BaseException:
            for fut in running:
                fut.cancel()
            raise


def _run_ray(fn, tasks, labels, workers, threads, address, done) -> None:
    from prunezoo.experiments.executors import start_ray

    ray, started_here = start_ray(workers, address)
    remote = ray.remote(num_cpus=threads, max_retries=0)(fn)
    running = {remote.remote(*task, threads): i for i, task in enumerate(tasks)}
    try:
        while running:
            ready, _ = ray.wait(list(running), num_returns=1)
            for ref in ready:
                i = running.pop(ref)
                try:
                    result = ray.get(ref)
                except Exception as err:
                    raise TaskFailed(labels[i], err) from err
                done(i, result)
    finally:
        for ref in running:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()


class _Bar:
    """A rich progress bar over models (only when enabled, e.g. on a terminal)."""

    def __init__(self, enabled: bool, description: str, total: int):
        self.enabled, self.description, self.total = enabled, description, total
        self.progress = None
        self.task = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TimeElapsedColumn(), TimeRemainingColumn(), transient=False)
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        if self.progress is not None:
            self.progress.advance(self.task, n)

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()
