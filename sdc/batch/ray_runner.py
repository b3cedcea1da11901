"""Run a batch's tasks on Ray (`--ray ADDRESS`): a Ray instance started here, or a cluster.

::

    tasks ──▶ this process (the driver): hands each task to the least busy worker,
              at most IN_FLIGHT_PER_WORKER per worker and WINDOW_PER_WORKER per worker
              not yet reported, so a million inputs are never submitted at once
          ──▶ SdcWorker actors: one per CPU of the cluster (`sdc analyze` with a model
              analyzer on a cluster with GPUs: one per GPU), each loading the codec
              and the analyzer once
    outcomes ◀── in input order: (task, {"row", "warnings", "seconds"} or None, SdcError or None)

`sdc encode` with a model analyzer on a cluster with GPUs splits each task in two::

    tasks ──▶ the driver, as above, with a window over both kinds of workers
          ──▶ SdcAnalyst actors, one per GPU: read the input, run its analysis
              (:func:`sdc.batch.tasks.analyse`), models on the GPU; write nothing
          ──▶ SdcWorker actors, one per CPU left, given a task once it is analysed:
              code the input with that analysis (an Analysed: plain data, handed
              from actor to actor by Ray's object store, never through the driver
              or a file) and write the output, as above
    outcomes ◀── in input order, as above; result["analysed_by"] says which analyst ran it

The contract is :func:`sdc.batch.run_tasks`'s: a bad input (exit code 2) is
an outcome with its error; anything else (a usage error, a bug, a worker that
keeps dying) stops the batch and is raised here, as one line.

Why actors, not a Ray task per image: on 16 coco128 images on a 2-core
machine (default quality and analyzer, Ray already started), an actor per
core coded 3.5-4.2 images/s and a Ray task per image 3.5-4.3 images/s, as
Ray reused its worker processes and sdc keeps its models per process; a task
per image in a fresh process (`max_calls=1`, what a task costs whenever Ray
does not reuse the worker) coded 1.1 images/s. Actors make loading once a
guarantee rather than a side effect of worker reuse, fix the number of
workers and each one's threads, and a restarted actor knows that it runs
tasks again (`was_current_actor_reconstructed`), which is what lets a retry
keep its lost attempt's output safely (below).

Resources. A codec worker asks for one CPU and runs its ONNX Runtime and
OpenCV thread pools on one thread: one image per core keeps every core busy.
`sdc analyze` is analysis only: with an analyzer that runs torch models
(GPU_ANALYZERS) on a cluster with GPUs (`ray.cluster_resources()` has
"GPU"), its workers ask for one GPU each and run the models on it (config
`device = "cuda"` unless the config names another device; "cpu" where torch
sees no GPU, so that a GPU Ray was told of but torch cannot use still gives
results). Otherwise, and for "auto" (which picks its backend on each
worker's machine), they are CPU workers like the others: the offline
analyzer runs on OpenCV and gains nothing from a GPU.

`sdc encode` with such an analyzer on such a cluster (and no --regions)
runs its analyses apart from the codec calls: an SdcAnalyst asks for one GPU
and one CPU, and min(GPUs, CPUs - 1) of them start, before the codec workers
(one per CPU left), so that those never take the CPUs a GPU's machine needs
to place them. The codec workers code with the analysis they are handed
(:func:`sdc.pipeline.analyze_for_encode` is what the codec call would have
run): the same bytes as an encode that analyses itself. Otherwise (no GPU,
the offline or "auto" analyzer, regions given, a single CPU) an encode's
workers analyse and code in one call, on the CPU.

A lost worker (killed, out of memory, its machine gone) is restarted by Ray
(`max_restarts=-1`) and the tasks it held are run again (at most
MAX_TASK_RETRIES times each; a task that kills its worker more often stops
the batch). An analyst writes nothing: what it held is simply analysed
again. A restarted SdcWorker treats every task it gets as one that may have
run before: it removes the temporary file a lost attempt may have left
(:func:`sdc.cli.io.remove_temporaries`), then codes the input again; if the
lost attempt had already put its output in place (outputs are written
atomically: complete or absent), that output holds exactly the bytes this run
computed and is kept as it is: not written twice, and reported with this
run's row (:func:`sdc.batch.tasks.run_task`'s `retry`). Ray itself prints a
notice of the lost worker and of the retries on stdout.

Paths. Workers read and write the paths the tasks name, relative ones from
the driver's working directory: on a cluster of several machines the inputs,
the outputs and that directory must be on storage every machine mounts at the
same path, and sdc (same version, same weights) installed on every machine.
"""
from __future__ import annotations

