"""Coding many images: tasks (one input, one output) run here, in a process pool, or on Ray.

    >>> from sdc.batch import Task, run_tasks
    >>> from sdc import api
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "astronaut.sdc")
    >>> options = {"settings": api.encode_settings(quality=2), "force": False, "max_pixels": None}
    >>> [(t.dst == out, error, result["row"]["size"] > 0)
    ...  for t, result, error in run_tasks([Task("encode", "samples/astronaut.png", out, options)])]
    [(True, None, True)]
"""
from .pool import available_cores, run_tasks
from .ray_runner import run_tasks_on_ray
from .tasks import COMMANDS, Task, run_task

__all__ = ["Task", "run_task", "run_tasks", "run_tasks_on_ray", "available_cores", "COMMANDS"]
