"""Image decoding and MiniCPM-V 2.6 "LLaVA-UHD" slicing (spec §4.3), host side.

The geometry (`slice_sizes`) is pure integer/float arithmetic on (width, height) so callers can count image
tokens and the exporter can bound slice shapes without touching pixels; `slice_image` applies it with the same
Pillow calls as the official processor (bicubic `Image.resize`, row-major crops) so pixels match bit for bit.
Normalisation ((x - 127.5) / 127.5, spec §4.2) happens inside the exported graph, so slices leave here as uint8.
"""

from __future__ import annotations

import functools
import io
import math
import operator
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..config import ImageProcessingConfig
from ..errors import ImageError

ImageInput = Union[str, os.PathLike, bytes, Image.Image]

__all__ = [
    "ImageInput",
    "SliceGrid",
    "image_token_count",
    "load_image",
    "slice_image",
    "slice_sizes",
    "to_chw_uint8",
]

_DEFAULT = ImageProcessingConfig()
# Greyscale 16-bit modes; Pillow's convert("RGB") clips them at 255 (an almost white picture), so they are rescaled.
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


def load_image(image: ImageInput, config: ImageProcessingConfig = _DEFAULT) -> Image.Image:
    """Decode `image` (a path, the bytes of an image file, or a PIL image) into a fully loaded RGB image.

    EXIF orientation is applied; multi-frame files (GIF, TIFF) give their first frame. The pixel count is checked
    against `config.max_pixels` from the header, before any pixel data is decoded. Every failure is an ImageError
    that names the input and says what to do.
    """
    if isinstance(image, Image.Image):
        # A multi-frame PIL image is used at the frame the caller left it on.
        return _decode(image, "the PIL image", config)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        if not data:
            raise ImageError("image bytes are empty (0 bytes): pass the whole content of an image file")
        return _open_and_decode(io.BytesIO(data), "image bytes", config)
    if isinstance(image, (str, os.PathLike)):
        path = Path(image)
        if not path.exists():
            raise ImageError(f"{path}: no such file; check the path (relative paths start at {Path.cwd()})")
        if not path.is_file():
            raise ImageError(f"{path} is not a file; pass the path of an image file")
        if path.stat().st_size == 0:
            raise ImageError(f"{path} is empty (0 bytes); the download or copy probably failed, fetch it again")
        try:
            with open(path, "rb") as fp:
                return _open_and_decode(fp, str(path), config)
        except PermissionError as e:
            raise ImageError(f"{path} cannot be read ({e}); check its permissions") from e
    raise ImageError(f"unsupported image input of type {type(image).__name__}; "
                     "pass a path, the bytes of an image file, or a PIL.Image.Image")


def _open_and_decode(fp: BinaryIO, culprit: str, config: ImageProcessingConfig) -> Image.Image:
    with warnings.catch_warnings():
        # Our own max_pixels check (in _decode, before decoding) is the authority; Pillow's warning would only
        # duplicate it, or contradict a limit the user raised on purpose. Scoped here: the global filter is untouched.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(fp)
        except Image.DecompressionBombError as e:
            # Pillow refuses by itself above 2 * Image.MAX_IMAGE_PIXELS, already while reading the header.
            raise ImageError(f"{culprit}: refusing to decode a possible decompression bomb ({e}); downscale it "
                             "first (Pillow's own limit, which ImageProcessingConfig.max_pixels cannot lift)") from e
        except UnidentifiedImageError as e:
            raise ImageError(f"{culprit} is not an image Pillow can read (unknown or corrupt format); "
                             "pass a JPEG, PNG, WebP, GIF, BMP or TIFF file") from e
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{culprit}: the image header is corrupt ({e}); re-export or re-download it") from e
        with im:  # Image.open starts at the first frame of a GIF/TIFF, which is the one used.
            return _decode(im, culprit, config)