import functools
import logging
import os
from collections import deque
from collections.abc import Iterable, Iterator
from itertools import chain

from sdc.errors import SdcError, UsageError

from .pool import available_cores, worker_init
from .tasks import Analysed, Task, analyse, attempt

IN_FLIGHT_PER_WORKER = 2  # one image running, the next one queued: a worker never waits on the driver
WINDOW_PER_WORKER = 8  # submitted but not yet reported: bounds what waits behind a slow image
MAX_TASK_RETRIES = 3  # runs of a task again after its worker died, before the batch stops
GPU_ANALYZERS = ("grounding-dino", "owlv2")  # analyzers whose models run on torch, so on a GPU when given one
CONNECT_TIMEOUT = 10  # seconds to wait for a cluster's address to answer at all
STOP_TIMEOUT = 120  # seconds the tasks still out may take to finish when the batch stops on an error

Outcome = tuple[Task, dict | None, SdcError | None]


class WorkerLostError(SdcError):
    """A Ray worker died more often than its task may be run again, or Ray itself failed."""

    exit_code = 1


def import_ray():
    try:
        import ray
    except ImportError:
        raise UsageError('--ray needs Ray: pip install "sdc[dist]"') from None
    return ray


class SdcWorker:
    """One worker process of the batch (a Ray actor): the codec and the analyzer load on its
    first task and stay loaded for the next ones."""

    def __init__(self, workdir: str, threads: int = 1):
        import ray

        worker_init(threads)
        if os.path.isdir(workdir):
            os.chdir(workdir)  # the tasks' relative paths are the driver's
        # A restarted worker runs again the tasks its lost incarnation held.
        self.restarted = ray.get_runtime_context().was_current_actor_reconstructed
        self.use_gpu = bool(ray.get_gpu_ids())

    def run(self, task: Task, analysed: Analysed | None = None) -> tuple[dict | None, SdcError | None]:
        """Run `task`; with `analysed` (an encode task analysed by an SdcAnalyst), code it with that analysis."""
        if self.use_gpu and task.command == "analyze":
            task = on_device(task, gpu_device())
        if self.restarted:
            from sdc.cli.io import remove_temporaries

            remove_temporaries(task.dst)
            if task.options.get("draw"):
                remove_temporaries(task.options["draw"])
        try:
            return attempt(task, retry=self.restarted, analysed=analysed)
        except SdcError as e:  # a usage error: the driver raises it, as one line (not Ray's traceback)
            return None, e


class SdcAnalyst:
    """An analysis worker of an encode batch (a Ray actor holding a GPU): runs the analysis of
    each task it gets, models on its GPU, loaded on its first task; writes nothing."""

    def __init__(self, workdir: str, threads: int = 1):
        import ray

        worker_init(threads)
        if os.path.isdir(workdir):
            os.chdir(workdir)
        self.where = {"pid": os.getpid(), "gpus": [str(g) for g in ray.get_gpu_ids()], "device": gpu_device()}

    def ready(self) -> bool:
        return True

    def run(self, task: Task) -> Analysed:
        from dataclasses import replace

        return replace(analyse(on_device(task, self.where["device"])), where=self.where)


@functools.cache  # torch and CUDA answer the same for the life of the process
def gpu_device() -> str:
    """The torch device of the GPU Ray gave this process (CUDA_VISIBLE_DEVICES names it): "cuda",
    or "cpu" when torch cannot reach it (torch without CUDA, a GPU Ray was told of that is not
    there), where the models still run and give the same analysis, only slower."""
    try:
        import torch
    except ImportError:
        return "cpu"  # the analyzer says what it lacks, with its own message
    return "cuda" if torch.cuda.is_available() else "cpu"


def on_device(task: Task, device: str) -> Task:
    """An analyze or encode task with its analysis models on `device`, unless its config names a device."""
    from dataclasses import replace

    from sdc.analysis.config import resolve_config

    settings = task.options.get("settings")
    config = dict((task.options.get("config") if task.command == "analyze" else settings.analysis_config) or {})
    if device == "cpu" or resolve_config(config).get("device", "cpu") != "cpu":
        return task
    config["device"] = device
    if task.command == "analyze":
        return replace(task, options={**task.options, "config": config})
    return replace(task, options={**task.options, "settings": replace(settings, analysis_config=config)})


