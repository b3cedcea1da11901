"""Pillow plugin: after `import sdc`, `Image.open("x.sdc")` opens .sdc files and
`im.save("x.sdc", quality=5, task=...)` writes them.

Opening reads and checks the container (no torch): `im.size`, `im.mode` and
`im.info["sdc"]` (qualities, levels present and missing, semantic metadata) are
available at once. Pixels are decoded by sdc.pipeline (torch) when the image is
loaded, i.e. on `im.load()`, `im.convert(...)`, `np.asarray(im)`, ...

Saving goes through :func:`sdc.encode`: the keyword arguments of `im.save`
that sdc.encode takes (quality, task, levels, regions, analyzer, effort,
metadata, analysis_config) are passed on, Pillow's own ones are ignored. The
image is converted to RGB first (an alpha channel is dropped).

Damaged or cut-short files raise OSError with the container's one-line message,
as Pillow does for its own formats.
"""
from __future__ import annotations

from PIL import Image, ImageFile

MAGIC = b"\x89SDC\r\n\x1a\n"  # == sdc.bitstream.MAGIC (checked by a test)
FORMAT = "SDC"


def _accept(prefix: bytes) -> bool:
    return prefix[:8] == MAGIC


class SdcImageFile(ImageFile.ImageFile):
    format = FORMAT
    format_description = "sdc semantically structured image"

    def _open(self) -> None:
        if not _accept(self.fp.read(8)):
            raise SyntaxError("not an sdc file")
        self.fp.seek(0)
        data = self.fp.read()
        from .bitstream import read_sdc
        from .errors import FormatError

        try:
            f = read_sdc(data)
        except FormatError as e:
            raise OSError(f"cannot open .sdc file: {e}") from None
        self._size = f.display_size or (f.header.width, f.header.height)  # what decoding gives
        self._mode = "RGB"
        self.info["sdc"] = {
            "qualities": dict(f.header.qualities),
            "codec_id": f.header.codec_id.hex(),
            "levels": tuple(f.levels),
            "missing_levels": tuple(f.missing_levels),
            "metadata": f.metadata,
        }
        self.tile = [ImageFile._Tile("sdc", (0, 0) + self._size, 0, None)]


class SdcDecoder(ImageFile.PyDecoder):
    _pulls_fd = True

    def decode(self, buffer):
        assert self.fd is not None
        self.fd.seek(0)
        data = self.fd.read()
        from . import pipeline

        result = pipeline.decode_sdc(data)
        rgb = result.rgb
        if tuple(rgb.shape) != (self.state.ysize, self.state.xsize, 3):
            raise ValueError(f"decoded image is {rgb.shape}, expected "
                             f"{(self.state.ysize, self.state.xsize, 3)}")
        self.set_as_raw(rgb.tobytes(), "RGB")
        return -1, 0


# The arguments of sdc.encode that `im.save(..., **params)` passes on.
SAVE_PARAMS = ("quality", "task", "levels", "regions", "analyzer", "effort", "metadata", "analysis_config")


def _save(im: Image.Image, fp, filename) -> None:
    """Pillow's save handler: encode `im` with the save call's sdc parameters into `fp`."""
    from .api import encode

    params = {k: v for k, v in im.encoderinfo.items() if k in SAVE_PARAMS}
    fp.write(encode(im, **params))


def register() -> None:
    Image.register_open(FORMAT, SdcImageFile, _accept)
    Image.register_save(FORMAT, _save)
    Image.register_decoder("sdc", SdcDecoder)
    Image.register_extension(FORMAT, ".sdc")
    Image.register_mime(FORMAT, "image/x-sdc")


register()
