"""Write decoded/<name>.png for every JPEG input of the SDK's vectors: Pillow's decoding (stored orientation, RGB).

    .venv/bin/python ios_demo/MegrezCore/Tests/MegrezCoreTests/Fixtures/make_fixtures.py

The Swift tests run on Linux too, where no JPEG decoder is at hand, so they read these lossless copies and apply the
EXIF orientation from the original JPEG's bytes with the core's own reader. tests/test_ios_sources.py checks that
they are current (same pixels as Pillow's decoding of tests/vectors/front_end/inputs/*.jpg).
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[4]
INPUTS = REPO / "tests" / "vectors" / "front_end" / "inputs"
OUT = HERE / "decoded"


def jpeg_inputs() -> list[Path]:
    return sorted(p for p in INPUTS.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))


def decoded(jpeg: Path) -> Image.Image:
    """The stored pixels, as megrez_mobile's load_image decodes them before exif_transpose."""
    with Image.open(jpeg) as im:
        return im.convert("RGB")


def main() -> int:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    for jpeg in jpeg_inputs():
        decoded(jpeg).save(OUT / f"{jpeg.name}.png", optimize=True)
        print(f"wrote {OUT / (jpeg.name + '.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