def run_tasks_on_ray(tasks: Iterable[Task], address: str, *, manifest=None) -> Iterator[Outcome]:
    """Run every task on Ray; yield (task, result, error) in input order, as run_tasks does.

    address: "local" starts a Ray instance on this machine (one worker per core),
    anything else is a cluster's address for ray.init ("auto", "host:port"). When
    Ray is already initialised in this process, its cluster is used and left running.
    manifest: a file to append one line per outcome to (:mod:`sdc.batch.manifest`);
    the CLI writes it itself (:func:`sdc.cli.report.run_batch`) and passes None.
    """
    source = iter(tasks)
    first = next(source, None)
    if first is None:
        return
    outcomes = _run(chain([first], source), first, address)
    if manifest is not None:
        from .manifest import recorded

        outcomes = recorded(outcomes, manifest)
    yield from outcomes


def _run(tasks: Iterator[Task], first: Task, address: str) -> Iterator[Outcome]:
    ray = import_ray()
    started_here = not ray.is_initialized()
    if started_here:
        _connect(ray, address)
    try:
        # The workers end with their handles: when this generator ends, or the driver leaves the cluster.
        analysts, workers = _start_workers(ray, first)
        yield from _dispatch(ray, workers, tasks, analysts)
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray, address: str) -> None:
    quiet = {"include_dashboard": False, "logging_level": logging.ERROR, "log_to_driver": False}
    try:
        if address == "local":
            ray.init(address="local", num_cpus=available_cores(), **quiet)  # a new instance, never a running one
        else:
            _check_reachable(address)
            ray.init(address=address, **quiet)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise UsageError(f"--ray {address}: cannot connect to Ray: {' '.join(str(e).split())}") from None


