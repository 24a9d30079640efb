"""Rendered images (JPEG, PNG, GIF) of one frame, for DICOMweb Retrieve Rendered.

Pipeline (PS3.4 N.2 grayscale/colour pipelines, as used by PS3.18 §8.3.5):
Modality LUT (PS3.3 C.11.1: Rescale Slope/Intercept or Modality LUT Sequence) ->
VOI window (PS3.3 C.11.2.1.2 and C.11.2.1.3: LINEAR, LINEAR_EXACT, SIGMOID) ->
MONOCHROME1 inversion (PS3.3 C.7.6.3.1.2) -> source region -> viewport
(PS3.18 §8.3.5.1.3 "window", "viewport") -> Pillow encoding ("quality").
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_color_lut, apply_modality_lut

from cloudfilm.services.imaging.pixels import (
    PixelDataError,
    PixelDescription,
    Source,
    decoded_description,
    read_frame,
)

#: Rendered media types we produce -> Pillow format name (PS3.18 §8.7.4).
MEDIA_TYPES: dict[str, str] = {"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF"}
#: VOI LUT functions, PS3.3 C.11.2.1.3.
WINDOW_FUNCTIONS: tuple[str, ...] = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
#: Largest viewport side we render (bounds memory and CPU per request).
MAX_VIEWPORT = 16384
DEFAULT_JPEG_QUALITY = 90
#: Pillow's ``reducing_gap`` for viewports (see :func:`_fit`).
REDUCING_GAP = 1.0

Region = tuple[int, int, int | None, int | None]


@dataclass(frozen=True)
class RenderOptions:
    """Rendering parameters (PS3.18 §8.3.5.1).

    ``region`` is the optional source image region ``(sx, sy, sw, sh)`` of the
    6-value viewport form: ``sw``/``sh`` of ``None`` reach the image edge; a
    negative ``sw``/``sh`` takes the region to the left/above and flips it.
    """

    media_type: str = "image/jpeg"
    window: tuple[float, float, str] | None = None
    viewport: tuple[int, int] | None = None
    quality: int | None = None
    region: Region | None = None

    def __post_init__(self) -> None:
        if self.media_type not in MEDIA_TYPES:
            raise ValueError(f"unsupported rendered media type {self.media_type!r}")
        if self.quality is not None and not 1 <= self.quality <= 100:
            raise ValueError(f"quality must be 1..100, got {self.quality}")
        if self.window is not None:
            _check_window(*self.window)
        if self.viewport is not None:
            _check_viewport(*self.viewport)


# -- query parameter parsing (PS3.18 §8.3.5.1) -----------------------------------------


def _number(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {text.strip()!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {text.strip()!r}")
    return value


def _check_window(center: float, width: float, function: str) -> None:
    if function not in WINDOW_FUNCTIONS:
        raise ValueError(f"window function must be one of {', '.join(WINDOW_FUNCTIONS)}")
    if function == "LINEAR" and width < 1:
        raise ValueError("window width must be >= 1 for LINEAR (PS3.3 C.11.2.1.2.1)")
    if width <= 0:
        raise ValueError(f"window width must be > 0 for {function}")


def parse_window(value: str) -> tuple[float, float, str]:
    """Parse ``center,width[,function]`` (PS3.18 §8.3.5.1.3); function defaults to LINEAR."""
    parts = [part.strip() for part in (value or "").split(",")]
    if len(parts) not in (2, 3):
        raise ValueError("window must be 'center,width[,function]'")
    center = _number(parts[0], "window center")
    width = _number(parts[1], "window width")
    function = (parts[2] if len(parts) == 3 else "LINEAR").upper() or "LINEAR"
    _check_window(center, width, function)
    return center, width, function


def _check_viewport(width: int, height: int) -> None:
    if not (0 < width <= MAX_VIEWPORT and 0 < height <= MAX_VIEWPORT):
        raise ValueError(f"viewport sides must be 1..{MAX_VIEWPORT}, got {width},{height}")


def _integer(text: str, name: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text.strip()!r}") from None


def _viewport_parts(value: str) -> list[str]:
    parts = (value or "").split(",")
    if len(parts) not in (2, 6):
        raise ValueError("viewport must be 'vw,vh' or 'vw,vh,sx,sy,sw,sh'")
    return parts


def parse_viewport(value: str) -> tuple[int, int]:
    """Parse ``vw,vh`` or ``vw,vh,sx,sy,sw,sh`` and return ``(vw, vh)`` (PS3.18 §8.3.5.1.3).

    The source region of the 6-value form comes from :func:`parse_viewport_region`.
    """
    parts = _viewport_parts(value)
    size = (_integer(parts[0], "viewport width"), _integer(parts[1], "viewport height"))
    _check_viewport(*size)
    if len(parts) == 6:
        parse_viewport_region(value)  # validate the whole parameter
    return size


def parse_viewport_region(value: str) -> Region | None:
    """``(sx, sy, sw, sh)`` of a 6-value viewport, ``None`` for ``vw,vh``; empty
    ``sx``/``sy`` are 0 and empty ``sw``/``sh`` reach the image edge."""
    parts = _viewport_parts(value)
    if len(parts) == 2:
        return None
    sx, sy, sw, sh = (part.strip() for part in parts[2:])
    left = _integer(sx, "sx") if sx else 0
    top = _integer(sy, "sy") if sy else 0
    width = _integer(sw, "sw") if sw else None
    height = _integer(sh, "sh") if sh else None
    if left < 0 or top < 0 or width == 0 or height == 0:
        raise ValueError("viewport region needs sx,sy >= 0 and non-zero sw,sh")
    return left, top, width, height


# -- pixel value transformations (PS3.3 C.11) -----------------------------------------


def modality_values(array: numpy.ndarray, desc: PixelDescription) -> numpy.ndarray:
    """Rescale Slope/Intercept, PS3.3 C.11.1.1.2: ``x * slope + intercept``."""
    return _rescaled(array, desc.rescale_slope, desc.rescale_intercept)


def _rescaled(array: numpy.ndarray, slope: float, intercept: float) -> numpy.ndarray:
    return array.astype(numpy.float64) * slope + intercept


def apply_window(
    values: numpy.ndarray, center: float, width: float, function: str
) -> numpy.ndarray:
    """VOI window to 0..255 floats: LINEAR (C.11.2.1.2.1, with the -0.5/-1 offsets),
    LINEAR_EXACT (C.11.2.1.3.2) and SIGMOID (C.11.2.1.3.1) of PS3.3."""
    if function == "SIGMOID":
        return 255.0 / (1.0 + numpy.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return numpy.clip((values - center) / width + 0.5, 0.0, 1.0) * 255.0
    if width <= 1:  # width 1: a threshold at c - 0.5
        return numpy.where(values > center - 0.5, 255.0, 0.0)
    return numpy.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0) * 255.0


def choose_window(
    values: numpy.ndarray, desc: PixelDescription, requested: tuple[float, float, str] | None
) -> tuple[float, float, str]:
    """The requested window, else the dataset's (C.11.2.1.2), else the value range."""
    chosen = _declared_window(desc, requested)
    if chosen is not None:
        return chosen
    return _range_window(float(values.min()), float(values.max()))


