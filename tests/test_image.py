"""Image loading and MiniCPM-V 2.6 slicing (spec §4.3), checked against an independent transcription of upstream."""

from __future__ import annotations

import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from megrez_mobile.config import ImageProcessingConfig
from megrez_mobile.errors import ImageError
from megrez_mobile.processing.image import (SliceGrid, image_token_count, load_image, slice_image, slice_sizes,
                                            to_chw_uint8)

# ---------------------------------------------------------------------------------------------------------------
# Reference: literal transcription of MiniCPM-V 2.6 image_processing_minicpmv.py (MiniCPMVImageProcessor methods
# ensure_divide, find_best_resize, get_refine_size, split_to_patches, slice_image, get_sliced_grid), kept apart
# from the SDK on purpose. Only `self` bookkeeping is new.
# ---------------------------------------------------------------------------------------------------------------


class _RefMiniCPMV:
    def __init__(self, max_slice_nums=9, scale_resolution=448, patch_size=14):
        self.max_slice_nums = max_slice_nums
        self.scale_resolution = scale_resolution
        self.patch_size = patch_size

    def ensure_divide(self, length, patch_size):
        return max(round(length / patch_size) * patch_size, patch_size)

    def find_best_resize(self,
                         original_size,
                         scale_resolution,
                         patch_size,
                         allow_upscale=False):
        width, height = original_size
        if (width * height >
                scale_resolution * scale_resolution) or allow_upscale:
            r = width / height
            height = int(scale_resolution / math.sqrt(r))
            width = int(height * r)
        best_width = self.ensure_divide(width, patch_size)
        best_height = self.ensure_divide(height, patch_size)
        return (best_width, best_height)

    def get_refine_size(self,
                        original_size,
                        grid,
                        scale_resolution,
                        patch_size,
                        allow_upscale=False):
        width, height = original_size
        grid_x, grid_y = grid

        refine_width = self.ensure_divide(width, grid_x)
        refine_height = self.ensure_divide(height, grid_y)

        grid_width = refine_width / grid_x
        grid_height = refine_height / grid_y

        best_grid_size = self.find_best_resize((grid_width, grid_height),
                                               scale_resolution,
                                               patch_size,
                                               allow_upscale=allow_upscale)
        refine_size = (best_grid_size[0] * grid_x, best_grid_size[1] * grid_y)
        return refine_size

    def split_to_patches(self, image, grid):
        patches = []
        width, height = image.size
        grid_x = int(width / grid[0])
        grid_y = int(height / grid[1])
        for i in range(0, height, grid_y):
            images = []
            for j in range(0, width, grid_x):
                box = (j, i, j + grid_x, i + grid_y)
                patch = image.crop(box)
                images.append(patch)
            patches.append(images)
        return patches

    def slice_image(
        self, image, max_slice_nums=9, scale_resolution=448, patch_size=14, never_split=False
    ):
        original_size = image.size
        source_image = None
        best_grid = self.get_sliced_grid(original_size, max_slice_nums, never_split)
        patches = []

        if best_grid is None:
            # dont need to slice, upsample
            best_size = self.find_best_resize(
                original_size, scale_resolution, patch_size, allow_upscale=True
            )
            source_image = image.resize(best_size, resample=Image.Resampling.BICUBIC)
        else:
            # source image, down-sampling and ensure divided by patch_size
            best_resize = self.find_best_resize(original_size, scale_resolution, patch_size)
            source_image = image.copy().resize(best_resize, resample=Image.Resampling.BICUBIC)
            refine_size = self.get_refine_size(
                original_size, best_grid, scale_resolution, patch_size, allow_upscale=True
            )
            refine_image = image.resize(refine_size, resample=Image.Resampling.BICUBIC)
            patches = self.split_to_patches(refine_image, best_grid)

        return source_image, patches, best_grid

    def get_sliced_grid(self, image_size, max_slice_nums, nerver_split=False):
        original_width, original_height = image_size
        log_ratio = math.log(original_width / original_height)
        ratio = original_width * original_height / (self.scale_resolution * self.scale_resolution)
        multiple = min(math.ceil(ratio), max_slice_nums)
        if multiple <= 1 or nerver_split:
            return None
        candidate_split_grids_nums = []
        for i in [multiple - 1, multiple, multiple + 1]:
            if i == 1 or i > max_slice_nums:
                continue
            candidate_split_grids_nums.append(i)

        candidate_grids = []
        for split_grids_nums in candidate_split_grids_nums:
            m = 1
            while m <= split_grids_nums:
                if split_grids_nums % m == 0:
                    candidate_grids.append([m, split_grids_nums // m])
                m += 1

        best_grid = [1, 1]
        min_error = float("inf")
        for grid in candidate_grids:
            error = abs(log_ratio - math.log(grid[0] / grid[1]))
            if error < min_error:
                best_grid = grid
                min_error = error

        return best_grid


class _SizeOnly:
    """Stands in for a PIL image in the reference so that 8000×6000 geometry costs no pixels."""

    def __init__(self, size):
        self.size = tuple(size)

    def copy(self):
        return _SizeOnly(self.size)

    def resize(self, size, resample=None):
        return _SizeOnly(size)

    def crop(self, box):
        return _SizeOnly((box[2] - box[0], box[3] - box[1]))


def _reference_sizes(width, height, never_split=False):
    ref = _RefMiniCPMV()
    source, patches, grid = ref.slice_image(_SizeOnly((width, height)), 9, 448, 14, never_split)
    slices = [p.size for row in patches for p in row]  # row-major, as get_sliced_images flattens them
    return source.size, slices, (None if grid is None else tuple(grid))


# Upstream has no cap on a slice's side; ours (max_slice_side, what the exported vision program takes) only
# bites beyond 16:1. Parity with upstream is checked with the cap lifted.
UNCAPPED = ImageProcessingConfig(max_slice_side=14 * 2048)

# input → (grid (cols, rows) or None, source (w, h), slice (w, h) or None, image tokens)
SIZES = {
    (720, 1480): ((2, 3), (308, 644), (378, 518), 448),  # spec §4.3 worked example / data/sample_image.jpg
    (1, 1): (None, (448, 448), None, 64),
    (5, 3): (None, (574, 350), None, 64),
    (13, 13): (None, (448, 448), None, 64),
    (14, 14): (None, (448, 448), None, 64),
    (448, 448): (None, (448, 448), None, 64),
    (449, 449): ((1, 2), (448, 448), (630, 322), 192),  # tie log(1/2) vs log(2/1): first wins
    (896, 448): ((2, 1), (630, 322), (448, 448), 192),
    (1000, 700): ((2, 2), (532, 378), (532, 378), 320),
    (1920, 1080): ((4, 2), (602, 336), (420, 476), 576),
    (1080, 2400): ((2, 4), (294, 672), (420, 476), 576),
    (4000, 3000): ((3, 3), (518, 392), (518, 392), 640),
    (8000, 6000): ((3, 3), (518, 392), (518, 392), 640),
    (6000, 1000): ((8, 1), (1092, 182), (392, 518), 576),
    (10000, 20): (None, (9996, 14), None, 64),
    (20, 10000): (None, (14, 10024), None, 64),  # not the transpose of 10000×20: int() truncation
    (3000, 100): ((3, 1), (2436, 84), (1414, 140), 256),
    (100, 3000): ((1, 3), (84, 2450), (140, 1414), 256),  # ditto (2436 for 3000×100)
}


@pytest.mark.parametrize("size", list(SIZES), ids=[f"{w}x{h}" for w, h in SIZES])
def test_slice_sizes_match_reference_and_table(size):
    width, height = size
    source, slices, grid = slice_sizes(width, height, UNCAPPED)
    ref_source, ref_slices, ref_grid = _reference_sizes(width, height)
    assert source == ref_source
    assert slices == ref_slices
    assert (None if grid is None else (grid.cols, grid.rows)) == ref_grid

    want_grid, want_source, want_slice, want_tokens = SIZES[size]
    assert (None if grid is None else (grid.cols, grid.rows)) == want_grid
    assert source == want_source
    assert slices == ([] if want_slice is None else [want_slice] * (want_grid[0] * want_grid[1]))
    assert image_token_count(width, height, UNCAPPED) == want_tokens == (1 + len(slices)) * 64

    for w, h in [source, *slices]:
        assert w % 14 == 0 and h % 14 == 0 and w >= 14 and h >= 14
    assert len(slices) <= 9
    assert len(slices) == (0 if grid is None else grid.cols * grid.rows)


def test_slice_sizes_match_reference_on_a_sweep():
    # Many more shapes than the table, including near the ratio/rounding boundaries.
    rng = np.random.default_rng(0)
    sizes = [(int(w), int(h)) for w, h in rng.integers(1, 5000, size=(400, 2))]
    sizes += [(448 * k // d, 448 * d // k) for k in range(1, 10) for d in range(1, 10)]
    sizes += [(w, 448 * 448 // w) for w in range(100, 3000, 37)]
    for w, h in sizes:
        w, h = max(w, 1), max(h, 1)
        source, slices, grid = slice_sizes(w, h, UNCAPPED)
        assert (source, slices, None if grid is None else (grid.cols, grid.rows)) == _reference_sizes(w, h), (w, h)
        capped = slice_sizes(w, h)
        assert all(max(side) <= 1792 for side in [capped[0], *capped[1]]), (w, h)
        if max(w / h, h / w) <= 16:
            assert capped == (source, slices, grid), (w, h)  # the cap never changes an ordinary image


def test_elongated_images_are_scaled_to_the_exported_slice_bound():
    assert slice_sizes(10000, 20) == ((1792, 14), [], None)
    assert slice_sizes(20, 10000) == ((14, 1792), [], None)
    source, slices, grid = slice_sizes(6000, 100)
    assert max(source) == 1792 and all(max(s) <= 1792 for s in slices)
    assert image_token_count(10000, 20) == 64


# README "Images of extreme aspect ratio" (input -> official source size -> ours). The vision program takes sides up
# to 1792 px; what the official geometry makes longer keeps the official grid and token count, its longest side
# becomes 1792 and the other side official × 1792 / official longest, rounded to a multiple of 14 (at least 14).
CAPPED = {
    (2000, 100): ((2002, 98), (1792, 84)),    # 20:1, unsliced: 98 × 1792/2002 = 87.7 -> 84
    (100, 2000): ((98, 2002), (84, 1792)),
    (1, 17): ((112, 1848), (112, 1792)),      # 17:1: 112 × 1792/1848 = 108.6 -> 112
    (33, 2): ((1820, 112), (1792, 112)),      # 16.5:1 is already over
    (30, 1): ((2436, 84), (1792, 56)),        # 30:1: 84 × 1792/2436 = 61.8 -> 56
    (3000, 100): ((2436, 84), (1792, 56)),    # sliced 3×1: the slices (1414×140) are within the bound
    (10000, 20): ((9996, 14), (1792, 14)),    # never below one patch
}


@pytest.mark.parametrize("size", list(CAPPED), ids=[f"{w}x{h}" for w, h in CAPPED])
def test_images_beyond_the_slice_bound_get_exactly_the_documented_size(size):
    official_source, ours = CAPPED[size]
    source, slices, grid = slice_sizes(*size, UNCAPPED)
    assert source == official_source
    assert slice_sizes(*size) == (ours, slices, grid)  # same grid, same slices
    assert image_token_count(*size) == image_token_count(*size, UNCAPPED)


def test_the_slice_bound_rule_holds_for_every_shape():
    """Up to 16:1 every image gets the official geometry; beyond, every source/slice follows the rule above."""
    cap = ImageProcessingConfig().max_slice_side
    assert cap == 1792
    rng = np.random.default_rng(1)
    ratios = np.exp(rng.uniform(0, np.log(60), 600))
    sizes = [(max(1, int(w)), max(1, int(w / r))) for w, r in zip(rng.integers(1, 12000, 600), ratios)]
    sizes += [(w, h) for w in range(1, 40) for h in range(1, 3)] + [(16 * k, k) for k in range(1, 200)]
    for w, h in sizes + [(h, w) for w, h in sizes]:
        off_source, off_slices, off_grid = slice_sizes(w, h, UNCAPPED)
        source, slices, grid = slice_sizes(w, h)
        assert grid == off_grid and len(slices) == len(off_slices), (w, h)
        for got, want in zip([source, *slices], [off_source, *off_slices]):
            if max(want) <= cap:
                assert got == want, (w, h)
            else:
                long_side, short_side = max(want), min(want)
                short = max(14, round(short_side * cap / long_side / 14) * 14)
                assert got == ((cap, short) if want[0] >= want[1] else (short, cap)), (w, h, want, got)
        if max(w / h, h / w) <= 16:
            assert (source, slices) == (off_source, off_slices), (w, h)


def test_slice_mode_off_never_slices():
    config = ImageProcessingConfig(slice_mode=False)
    source, slices, grid = slice_sizes(720, 1480, config)
    # Same as upstream's never_split path: the whole image at ~448² area.
    assert (source, slices, grid) == ((308, 644), [], None)
    assert _reference_sizes(720, 1480, never_split=True) == ((308, 644), [], None)
    assert image_token_count(8000, 6000, config) == 64
    img = Image.new("RGB", (900, 900), (10, 20, 30))
    src, crops, grid = slice_image(img, config)
    assert src.size == (448, 448) and crops == [] and grid is None


def test_custom_config_changes_geometry():
    config = ImageProcessingConfig(max_slice_nums=4, image_feature_size=32)
    source, slices, grid = slice_sizes(4000, 3000, config)
    assert grid == SliceGrid(2, 2) and len(slices) == 4
    assert image_token_count(4000, 3000, config) == 5 * 32


def test_sample_image_worked_example(shared_data: Path):
    img = load_image(shared_data / "sample_image.jpg")
    assert img.size == (720, 1480) and img.mode == "RGB"
    source, slices, grid = slice_image(img)
    assert grid == SliceGrid(cols=2, rows=3)
    assert source.size == (308, 644)
    assert [s.size for s in slices] == [(378, 518)] * 6
    assert image_token_count(*img.size) == 448
    # tgt sizes in patches (height, width), spec §4.3: source 46×22, slices 37×27.
    assert (source.size[1] // 14, source.size[0] // 14) == (46, 22)
    assert (slices[0].size[1] // 14, slices[0].size[0] // 14) == (37, 27)


def _gradient(width: int, height: int) -> Image.Image:
    y, x = np.mgrid[0:height, 0:width]
    arr = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x * 7 + y * 13) % 256], axis=-1)
    return Image.fromarray(arr.astype(np.uint8))


@pytest.mark.parametrize("size", [(1000, 700), (720, 1480), (300, 200)])
def test_slice_pixels_are_row_major_crops_of_refined_resize(size):
    img = _gradient(*size)
    source, slices, grid = slice_image(img)
    ref = _RefMiniCPMV()

    want_source = ref.find_best_resize(size, 448, 14, allow_upscale=grid is None)
    np.testing.assert_array_equal(np.asarray(source),
                                  np.asarray(img.resize(want_source, resample=Image.Resampling.BICUBIC)))
    if grid is None:
        assert slices == []
        return
    ref_grid = ref.get_sliced_grid(size, 9)
    assert [grid.cols, grid.rows] == ref_grid
    refine = ref.get_refine_size(size, ref_grid, 448, 14, allow_upscale=True)
    refined = np.asarray(img.resize(refine, resample=Image.Resampling.BICUBIC))
    cell_h, cell_w = refined.shape[0] // grid.rows, refined.shape[1] // grid.cols
    want = [refined[r * cell_h:(r + 1) * cell_h, c * cell_w:(c + 1) * cell_w]
            for r in range(grid.rows) for c in range(grid.cols)]
    assert len(slices) == len(want)
    for got, exp in zip(slices, want):
        np.testing.assert_array_equal(np.asarray(got), exp)

    # And against the transcribed upstream slice_image on real pixels.
    ref_source, ref_patches, _ = ref.slice_image(img, 9, 448, 14)
    np.testing.assert_array_equal(np.asarray(source), np.asarray(ref_source))
    for got, exp in zip(slices, [p for row in ref_patches for p in row]):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(exp))


# ---------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------


def test_exif_orientation_is_applied(tmp_path: Path):
    stored = np.zeros((20, 40, 3), np.uint8)  # stored 40 wide, 20 high
    stored[:8, :8] = (255, 0, 0)  # red marker at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, "JPEG", quality=95, exif=exif)

    img = load_image(path)
    assert img.size == (20, 40)  # width/height swapped
    arr = np.asarray(img).astype(int)
    # Rotating 90° clockwise moves the top-left corner to the top-right.
    assert arr[4, 16, 0] > 200 and arr[4, 16, 1] < 60
    assert arr[4, 3, 0] < 60
    assert arr[35, 16, 0] < 60


def test_path_bytes_and_pil_inputs_agree(shared_data: Path):
    path = shared_data / "sample_image.jpg"
    a = np.asarray(load_image(path))
    b = np.asarray(load_image(str(path)))
    c = np.asarray(load_image(path.read_bytes()))
    with Image.open(path) as im:
        d = np.asarray(load_image(im))
    assert a.shape == (1480, 720, 3)
    for other in (b, c, d):
        np.testing.assert_array_equal(a, other)


def _roundtrip(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_modes_come_out_rgb():
    rgba = Image.new("RGBA", (7, 5), (10, 20, 30, 0))
    palette = Image.new("RGB", (7, 5), (200, 100, 50)).convert("P", palette=Image.Palette.ADAPTIVE)
    grey = Image.new("L", (7, 5), 77)
    for src in (rgba, palette, grey):
        for given in (src, _roundtrip(src)):
            out = load_image(given)
            assert out.mode == "RGB" and out.size == (7, 5)
    # Alpha is dropped without compositing, as the official processor's convert("RGB") does.
    assert np.asarray(load_image(rgba))[0, 0].tolist() == [10, 20, 30]
    assert np.asarray(load_image(palette))[0, 0].tolist() == [200, 100, 50]
    assert np.asarray(load_image(grey))[0, 0].tolist() == [77, 77, 77]

    # 16-bit greyscale: mapped onto 0..255 rather than clipped at 255.
    values = np.array([[0, 257, 32896, 65535]], dtype="<u2")
    sixteen = Image.frombytes("I;16", (4, 1), values.tobytes())
    for given in (sixteen, _roundtrip(sixteen)):
        out = load_image(given)
        assert out.mode == "RGB"
        assert np.asarray(out)[0, :, 0].tolist() == [0, 1, 128, 255]


def test_multi_frame_gif_uses_first_frame():
    frames = [Image.new("RGB", (6, 4), (255, 0, 0)), Image.new("RGB", (6, 4), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    out = np.asarray(load_image(buf.getvalue()))
    assert out.shape == (4, 6, 3)
    assert out[0, 0].tolist() == [255, 0, 0]


def test_to_chw_uint8():
    arr = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3)
    t = to_chw_uint8(Image.fromarray(arr))
    assert t.shape == (3, 4, 5) and t.dtype == torch.uint8 and t.is_contiguous()
    assert torch.equal(t, torch.from_numpy(arr).permute(2, 0, 1))
    assert t[1, 2, 3].item() == arr[2, 3, 1]
    assert to_chw_uint8(Image.new("L", (3, 2), 9)).shape == (3, 2, 3)


# --- bad input ---------------------------------------------------------------------------------------------------


def _png_declaring(width: int, height: int) -> bytes:
    """A 1×1 PNG whose IHDR claims width×height (CRC fixed): tiny on disk, huge if anyone decoded it."""
    data = bytearray(_roundtrip(Image.new("RGB", (1, 1))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_missing_path(tmp_path: Path):
    missing = tmp_path / "nope.jpg"
    with pytest.raises(ImageError, match="nope.jpg: no such file"):
        load_image(missing)


def test_text_file_named_jpg(tmp_path: Path):
    path = tmp_path / "notes.jpg"
    path.write_text("this is not a picture\n")
    with pytest.raises(ImageError, match=r"notes\.jpg is not an image"):
        load_image(path)
    with pytest.raises(ImageError, match="image bytes is not an image"):
        load_image(path.read_bytes())


def test_truncated_jpeg(shared_data: Path, tmp_path: Path):
    data = (shared_data / "sample_image.jpg").read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # nothing (SDK included) may have switched truncation off
    with pytest.raises(ImageError, match=r"half\.jpg is truncated"):
        load_image(path)
    with pytest.raises(ImageError, match="image bytes is truncated"):
        load_image(data[: len(data) // 2])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_zero_byte_file(tmp_path: Path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty\.png is empty"):
        load_image(path)
    with pytest.raises(ImageError, match="image bytes are empty"):
        load_image(b"")


def test_zero_sized_pil_image():
    with pytest.raises(ImageError, match="no pixels"):
        load_image(Image.new("RGB", (0, 5)))
    with pytest.raises(ImageError, match="no pixels"):
        slice_sizes(0, 5)


def test_decompression_bomb_refused_before_decoding(tmp_path: Path):
    max_before = Image.MAX_IMAGE_PIXELS
    # 20000×20000 = 400 MP: Pillow's own guard fires while reading the header; we report it as an ImageError.
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_declaring(20000, 20000))
    assert bomb.stat().st_size < 100
    with pytest.raises(ImageError, match=r"bomb\.png: refusing to decode a possible decompression bomb"):
        load_image(bomb)
    # 9000×9000 = 81 MP: under Pillow's hard limit, over our 64 MP default: our header check must refuse it
    # (if it decoded, it would report truncation instead, since the file holds one pixel).
    with pytest.raises(ImageError, match=r"9000×9000 = 81,000,000 pixels > limit 64,000,000.*max_pixels"):
        load_image(_png_declaring(9000, 9000))
    assert Image.MAX_IMAGE_PIXELS == max_before  # the global limit is left alone


def test_custom_max_pixels():
    small = ImageProcessingConfig(max_pixels=1000)
    img = Image.new("RGB", (100, 100))
    with pytest.raises(ImageError, match=r"100×100 = 10,000 pixels > limit 1,000"):
        load_image(img, small)
    with pytest.raises(ImageError, match="image bytes: refusing"):
        load_image(_roundtrip(img), small)
    assert load_image(Image.new("RGB", (10, 100)), small).size == (10, 100)


def test_unsupported_input_type():
    with pytest.raises(ImageError, match="unsupported image input of type int"):
        load_image(42)  # type: ignore[arg-type]


def test_max_slice_patches_bounds_every_slice_the_slicer_makes():
    """The exported vision program is memory-planned for max_slice_patches (not max_slice_side², 15× more): no
    source or slice of any image may exceed it, and none has fewer than the program's 2."""
    from megrez_mobile.processing.image import max_slice_patches

    config = ImageProcessingConfig()
    most = max_slice_patches(config)
    # 448² / 14² = 1024 before rounding; each side rounds to the nearest patch, so a long thin slice gets a bit more.
    assert most == 1080
    rng = np.random.default_rng(7)
    ratios = np.exp(rng.uniform(-np.log(80), np.log(80), 3000))
    sizes = [(max(1, int(w)), max(1, int(w / r))) for w, r in zip(rng.integers(1, 16000, 3000), ratios)]
    sizes += [(w, h) for w in range(1, 700, 3) for h in range(1, 700, 7)]
    seen = []
    for w, h in sizes:
        source, slices, _ = slice_sizes(w, h, config)
        seen += [(a // 14) * (b // 14) for a, b in [source, *slices]]
    assert 2 <= min(seen) and max(seen) <= most, (min(seen), max(seen))
    assert max(seen) > 1024  # the rounding excess is real, so the bound is not just the area
    assert max_slice_patches(ImageProcessingConfig(scale_resolution=56)) < most  # it follows the config
