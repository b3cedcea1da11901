"""CRC-32C (Castagnoli), the checksum of every .sdc chunk and of the header.

Parameters (spec/FORMAT.md, "Checksums"): polynomial 0x1EDC6F41 (reflected
0x82F63B78), initial value 0xFFFFFFFF, input and output reflected, final XOR
0xFFFFFFFF. Check value: crc32c(b"123456789") == 0xE3069283.

The `crc32c` package (a C implementation, hardware-accelerated where the CPU
allows) does the work; it is a hard dependency because the reader must stay
fast on large and adversarial inputs. Its package __init__ imports
importlib.metadata (tens of milliseconds) only to set __version__, so the
C extension is loaded directly when possible: `sdc inspect` and `sdc truncate`
must start fast. Anything unexpected falls back to the normal import.
"""
from __future__ import annotations


def _load():
    try:
        import importlib.machinery
        import importlib.util
        import os

        spec = importlib.util.find_spec("crc32c")  # locates the package without running it
        for folder in (spec.submodule_search_locations or ()) if spec else ():
            for suffix in importlib.machinery.EXTENSION_SUFFIXES:
                path = os.path.join(folder, "_crc32c" + suffix)
                if os.path.isfile(path):
                    loader = importlib.machinery.ExtensionFileLoader("crc32c._crc32c", path)
                    ext_spec = importlib.util.spec_from_loader("crc32c._crc32c", loader, origin=path)
                    module = importlib.util.module_from_spec(ext_spec)
                    loader.exec_module(module)
                    fn = module.crc32c
                    if fn(b"123456789") == 0xE3069283:
                        return fn
    except Exception:
        pass
    from crc32c import crc32c as fn

    return fn


_crc32c = _load()


def crc32c(data: bytes | bytearray | memoryview) -> int:
    """CRC-32C of `data` as an unsigned 32-bit integer."""
    return _crc32c(data)