def _decode(im: Image.Image, culprit: str, config: ImageProcessingConfig) -> Image.Image:
    width, height = im.size
    if width <= 0 or height <= 0:
        raise ImageError(f"{culprit} has no pixels ({width}×{height}); pass a non-empty image")
    if width * height > config.max_pixels:
        raise ImageError(f"{culprit}: refusing to decode a possible decompression bomb: {width}×{height} = "
                         f"{width * height:,} pixels > limit {config.max_pixels:,}; downscale it first or raise "
                         "ImageProcessingConfig.max_pixels")
    try:
        # Decode everything now, so a truncated file fails here with its name, not deep inside slicing.
        # (ImageFile.LOAD_TRUNCATED_IMAGES is never set by this SDK: truncation must be an error, not grey pixels.)
        im.load()
    except (OSError, EOFError, SyntaxError, ValueError) as e:
        raise ImageError(f"{culprit} is truncated or corrupt ({e}); re-download or re-export it") from e
    try:
        oriented = ImageOps.exif_transpose(im)
    except Exception as e:  # noqa: BLE001 - malformed EXIF comes in many shapes; the pixels are still good
        warnings.warn(f"{culprit}: unreadable EXIF orientation ({e}); using the pixels as stored", stacklevel=3)
        oriented = im
    if oriented.mode in _SIXTEEN_BIT_MODES:
        # Map 0..65535 onto 0..255 (65535 / 257 = 255) instead of clipping at 255.
        grey = np.asarray(oriented).astype(np.float32) / 257.0
        oriented = Image.fromarray(np.rint(grey).astype(np.uint8))
    # Plain convert, as MiniCPM-V does: palette/LA/RGBA lose alpha without compositing, exactly like the official path.
    rgb = oriented.convert("RGB")
    rgb.load()
    return rgb


# ---------------------------------------------------------------------------------------------------------------
# Slicing geometry (MiniCPM-V 2.6 image_processing_minicpmv.py; same float operations, so the same rounding)
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SliceGrid:
    cols: int
    rows: int

    @property
    def count(self) -> int:
        return self.cols * self.rows


def _ensure_divide(length: float, divisor: int) -> int:
    # Python's round (half to even), as upstream: 2.5 -> 2. Never below one divisor.
    return max(round(length / divisor) * divisor, divisor)


def _find_best_resize(size: tuple[float, float], config: ImageProcessingConfig,
                      allow_upscale: bool) -> tuple[int, int]:
    width, height = size
    s = config.scale_resolution
    if width * height > s * s or allow_upscale:
        # Same area as scale_resolution², same aspect ratio; int() truncates as upstream does.
        r = width / height
        height = int(s / math.sqrt(r))
        width = int(height * r)
    official = _ensure_divide(width, config.patch_size), _ensure_divide(height, config.patch_size)
    return cap_slice_size(official, config)


def cap_slice_size(size: tuple[int, int], config: ImageProcessingConfig = _DEFAULT) -> tuple[int, int]:
    """The deliberate deviation from the official geometry (README, "Images of extreme aspect ratio"): a source
    image or slice whose official size has a side longer than `max_slice_side` (the longest side the exported
    vision program takes; reached only by images more elongated than 16:1) gets that side = max_slice_side, and
    the other side official × max_slice_side / official longest, rounded to a multiple of patch_size (half to even,
    at least one patch). Every other size is returned unchanged. The grid and the token count never change."""
    width, height = size
    longest = max(width, height)
    if longest <= config.max_slice_side:
        return size
    scale = config.max_slice_side / longest
    return _ensure_divide(width * scale, config.patch_size), _ensure_divide(height * scale, config.patch_size)


