"""The one executor layer of prunezoo: run a graph of tasks in this process, on a local process pool
or on a Ray cluster. Studies (:func:`run_jobs`), zoos and twins (:func:`prunezoo.zoo.runner.run_tasks`)
and benches (through studies) all run here.

A task is ``fn(*task.args, threads)``: a top-level function and picklable arguments. It is submitted
as soon as its dependencies have finished; ``on_done(task, result)`` runs in this process, in
completion order. Each task sets a fixed number of torch threads (default 1) whatever the executor,
so the numbers do not depend on where or how parallel it ran. With Ray on several machines, results
written to disk must be on a shared filesystem. A failing task raises :class:`TaskFailed` (a full
disk named as such) after cancelling what has not started.

Devices: a task that runs on an accelerator is called ``fn(*args, threads, device=...)``; one that runs
on the CPU gets no ``device`` argument (task functions default to the CPU). Locally, ``device`` (``auto``
included) is resolved on this machine, where the pool's workers run too. Under Ray the driver decides
once (:func:`ray_device`): ``cuda``/``cuda:N``, and ``auto`` on a cluster that reports GPUs, become
``cuda`` and every task reserves ``gpus_per_job`` GPUs (:func:`ray_resources`; Ray makes the
reserved GPU the task's ``cuda``); otherwise tasks run on the CPU and reserve no GPU.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prunezoo.errors import ConfigError
from prunezoo.experiments.jobs import execute_job
from prunezoo.experiments.plan import Job, unique_jobs

EXECUTORS = ("local", "ray")


def describe_failure(cause: BaseException) -> str:
    """Why a job or task failed, in one line; a full disk says so with the file it was writing."""
    if isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT):
        what = "no space left on device" if cause.errno == errno.ENOSPC else "disk quota exceeded"
        return what + (f": {cause.filename}" if cause.filename else "")
    return f"{type(cause).__name__}: {cause}"


class TaskFailed(RuntimeError):
    """A task raised; ``label`` names it, the message says why (see :func:`describe_failure`)."""

    def __init__(self, label: str, cause: BaseException):
        self.label = label
        super().__init__(f"{label} failed: {describe_failure(cause)}")


class JobFailed(TaskFailed):
    def __init__(self, job: Job, cause: BaseException):
        self.job = job
        super().__init__(f"job {job.label} ({job.id})", cause)


@dataclass(frozen=True)
class Task:
    """One call ``fn(*args, threads)``; it starts once every task whose key is in ``deps`` finished.
    Among ready tasks, lower ``priority`` goes first (then input order)."""

    key: Hashable
    args: tuple
    deps: tuple = ()
    label: str = ""
    priority: int = 0


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def ray_resources(runtime_device: str, threads: int, gpus_per_job: float = 1.0) -> dict[str, float]:
    """The Ray resources one task reserves: ``threads`` CPUs, plus ``gpus_per_job`` GPUs (fractions share
    one GPU) when it runs on CUDA (``runtime_device``: as decided by :func:`ray_device`)."""
    resources: dict[str, float] = {"num_cpus": threads}
    if runtime_device.startswith("cuda"):
        resources["num_gpus"] = gpus_per_job
    return resources


def ray_device(device: str, cluster_gpus: float) -> str:
    """The device Ray tasks run on, decided on the driver from the cluster's GPU count (``cluster_gpus``,
    ``ray.cluster_resources()``; a local Ray counts this machine's GPUs): ``cuda`` for an explicit CUDA
    device (Ray assigns each task its GPU, so an index names none in particular) and for ``auto`` on a
    cluster with GPUs, else ``device`` itself (``cpu``, ``mps``), ``cpu`` for ``auto``. An explicit CUDA
    device on a cluster without GPUs is a ConfigError (``device``): the tasks would wait for GPUs forever
    (so would ``auto`` asking for GPUs the cluster lacks, which is why the driver's own GPU does not count)."""
    if device.startswith("cuda"):
        if cluster_gpus <= 0:
            raise ConfigError("device", f"{device!r}: the Ray cluster has no GPUs (ray.cluster_resources())")
        return "cuda"
    if device == "auto":
        return "cuda" if cluster_gpus > 0 else "cpu"
    return device


def check_executor_options(executor: str, workers: int | None, threads: int) -> None:
    if executor not in EXECUTORS:
        raise ConfigError("executor", f"unknown executor {executor!r}; choose from {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise ConfigError("workers", f"must be >= 1, got {workers}")
    if threads < 1:
        raise ConfigError("threads", f"must be >= 1, got {threads}")
    if executor == "ray":  # known before a study directory is written, not when the first job starts
        from importlib.util import find_spec

        if find_spec("ray") is None:
            raise ConfigError("executor", "the Ray executor needs Ray: pip install 'prunezoo[ray]'")


def run_graph(
    fn: Callable[..., Any],
    tasks: Sequence[Task],
    *,
    executor: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
    on_done: Callable[[Task, Any], None] = lambda task, result: None,
    failure: Callable[[Task, BaseException], Exception] | None = None,
    device: str | None = None,
    gpus_per_job: float = 1.0,
) -> dict[Hashable, Any]:
    """Run every task once; returns ``{task key: result}``.

    ``executor="local"`` runs in this process when ``workers`` is 1 or there is at most one task,
    else on a pool of ``workers`` spawned processes (default: the usable CPUs); ``"ray"`` submits to
    Ray (``address``, or a local Ray with ``workers`` CPUs), each task reserving ``threads`` CPUs.
    ``failure(task, error)`` builds the exception raised for a failed task (default :class:`TaskFailed`).
    ``device``: where the tasks compute (None: the CPU; see the module docstring); ``gpus_per_job``: what
    a Ray task on CUDA reserves.
    """
    check_executor_options(executor, workers, threads)
    keys = {t.key for t in tasks}
    if len(keys) != len(tasks):
        raise ValueError("task keys must be unique")
    for t in tasks:
        if missing := [d for d in t.deps if d not in keys]:
            raise ValueError(f"{t.label or t.key} depends on unknown tasks {missing}")
    fail = failure or (lambda task, err: TaskFailed(task.label or str(task.key), err))
    run = _Graph(list(tasks), on_done, fail)
    if executor == "ray":
        run.ray(fn, workers, threads, address, device, gpus_per_job)
        return run.results
    if device is not None:
        from prunezoo.training.runtime import resolve_device

        resolved = resolve_device(device)  # this machine's: the pool's workers run here too
        if resolved.type != "cpu":
            fn = functools.partial(fn, device=str(resolved))
    if (workers or default_workers()) == 1 or len(tasks) <= 1:
        run.inline(fn, threads)
    else:
        context = worker_context(for_ray=False)
        fn = functools.partial(call_in_context, context, fn) if context else fn
        run.pool(fn, workers or default_workers(), threads)
    return run.results


def worker_context(for_ray: bool) -> dict[str, Any] | None:
    """What a worker process needs to see the driver's plug-ins: the registry entries user code added at
    run time (pickled one by one: one that cannot be is left out, the worker may still import it) and,
    for Ray (whose workers do not inherit it; a spawned pool's do), the driver's ``sys.path`` so that
    ``module:attr`` plug-ins import there too. None when there is nothing to pass."""
    from prunezoo.utils.plugins import user_registrations

    try:
        import cloudpickle as pickler  # by value: functions defined in a script's main block or a notebook
    except ImportError:
        import pickle as pickler
    blobs: dict[str, dict[str, bytes]] = {}
    for kind, entries in user_registrations().items():
        for name, value in entries.items():
            try:
                blobs.setdefault(kind, {})[name] = pickler.dumps(value)
            except Exception:
                continue
    context: dict[str, Any] = {"registrations": blobs} if blobs else {}
    if for_ray:
        context["sys_path"] = [os.path.abspath(p or os.curdir) for p in sys.path]
    return context or None


def call_in_context(context: dict[str, Any] | None, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """In a worker: put the driver's :func:`worker_context` in place, then ``fn(*args, **kwargs)``."""
    import pickle

    from prunezoo.utils.plugins import restore_registrations

    context = context or {}
    sys.path[:0] = [p for p in context.get("sys_path", ()) if p not in sys.path]
    restored: dict[str, dict[str, Any]] = {}
    for kind, blobs in context.get("registrations", {}).items():
        for name, blob in blobs.items():
            try:
                restored.setdefault(kind, {})[name] = pickle.loads(blob)
            except Exception:
                continue
    restore_registrations(restored)
    return fn(*args, **kwargs)


class _Graph:
    """Bookkeeping shared by the three executors: what is ready, what finished, what failed."""

    def __init__(self, tasks: list[Task], on_done, fail):
        self.pending = {t.key: t for t in tasks}
        self.results: dict[Hashable, Any] = {}
        self.on_done, self.fail = on_done, fail

    def ready(self) -> list[Task]:
        ready = [t for t in self.pending.values() if all(d in self.results for d in t.deps)]
        for t in ready:
            del self.pending[t.key]
        return sorted(ready, key=lambda t: t.priority)  # stable: input order within a priority

    def finish(self, task: Task, get: Callable[[], Any]) -> None:
        try:
            result = get()
        except Exception as err:
            raise self.fail(task, err) from err
        self.results[task.key] = result
        self.on_done(task, result)

    def inline(self, fn, threads: int) -> None:
        import torch

        before = torch.get_num_threads()
        try:
            while self.pending:  # input order (priorities only matter in parallel): the first ready task
                task = next((t for t in self.pending.values() if all(d in self.results for d in t.deps)), None)
                if task is None:
                    raise ValueError(f"dependency cycle among {list(self.pending)}")
                del self.pending[task.key]
                self.finish(task, lambda: fn(*task.args, threads))  # noqa: B023 (called at once)
        finally:
            torch.set_num_threads(before)

    def pool(self, fn, workers: int, threads: int) -> None:
        running: dict[Future, Task] = {}
        with process_pool(workers) as pool:
            try:
                while self.pending or running:
                    for task in self.ready():
                        running[pool.submit(fn, *task.args, threads)] = task
                    if not running:
                        raise ValueError(f"dependency cycle among {list(self.pending)}")
                    finished, _ = wait(running, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        self.finish(running.pop(fut), fut.result)
            except BaseException:
                for fut in running:
                    fut.cancel()
                raise

    def ray(
        self, fn, workers: int | None, threads: int, address: str | None, device: str | None, gpus_per_job: float
    ) -> None:
        ray, started_here = start_ray(workers, address)
        running: dict = {}
        try:
            gpus = ray.cluster_resources().get("GPU", 0)
            decided = ray_device(device or "cpu", gpus)
            resources = ray_resources(decided, threads, gpus_per_job)
            if resources.get("num_gpus", 0) > gpus:  # Ray would wait for them forever
                raise ConfigError("gpus_per_job", f"each job asks for {gpus_per_job} GPUs; the Ray cluster has {gpus}")
            remote = ray.remote(max_retries=0, **resources)(call_in_context)
            kwargs = {"device": decided} if decided != "cpu" else {}
            context = ray.put(worker_context(for_ray=True))  # plug-ins of the driver (sys.path, registrations)
            while self.pending or running:
                for task in self.ready():
                    running[remote.remote(context, fn, *task.args, threads, **kwargs)] = task
                if not running:
                    raise ValueError(f"dependency cycle among {list(self.pending)}")
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    self.finish(running.pop(ref), lambda: ray.get(ref))  # noqa: B023 (called at once)
        finally:
            for ref in running:
                ray.cancel(ref)
            if started_here:
                ray.shutdown()


_PRIORITY = {"imp": 0, "dense": 1}  # longest chain first, then what unblocks others


def run_jobs(
    jobs: list[Job],
    root: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
    on_done: Callable[[Job, dict], None] = lambda job, result: None,
    device: str | None = None,
    gpus_per_job: float = 1.0,
) -> dict[str, dict]:
    """Execute every job of a study once (finished ones are read back) on ``device`` (the study's, not
    part of any job's id); returns ``{job id: result}``."""
    todo = unique_jobs(jobs)
    by_id = {job.id: job for job in todo}
    tasks = [
        Task(job.id, (job.to_dict(), str(root)), tuple(job.deps), job.label, _PRIORITY.get(job.kind, 2)) for job in todo
    ]  # plan order already puts dependencies first (the inline order)
    # execute_job looked up at call time (tests replace it)
    return run_graph(
        execute_job,
        tasks,
        executor=executor,
        workers=workers,
        threads=threads,
        address=address,
        on_done=lambda task, result: on_done(by_id[task.key], result),
        failure=lambda task, err: JobFailed(by_id[task.key], err),
        device=device,
        gpus_per_job=gpus_per_job,
    )


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def process_pool(workers: int) -> ProcessPoolExecutor:
    """The local process pool of study and zoo runners: spawned workers that die with this process.

    Workers are spawned from the thread that submits, so drive the pool from one thread that
    outlives it (Linux delivers the parent-death signal when the spawning *thread* exits).
    """
    # spawn, not fork: forking a process that already ran torch ops can deadlock in OpenMP.
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_die_with_parent,
        initargs=(os.getpid(),),
    )


def _die_with_parent(parent: int) -> None:
    """Pool-worker initializer: end this worker when the process that started the pool dies, even
    by kill -9 (otherwise orphaned workers keep running and holding their memory)."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent:  # the parent died before the signal was armed: reparented already
        os._exit(1)
    if not armed:  # elsewhere: poll
        threading.Thread(target=_watch_parent, args=(parent,), name="prunezoo-parent-watch", daemon=True).start()


def _watch_parent(parent: int, interval: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(1)


def start_ray(workers: int | None, address: str | None):
    """``(ray, started_here)``: connect to ``address`` or start a local Ray with ``workers`` CPUs,
    unless Ray is already initialised (then the caller must not shut it down)."""
    try:
        import ray
    except ImportError:
        raise ConfigError("executor", "the Ray executor needs Ray: pip install 'prunezoo[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or default_workers(), include_dashboard=False, log_to_driver=False)
    return ray, started_here