def _declared_window(
    desc: PixelDescription, requested: tuple[float, float, str] | None
) -> tuple[float, float, str] | None:
    if requested is not None:
        return requested
    center, width = desc.window_center, desc.window_width
    function = desc.voi_lut_function if desc.voi_lut_function in WINDOW_FUNCTIONS else "LINEAR"
    if center is not None and width is not None and (width >= 1 if function == "LINEAR" else width > 0):
        return center, width, function
    return None


def _range_window(low: float, high: float) -> tuple[float, float, str]:
    return (low + high) / 2.0, max(high - low, 1e-6), "LINEAR_EXACT"


def _shown(values: numpy.ndarray, window: tuple[float, float, str], inverted: bool) -> numpy.ndarray:
    """Modality values to 8-bit display values: window, MONOCHROME1 inversion, rounding."""
    shown = apply_window(values, *window)
    if inverted:  # MONOCHROME1: minimum is white
        shown = 255.0 - shown
    return numpy.asarray(numpy.rint(shown).astype(numpy.uint8))


@lru_cache(maxsize=32)
def _lookup_table(dtype: str, slope: float, intercept: float,
                  window: tuple[float, float, str], inverted: bool) -> numpy.ndarray:
    """Display value of every stored value of an integer ``dtype`` of 8 or 16 bits,
    indexed by the stored bits read as unsigned (the same arithmetic as the per-pixel
    path, done once per possible value; shared by frames with the same parameters)."""
    kind = numpy.dtype(dtype)
    unsigned = numpy.dtype(f"u{kind.itemsize}")
    stored = numpy.arange(2 ** (8 * kind.itemsize), dtype=unsigned).view(kind)
    table = _shown(_rescaled(stored, slope, intercept), window, inverted)
    table.flags.writeable = False
    return table


def _grayscale(array: numpy.ndarray, desc: PixelDescription,
               window: tuple[float, float, str] | None) -> numpy.ndarray:
    """PS3.4 N.2.1: Modality LUT, VOI LUT, Presentation LUT (MONOCHROME1) per pixel;
    8- and 16-bit integer frames through a lookup table of every stored value."""
    if array.ndim != 2:
        raise PixelDataError(f"expected one grayscale frame (rows, cols), got {array.shape}")
    inverted = desc.photometric_interpretation == "MONOCHROME1"
    if array.dtype.kind not in "iu" or array.dtype.itemsize > 2:
        values = modality_values(array, desc)
        return _shown(values, choose_window(values, desc, window), inverted)
    chosen = _declared_window(desc, window)
    if chosen is None:  # x * slope + intercept is monotonic: the range comes from min and max
        ends = modality_values(numpy.array([array.min(), array.max()]), desc)
        chosen = _range_window(float(ends.min()), float(ends.max()))
    table = _lookup_table(array.dtype.str, desc.rescale_slope, desc.rescale_intercept, chosen,
                          inverted)
    unsigned = array.view(f"u{array.dtype.itemsize}")
    return numpy.asarray(table.take(unsigned, mode="clip"))  # every index is in the table: no bounds check


