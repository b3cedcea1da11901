"""Run tasks in this process or in a pool of worker processes, results in input order.

::

    tasks ──▶ jobs == 1: one after the other, here
          └─▶ jobs > 1:  a pool of `jobs` spawned processes, each loading its models once
                         (the codec and the analyzer are cached per process), at most
                         IN_FLIGHT_PER_JOB tasks per worker queued at a time
    outcomes ◀── in input order: (task, {"row", "warnings"} or None, SdcError or None)

Each worker gets an equal share of the cores for its own threads (ONNX Runtime,
BLAS, OpenCV): two workers on two cores run one thread each, which keeps both
cores busy on two images instead of splitting one image's layers between them.

Workers are started with "spawn", not "fork": a forked copy of a process whose
ONNX Runtime, BLAS or OpenCV thread pools already ran can deadlock.

Ctrl-C reaches the workers too (same process group): a task stops, its output's
temporary file is removed (:func:`sdc.cli.io.write_output`), and the pool is
shut down without starting the tasks still queued. SIGTERM to the batch's
process does the same. No output is ever partial: each is complete and in
place, or absent.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator

from sdc.errors import SdcError

from .tasks import Task, attempt

IN_FLIGHT_PER_JOB = 4  # queued tasks per worker: enough to keep it busy, bounded for a million inputs
# Thread-count variables read when numpy, BLAS, OpenCV and sdc start in a worker.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "SDC_THREADS")

Outcome = tuple[Task, dict | None, SdcError | None]


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def worker_init(threads: int) -> None:
    """Give a worker process's own thread pools `threads` threads (its share of the cores)."""
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})  # read when the models load
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:
        pass


def run_tasks(tasks: Iterable[Task], jobs: int = 1) -> Iterator[Outcome]:
    """Run every task; yield (task, result, error) in input order.

    A bad input (exit code 2) is an outcome with its error; any other error
    (a usage error, a bug) stops the batch and is raised here. The seconds each
    item took are in result["seconds"] or the error's `seconds` (:func:`attempt`).
    """
    if jobs <= 1:
        for task in tasks:
            yield (task, *attempt(task))
        return
    yield from _run_pool(tasks, jobs)


def _run_pool(tasks: Iterable[Task], jobs: int) -> Iterator[Outcome]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    threads = max(1, available_cores() // jobs)
    saved = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    os.environ.update({name: str(threads) for name in THREAD_VARIABLES})  # inherited by the spawned workers
    try:
        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=worker_init, initargs=(threads,))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    pending: deque = deque()
    source = iter(tasks)
    restore = _terminate_as_interrupt()
    try:
        while True:
            while len(pending) < jobs * IN_FLIGHT_PER_JOB:
                task = next(source, None)
                if task is None:
                    break
                pending.append((task, pool.submit(attempt, task)))
            if not pending:
                break
            task, future = pending.popleft()
            yield (task, *future.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # running tasks finish or stop cleanly; queued ones never start
        raise
    finally:
        restore()
    pool.shutdown(wait=True)


def _terminate_as_interrupt():
    """While the pool runs, SIGTERM stops the batch as Ctrl-C does, so that the workers are
    shut down with it instead of being left behind; returns what restores the old handler."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return lambda: None  # signal handlers belong to the main thread

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)
