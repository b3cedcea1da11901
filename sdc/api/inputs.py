"""Reading what the API is given: image files, arrays and PIL images, .sdc bytes or
paths, regions files, level lists. Every failure is a one-line SdcError naming the input.

Nothing heavy is imported at module level: numpy and PIL load inside the
functions that turn an image into pixels.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Union

from sdc.errors import BadInputError, UsageError
from sdc.levels import LEVELS, parse_levels

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# Same value as sdc.bitstream.DEFAULT_MAX_PIXELS (a test checks): repeated so that
# importing the API does not import the container.
DEFAULT_MAX_PIXELS = 1 << 26

ImageSource = Union["Image.Image", "np.ndarray", bytes, str, os.PathLike]
SdcSource = Union[bytes, bytearray, memoryview, str, os.PathLike]
Levels = Union[str, Iterable[str], None]


def read_file(path: str | os.PathLike) -> bytes:
    """The bytes of a file; a missing or unreadable file is a BadInputError naming it.

    >>> from sdc import api
    >>> api.read_file("samples/astronaut.png")[:4]
    b'\\x89PNG'
    >>> api.read_file("samples/nothing.png")
    Traceback (most recent call last):
    ...
    sdc.errors.BadInputError: samples/nothing.png: no such file
    """
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BadInputError(f"{path}: is a directory") from None
    except PermissionError:
        raise BadInputError(f"{path}: permission denied") from None
    except OSError as e:
        raise BadInputError(f"{path}: cannot read ({e.strerror})") from None


def refuse_sdc(head: bytes, label: str) -> None:
    """Raise BadInputError if `head` (a file's first 8 bytes or more) starts an .sdc file:
    such a file is to be decoded, not encoded again.

    >>> import numpy as np, sdc
    >>> from sdc import api
    >>> api.refuse_sdc(b"\\x89PNG\\r\\n\\x1a\\n", "a.png")
    >>> api.refuse_sdc(sdc.encode(np.zeros((64, 64, 3), np.uint8), regions={"width": 64, "height": 64,
    ...                                                                     "objects": []}), "a.sdc")
    Traceback (most recent call last):
    ...
    sdc.errors.BadInputError: a.sdc: is already an .sdc file (use 'sdc decode')
    """
    from sdc.bitstream import is_sdc

    if is_sdc(head[:8]):
        raise BadInputError(f"{label}: is already an .sdc file (use 'sdc decode')")


def read_image(data: bytes, label: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> "Image.Image":
    """An image file's bytes (PNG, JPEG, WebP, ...) -> an RGB PIL image, EXIF orientation applied.

    The size is checked against `max_pixels` before the pixels are decoded.

    >>> from sdc import api
    >>> data = api.read_file("samples/astronaut.png")
    >>> api.read_image(data, "astronaut.png").size
    (512, 512)
    >>> api.read_image(data, "astronaut.png", max_pixels=1000)
    Traceback (most recent call last):
    ...
    sdc.errors.BadInputError: astronaut.png: image is 512x512 = 262144 pixels, over the limit of 1000 (--max-pixels)
    """
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    refuse_sdc(data[:8], label)
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_pixels(*im.size, label, max_pixels)
            return ImageOps.exif_transpose(im).convert("RGB")
    except BadInputError:
        raise
    except Image.DecompressionBombError as e:
        raise BadInputError(f"{label}: {e}") from None
    except UnidentifiedImageError:
        raise BadInputError(f"{label}: not an image file sdc can read (PNG, JPEG, WebP, ...)") from None
    except (OSError, ValueError, SyntaxError) as e:  # PIL's ways of saying "damaged"
        raise BadInputError(f"{label}: cannot read the image ({' '.join(str(e).split())})") from None


def check_pixels(width: int, height: int, label: str, max_pixels: int | None) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise BadInputError(f"{label}: image is {width}x{height} = {width * height} pixels, over the limit of "
                            f"{max_pixels} (--max-pixels)")


def rgb_array(image: ImageSource, max_pixels: int | None) -> "np.ndarray":
    """Any image `encode` accepts -> a C-contiguous (H, W, 3) uint8 array."""
    import numpy as np
    from PIL import Image

    if isinstance(image, (str, os.PathLike)):
        image = read_image(read_file(image), str(image), max_pixels)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        image = read_image(bytes(image), "image", max_pixels)
    if isinstance(image, Image.Image):
        check_pixels(*image.size, "image", max_pixels)
        return np.ascontiguousarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray):
        raise UsageError("image must be a PIL image, an (H, W, 3) uint8 array, image file bytes or a path, "
                         f"not {type(image).__name__}")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise BadInputError(f"image array must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    check_pixels(image.shape[1], image.shape[0], "image", max_pixels)
    return np.ascontiguousarray(image)


def read_regions(path: str | os.PathLike, what: str = "regions") -> Any:
    """The parsed JSON of a regions file (`sdc analyze` output or COCO-style annotations).

    `what` starts the error messages (the CLI passes its option's name).

    >>> import json, tempfile, os
    >>> from sdc import api
    >>> path = os.path.join(tempfile.mkdtemp(), "r.json")
    >>> _ = open(path, "w").write(json.dumps({"width": 64, "height": 64, "objects": []}))
    >>> api.read_regions(path)["objects"]
    []
    >>> _ = open(path, "w").write("{not json")
    >>> api.read_regions(path, what="--regions")
    Traceback (most recent call last):
    ...
    sdc.errors.BadInputError: --regions ...: not JSON (...)
    """
    import json

    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{what} {path}: no such file") from None
    except OSError as e:
        raise BadInputError(f"{what} {path}: cannot read ({e.strerror})") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise BadInputError(f"{what} {path}: not JSON ({' '.join(str(e).split())[:100]})") from None


def sdc_bytes(data: SdcSource) -> bytes:
    if isinstance(data, (str, os.PathLike)):
        return read_file(data)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise UsageError(f"expected .sdc bytes or a path, not {type(data).__name__}")


def level_names(levels: Levels, what: str = "levels") -> tuple[str, ...]:
    """None, "all", "L1,L2" or an iterable of level names -> level names in stream order."""
    if levels is None:
        return LEVELS
    text = levels if isinstance(levels, str) else ",".join(str(lv) for lv in levels)
    try:
        return parse_levels(text)
    except ValueError as e:
        raise UsageError(f"{what}: {e}") from None