@functools.lru_cache(maxsize=8)
def max_slice_patches(config: ImageProcessingConfig = _DEFAULT) -> int:
    """The most patches any source image or slice from `slice_sizes` can have (1,080 by default): what the
    exported vision program is memory-planned for. Its two sides are bounded one by one (max_slice_side), which
    alone would allow max_slice_side² / patch² = 16,384 patches and plan every [patches, D] tensor 15× too big.

    Every size `_find_best_resize` rounds is a pair of integers (w, h) with w·h <= scale_resolution² (int()
    truncation keeps the area under it), so the largest count is over those pairs; for each w, the largest such h
    gives the most patches (rounding and the cap are monotone in h). 0.2 s for the default config, cached."""
    area, patch = config.scale_resolution ** 2, config.patch_size
    most = 1
    for width in range(1, area + 1):
        w, h = cap_slice_size((_ensure_divide(width, patch), _ensure_divide(area // width, patch)), config)
        most = max(most, (w // patch) * (h // patch))
    return most


def _sliced_grid(width: int, height: int, max_slice_nums: int, scale_resolution: int) -> SliceGrid | None:
    log_ratio = math.log(width / height)
    ratio = width * height / (scale_resolution * scale_resolution)
    multiple = min(math.ceil(ratio), max_slice_nums)
    if multiple <= 1:
        return None
    counts = [c for c in (multiple - 1, multiple, multiple + 1) if c != 1 and c <= max_slice_nums]
    best, min_error = None, float("inf")
    # Counts ascending, columns ascending; strict "<" keeps the first minimum (upstream tie-break).
    for count in counts:
        for cols in range(1, count + 1):
            if count % cols:
                continue
            error = abs(log_ratio - math.log(cols / (count // cols)))
            if error < min_error:
                best, min_error = SliceGrid(cols, count // cols), error
    return best


def slice_sizes(width: int, height: int, config: ImageProcessingConfig = _DEFAULT
                ) -> tuple[tuple[int, int], list[tuple[int, int]], SliceGrid | None]:
    """(w, h) of the source image and of each slice (row-major) for a width×height input, and the grid.

    The grid is None when the image is not sliced (small image, or config.slice_mode False). Every side is a
    multiple of config.patch_size.
    """
    try:
        width, height = operator.index(width), operator.index(height)
    except TypeError:
        raise ImageError(f"image size {width!r}×{height!r} is not an integer size") from None
    if width < 1 or height < 1:
        raise ImageError(f"image size {width}×{height} has no pixels; pass a non-empty image")
    s = config.scale_resolution
    # slice_mode False = upstream's never_split: the upscaled whole image alone (upstream would pass the raw image,
    # whose sides need not be multiples of the patch size, which the vision program cannot take).
    grid = _sliced_grid(width, height, config.max_slice_nums, s) if config.slice_mode else None
    if grid is None:
        return _find_best_resize((width, height), config, allow_upscale=True), [], None
    source = _find_best_resize((width, height), config, allow_upscale=False)
    # Refined image = one best-size cell × grid, so all crops have the same size.
    cell_w = _ensure_divide(width, grid.cols) / grid.cols
    cell_h = _ensure_divide(height, grid.rows) / grid.rows
    cell = _find_best_resize((cell_w, cell_h), config, allow_upscale=True)
    return source, [cell] * grid.count, grid


def slice_image(image: Image.Image, config: ImageProcessingConfig = _DEFAULT
                ) -> tuple[Image.Image, list[Image.Image], SliceGrid | None]:
    """Split an RGB image (from load_image) into (source thumbnail, slices row-major, grid or None)."""
    source_size, slices, grid = slice_sizes(*image.size, config=config)
    source = image.resize(source_size, resample=Image.Resampling.BICUBIC)
    if grid is None:
        return source, [], None
    cell_w, cell_h = slices[0]
    refined = image.resize((cell_w * grid.cols, cell_h * grid.rows), resample=Image.Resampling.BICUBIC)
    crops = [refined.crop((c * cell_w, r * cell_h, (c + 1) * cell_w, (r + 1) * cell_h))
             for r in range(grid.rows) for c in range(grid.cols)]
    return source, crops, grid


def image_token_count(width: int, height: int, config: ImageProcessingConfig = _DEFAULT) -> int:
    """LLM positions holding image features for a width×height image: (1 + slices) × image_feature_size."""
    _, slices, _ = slice_sizes(width, height, config)
    return (1 + len(slices)) * config.image_feature_size


def to_chw_uint8(image: Image.Image) -> torch.Tensor:
    """Contiguous uint8 [3, H, W], the vision program's input (it normalises in-graph)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).contiguous()
