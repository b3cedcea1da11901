"""The `sdc` command line: encode, decode, inspect, truncate, analyze.

Laid out as rasterio's `rio`: :mod:`.main` holds the click group and turns
every failure into one line and an exit code, :mod:`.options` the options the
commands share, :mod:`.io` reading inputs, planning outputs and writing them
atomically, :mod:`.report` what goes to stderr, and each command is a module
of its own whose ``command`` the group adds. The commands call :mod:`sdc.api`,
so the command line and Python check and map their arguments the same way.

Import cost matters: `sdc --help`, `sdc inspect` and `sdc truncate` must start
in well under 0.3 s, so these modules import only click and sdc's light
modules at import time; torch, numpy, PIL and rich are imported inside the
commands that need them.

Exit codes: 0 success, 1 usage error, 2 bad input. Outputs are never
overwritten without --force.
"""
from __future__ import annotations

from .main import cli, main

__all__ = ["cli", "main"]