def _check_reachable(address: str) -> None:
    """A host:port that nothing answers on, refused now: ray.init would retry it for minutes."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or "://" in address or not port.isdigit():
        return  # "auto" and other forms: ray.init knows them
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as e:
        raise ConnectionError(f"nothing answers at {address} ({e.strerror or e})") from None


def worker_resources(total: dict, task: Task) -> tuple[int, dict]:
    """How many workers to start for a batch of tasks like `task`, and what each one asks
    Ray for, on a cluster with the resources `total` (see the module's docstring); the
    analysts (:func:`analyst_count`) come on top.

    >>> from sdc import api
    >>> from sdc.batch import Task
    >>> from sdc.batch.ray_runner import analyst_count, worker_resources
    >>> total = {"CPU": 64.0, "GPU": 4.0}
    >>> worker_resources(total, Task("analyze", "a.jpg", "a.json", {"analyzer": "owlv2"}))
    (4, {'num_cpus': 1, 'num_gpus': 1})
    >>> worker_resources(total, Task("encode", "a.jpg", "a.sdc", {}))
    (64, {'num_cpus': 1})
    >>> owlv2 = Task("encode", "a.jpg", "a.sdc", {"settings": api.encode_settings(analyzer="owlv2")})
    >>> analyst_count(total, owlv2), worker_resources(total, owlv2)
    (4, (60, {'num_cpus': 1}))
    >>> analyst_count({"CPU": 64.0}, owlv2), analyst_count({"CPU": 1.0, "GPU": 1.0}, owlv2)
    (0, 0)
    """
    gpus = int(total.get("GPU", 0))
    if gpus and task.command == "analyze" and task.options.get("analyzer") in GPU_ANALYZERS:
        return gpus, {"num_cpus": 1, "num_gpus": 1}
    return max(1, int(total.get("CPU", 1)) - analyst_count(total, task)), {"num_cpus": 1}


def analyst_count(total: dict, task: Task) -> int:
    """How many SdcAnalyst actors (one GPU and one CPU each) analyse a batch of tasks like `task`
    apart from its codec workers, on a cluster with the resources `total`: 0, the analysis then
    runs in the codec call, unless `task` is an encode whose analyzer runs torch models."""
    analyzer = getattr(task.options.get("settings"), "analyzer", None)
    if task.command != "encode" or task.options.get("regions") is not None or analyzer not in GPU_ANALYZERS:
        return 0
    return max(0, min(int(total.get("GPU", 0)), int(total.get("CPU", 1)) - 1))  # a CPU left for a codec worker


def _start_workers(ray, first: Task) -> tuple[list, list]:
    """(analysts, codec workers): no analysts unless the analysis runs apart (the module's docstring)."""
    total = ray.cluster_resources()
    restarts = {"max_restarts": -1, "max_task_retries": MAX_TASK_RETRIES}
    analysts = []
    if analyst_count(total, first):
        actor = ray.remote(SdcAnalyst).options(num_cpus=1, num_gpus=1, **restarts)
        analysts = [actor.remote(os.getcwd(), 1) for _ in range(analyst_count(total, first))]
        # Placed first: codec workers started with them could take the CPUs of the GPUs' machines.
        ray.get([a.ready.remote() for a in analysts])
    count, resources = worker_resources(total, first)
    actor = ray.remote(SdcWorker).options(**restarts, **resources)
    return analysts, [actor.remote(os.getcwd(), 1) for _ in range(count)]


class _Pool:
    """Workers of one kind, and how many tasks each one holds (submitted, not finished)."""

    def __init__(self, workers: list):
        self.workers = workers
        self.busy = [0] * len(workers)

    def has_room(self) -> bool:
        return min(self.busy) < IN_FLIGHT_PER_WORKER

    def submit(self, *args) -> tuple[int, object]:
        """(the worker's index, the ref of its run(*args)), on the least busy worker."""
        w = min(range(len(self.workers)), key=self.busy.__getitem__)
        self.busy[w] += 1
        return w, self.workers[w].run.remote(*args)


class _Item:
    """A task submitted and not yet reported: the ref of its last stage, and whether that is its coding."""

    __slots__ = ("task", "ref", "coded")

    def __init__(self, task: Task, ref, coded: bool):
        self.task, self.ref, self.coded = task, ref, coded


def _dispatch(ray, workers: list, tasks: Iterator[Task], analysts: list = ()) -> Iterator[Outcome]:
    """Keep every worker busy, the number of tasks out bounded; yield outcomes in input order.
    With `analysts`, each task is analysed by one of them first, then coded by one of `workers`."""
    coders = _Pool(workers)
    first = _Pool(analysts) if analysts else coders
    pending: deque = deque()  # _Items in input order, not yet yielded
    running: dict = {}  # ref -> (its pool, its worker's index, its _Item), for the refs not finished
    analysed: deque = deque()  # _Items analysed, waiting for room in a codec worker
    window = WINDOW_PER_WORKER * (len(workers) + len(analysts))
    exhausted = False
    try:
        while True:
            while analysed and coders.has_room():  # analysed first: what is started gets finished
                item = analysed.popleft()
                w, item.ref = coders.submit(item.task, item.ref)  # Ray hands the analysis to the codec worker
                item.coded = True
                running[item.ref] = (coders, w, item)
            while not exhausted and len(pending) < window and first.has_room():
                task = next(tasks, None)
                if task is None:
                    exhausted = True
                    break
                w, ref = first.submit(task)
                pending.append(_Item(task, ref, first is coders))
                running[ref] = (first, w, pending[-1])
            if not pending:
                return
            item = pending[0]
            if item.ref in running or not item.coded:  # the next one to report is not finished: wait for any
                ready, _ = ray.wait(list(running), num_returns=1)
                for done in ready:
                    pool, w, finished = running.pop(done)
                    pool.busy[w] -= 1
                    if not finished.coded:
                        analysed.append(finished)
                continue
            pending.popleft()
            yield (item.task, *_outcome(ray, item.task, item.ref))
    except Exception:
        # The batch stops (a usage error, a bug): the few tasks out (IN_FLIGHT_PER_WORKER a
        # worker) finish before the workers go, so that none is killed while writing.
        if running:
            ray.wait(list(running), num_returns=len(running), timeout=STOP_TIMEOUT)
        raise


def _outcome(ray, task: Task, ref) -> tuple[dict | None, SdcError | None]:
    try:
        result, error = ray.get(ref)
    except ray.exceptions.RayTaskError as e:  # a bug in the worker: raised here as it was there
        raise (e.cause if isinstance(getattr(e, "cause", None), BaseException) else e) from None
    except ray.exceptions.RayError as e:
        raise WorkerLostError(f"{task.label}: the Ray worker running it was lost {MAX_TASK_RETRIES + 1} times "
                              f"or Ray failed ({type(e).__name__}); the batch stopped: run it again with "
                              "--skip-existing to resume") from None
    if error is not None and error.exit_code != 2:
        raise error
    return result, error
