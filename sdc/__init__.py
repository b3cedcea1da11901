"""sdc: semantically structured image coding for machines.

The Python API (:mod:`sdc.api`)::

    data = sdc.encode("photo.png", quality=3, task="object detection")   # -> .sdc bytes
    img = sdc.open(data)            # SdcImage: size, levels, objects; no model loaded
    small = img.truncate("L1")      # keep L1 only, at the byte level
    picture = sdc.decode(small)     # PIL image; sdc.decode_array gives numpy

Importing sdc stays light (no torch, no numpy, not even PIL): the API's names
are loaded on first use (a module ``__getattr__``), and the Pillow plugin is
registered so that after `import sdc`, `PIL.Image.open("x.sdc")` opens .sdc
files and `im.save("x.sdc", quality=5)` writes them (the codec is loaded only
when pixels are needed). If PIL.Image is already imported the plugin is
registered now; otherwise right after PIL.Image is first imported, so that
commands that never touch images (`sdc --help`, `sdc inspect`) do not pay for
Pillow.
"""
from __future__ import annotations

import sys

from .errors import BadInputError, CodecMismatchError, FormatError, SdcError, UsageError

__all__ = ["encode", "decode", "decode_array", "open", "SdcImage", "SdcObject",
           "SdcError", "UsageError", "BadInputError", "FormatError", "CodecMismatchError"]
_API = {"encode", "decode", "decode_array", "open", "SdcImage", "SdcObject"}


def __getattr__(name: str):
    """The API's names, taken from sdc.api on first use, so that `import sdc` itself loads
    only the errors and the Pillow hook."""
    if name in _API:
        from . import api

        value = globals()[name] = getattr(api, name)
        return value
    raise AttributeError(f"module 'sdc' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | _API)


def _register_pillow_plugin() -> None:
    try:
        from . import pillow_plugin  # noqa: F401  (registers itself on import)
    except ImportError:  # Pillow missing: everything but the plugin still works
        pass


class _LoaderThenRegister:
    """Wraps PIL.Image's loader: runs it, then registers the sdc plugin."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register_pillow_plugin()

    def __getattr__(self, name):  # get_source, get_filename, ... of the real loader
        return getattr(self._loader, name)


class _PillowImportHook:
    """A sys.meta_path finder that only acts once, on the first import of PIL.Image."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name != "PIL.Image":
            return None
        _remove_hook()
        from importlib.util import find_spec

        spec = find_spec(name)
        if spec is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _LoaderThenRegister(spec.loader)
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if f is not _PillowImportHook]


if "PIL.Image" in sys.modules:
    _register_pillow_plugin()
elif _PillowImportHook not in sys.meta_path:
    sys.meta_path.insert(0, _PillowImportHook)
