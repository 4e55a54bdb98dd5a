"""Run a job graph: in this process, on a local process pool, or on a Ray cluster.

Jobs are submitted as soon as their dependencies have finished. Each job runs with a fixed number
of torch threads (default 1) whatever the executor, so the numbers do not depend on where or how
parallel it ran. With Ray on several machines, ``root`` must be on a shared filesystem.
"""

from __future__ import annotations

import ctypes
import errno
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path

import torch

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


class JobFailed(RuntimeError):
    def __init__(self, job: Job, cause: BaseException):
        self.job = job
        super().__init__(f"job {job.label} ({job.id}) failed: {describe_failure(cause)}")


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


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


def run_jobs(
    jobs: list[Job],
    root: str | Path,
    *,
    executor: str = "local",
    workers: int | None = None,
    threads: int = 1,
    address: str | None = None,
    on_done: Callable[[Job, dict], None] = lambda job, result: None,
) -> dict[str, dict]:
    """Execute every job once (finished ones are read back); returns ``{job id: result}``."""
    check_executor_options(executor, workers, threads)
    todo = unique_jobs(jobs)
    root = str(root)
    if executor == "ray":
        return _run_ray(todo, root, workers, threads, address, on_done)
    workers = workers or default_workers()
    if workers == 1:
        return _run_inline(todo, root, threads, on_done)
    return _run_pool(todo, root, workers, threads, on_done)


_PRIORITY = {"imp": 0, "dense": 1}  # longest chain first, then what unblocks others


def _ready(pending: dict[str, Job], results: dict[str, dict]) -> list[Job]:
    ready = [job for job in pending.values() if all(d in results for d in job.deps)]
    return sorted(ready, key=lambda job: _PRIORITY.get(job.kind, 2))


def _run_inline(todo: list[Job], root: str, threads: int, on_done) -> dict[str, dict]:
    results: dict[str, dict] = {}
    before = torch.get_num_threads()
    try:
        for job in todo:  # plan order already puts dependencies first
            try:
                results[job.id] = execute_job(job.to_dict(), root, threads)
            except Exception as err:
                raise JobFailed(job, err) from err
            on_done(job, results[job.id])
    finally:
        torch.set_num_threads(before)
    return results


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def process_pool(workers: int) -> ProcessPoolExecutor:
    """The local process pool of study and zoo runners: spawned workers that die with this process.

    Workers are spawned from the thread that submits, so drive the pool from one thread that
    outlives it (Linux delivers the parent-death signal when the spawning *thread* exits).
    """
    # spawn, not fork: forking a process that already ran torch ops can deadlock in OpenMP.
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))


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


def _run_pool(todo: list[Job], root: str, workers: int, threads: int, on_done) -> dict[str, dict]:
    results: dict[str, dict] = {}
    pending = {job.id: job for job in todo}
    running: dict[Future, Job] = {}
    with process_pool(workers) as pool:
        try:
            while pending or running:
                for job in _ready(pending, results):
                    running[pool.submit(execute_job, job.to_dict(), root, threads)] = pending.pop(job.id)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    job = running.pop(fut)
                    try:
                        results[job.id] = fut.result()
                    except Exception as err:
                        raise JobFailed(job, err) from err
                    on_done(job, results[job.id])
        except BaseException:
            for fut in running:
                fut.cancel()
            raise
    return results


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


def _run_ray(todo: list[Job], root: str, workers: int | None, threads: int, address: str | None,
             on_done) -> dict[str, dict]:
    ray, started_here = start_ray(workers, address)
    remote = ray.remote(num_cpus=threads, max_retries=0)(execute_job)
    results: dict[str, dict] = {}
    pending = {job.id: job for job in todo}
    running: dict = {}
    try:
        while pending or running:
            for job in _ready(pending, results):
                running[remote.remote(job.to_dict(), root, threads)] = pending.pop(job.id)
            done, _ = ray.wait(list(running), num_returns=1)
            for ref in done:
                job = running.pop(ref)
                try:
                    results[job.id] = ray.get(ref)
                except Exception as err:
                    raise JobFailed(job, err) from err
                on_done(job, results[job.id])
    finally:
        for ref in running:
            ray.cancel(ref)
        if started_here:
            ray.shutdown()
    return results
