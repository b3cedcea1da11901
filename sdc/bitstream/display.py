"""The DISP chunk (format 2.1): the size at which to show the decoded image.

An encoder may code a smaller picture than it was given (a machine task's
preset codes a detector's input at half size: sdc.task_coding). The header's
width and height are then the coded picture's, which is what the region map,
the hyperprior and the substreams describe, and DISP holds the size of the
original: a decoder upsamples its output to it. It is an ancillary extra
chunk (type 0x80, spec/FORMAT.md 6.5): a reader that does not know it decodes
the coded picture, which is a correct, smaller image.

Payload: varint display width, varint display height. Each is at least the
coded size and at most MAX_UPSCALE times it.
"""
from __future__ import annotations

from .wire import Reader, put_varint

DISP_TYPE = b"\x80"
DISP_NAME = "DISP"
MAX_UPSCALE = 16


def check_display_size(display: tuple[int, int], width: int, height: int) -> str | None:
    """Why `display` is not a valid display size for a coded width x height picture (None if it is)."""
    dw, dh = display
    if not (width <= dw <= MAX_UPSCALE * width and height <= dh <= MAX_UPSCALE * height):
        return (f"display size {dw}x{dh} must be from the coded size {width}x{height} "
                f"to {MAX_UPSCALE} times it")
    return None


def encode_display_size(display: tuple[int, int], width: int, height: int) -> bytes:
    problem = check_display_size(display, width, height)
    if problem:
        raise ValueError(problem)
    out = bytearray()
    put_varint(out, int(display[0]))
    put_varint(out, int(display[1]))
    return bytes(out)


def decode_display_size(payload, width: int, height: int, max_pixels: int | None) -> tuple[int, int]:
    """(display width, display height) of a DISP payload for a coded width x height picture."""
    r = Reader(payload, where="display size", chunk=DISP_NAME)
    display = (r.varint("display width"), r.varint("display height"))
    r.finish()
    problem = check_display_size(display, width, height)
    if problem:
        raise r.error(problem)
    if max_pixels is not None and display[0] * display[1] > max_pixels:
        raise r.error(f"display size {display[0]}x{display[1]} is over the limit of {max_pixels} pixels")
    return display