def _colour(array: numpy.ndarray, desc: PixelDescription) -> numpy.ndarray:
    """Decoded RGB to 8 bits per sample (window does not apply to colour)."""
    if array.ndim != 3 or array.shape[-1] != 3:
        raise PixelDataError(f"expected one RGB frame (rows, cols, 3), got {array.shape}")
    if array.dtype == numpy.uint8:
        return array
    top = float(2 ** min(desc.bits_stored, 64) - 1)
    return numpy.rint(numpy.clip(array.astype(numpy.float64), 0, top) * (255.0 / top)).astype(
        numpy.uint8
    )


def display_pixels(
    array: numpy.ndarray, desc: PixelDescription, window: tuple[float, float, str] | None
) -> numpy.ndarray:
    """8-bit pixels ready for encoding: (rows, cols) gray or (rows, cols, 3) RGB."""
    if desc.samples_per_pixel == 3:
        return _colour(array, desc)
    if desc.samples_per_pixel == 1 and desc.photometric_interpretation != "PALETTE COLOR":
        return _grayscale(array, desc, window)
    raise PixelDataError(
        f"cannot render {desc.photometric_interpretation} with {desc.samples_per_pixel} samples"
    )


# -- geometry and encoding ------------------------------------------------------------


def _crop(image: Image.Image, region: Region | None) -> Image.Image:
    """Source image region: signed extents, a negative one flips (PS3.18 §8.3.5.1.3)."""
    if region is None:
        return image
    sx, sy, sw, sh = region
    sw = image.width - sx if sw is None else sw
    sh = image.height - sy if sh is None else sh
    left, right = sorted((sx, sx + sw))
    top, bottom = sorted((sy, sy + sh))
    left, top = max(left, 0), max(top, 0)
    right, bottom = min(right, image.width), min(bottom, image.height)
    if right <= left or bottom <= top:
        raise ValueError("viewport region lies outside the image")
    image = image.crop((left, top, right, bottom))
    if sw < 0:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if sh < 0:
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    return image


def _fit(image: Image.Image, viewport: tuple[int, int] | None) -> Image.Image:
    """Scale to fit inside the viewport, keeping the aspect ratio.

    Previews and thumbnails (the viewer's 256 px placeholder, 128/192 px series
    thumbnails) are the first images a reader waits for: a reduction first averages
    whole blocks (``Image.reduce``, the largest integer factor), then Lanczos does the
    fractional rest. A 512² slice to 256 or 128 px costs ~0.1 ms instead of 1.5–3 ms
    for Lanczos alone, within about one grey level of it on average."""
    if viewport is None:
        return image
    scale = min(viewport[0] / image.width, viewport[1] / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)


def _encode(image: Image.Image, options: RenderOptions) -> bytes:
    buffer = io.BytesIO()
    fmt = MEDIA_TYPES[options.media_type]
    if fmt == "JPEG":
        image.save(buffer, fmt, quality=options.quality or DEFAULT_JPEG_QUALITY)
    else:
        image.save(buffer, fmt)
    return buffer.getvalue()


def render_array(array: numpy.ndarray, desc: PixelDescription, options: RenderOptions) -> bytes:
    """Render one decoded frame: Modality LUT, VOI window (requested, else dataset,
    else min/max), MONOCHROME1 inverted, RGB passed through; encoded with Pillow."""
    image = Image.fromarray(display_pixels(array, desc, options.window))
    return _encode(_fit(_crop(image, options.region), options.viewport), options)


def _dataset_luts(
    array: numpy.ndarray, ds: Dataset, desc: PixelDescription
) -> tuple[numpy.ndarray, PixelDescription]:
    """LUTs held in the dataset: Palette Color (PS3.3 C.7.9) and Modality LUT
    Sequence (C.11.1); the result is what :func:`render_array` understands."""
    if desc.photometric_interpretation == "PALETTE COLOR":
        rgb = apply_color_lut(array, ds)
        bits = rgb.dtype.itemsize * 8
        return rgb, replace(desc, samples_per_pixel=3, photometric_interpretation="RGB",
                            bits_allocated=bits, bits_stored=bits)
    if desc.samples_per_pixel == 1 and "ModalityLUTSequence" in ds:
        values = apply_modality_lut(array, ds)
        return values, replace(desc, rescale_slope=1.0, rescale_intercept=0.0)
    return array, desc


def render_frame(source: Source, frame_number: int, options: RenderOptions) -> bytes:
    """Render frame ``frame_number`` (1-based) of a Part-10 file or stream."""
    array, ds = read_frame(source, frame_number - 1)
    desc = decoded_description(PixelDescription.from_dataset(ds, frame_index=frame_number - 1))
    array, desc = _dataset_luts(array, ds, desc)
    return render_array(array, desc, options)
