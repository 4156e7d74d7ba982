package dev.megrezmobile.core

/** An image that cannot be used, in words (megrez_mobile/processing/image.py's ImageError). */
class ImageInputError(message: String) : IllegalArgumentException(message)

/** The source thumbnail and the grid slices of one image, each ready for one `prefillImages` call. */
class SlicedImage(val layout: SliceLayout, val source: RgbImage, val slices: List<RgbImage>)

/** megrez_mobile/processing/image.py `slice_image`: the same geometry, Pillow's bicubic, row-major crops. */
object ImagePrep {
    /** Refuse before decoding (the decoder's bounds-only pass gives the size): decompression bombs. */
    fun checkSize(width: Int, height: Int, cfg: ImageConfig = ImageConfig()) {
        if (width <= 0 || height <= 0) throw ImageInputError("the image has no pixels (${width}x$height)")
        if (width.toLong() * height > cfg.maxPixels) throw ImageInputError("the image is ${width}x$height = " +
            "${width.toLong() * height} pixels, more than the ${cfg.maxPixels} limit; downscale it first")
    }

    /** `oriented`: decoded RGB with the EXIF orientation already applied (ExifOrientation.apply). */
    fun slice(oriented: RgbImage, cfg: ImageConfig = ImageConfig()): SlicedImage {
        val layout = SliceGeometry.layout(oriented.width, oriented.height, cfg)
        val source = PillowBicubic.resize(oriented, layout.source.width, layout.source.height)
        val grid = layout.grid ?: return SlicedImage(layout, source, emptyList())
        val cell = layout.slice!!
        val refined = PillowBicubic.resize(oriented, cell.width * grid.cols, cell.height * grid.rows)
        val slices = ArrayList<RgbImage>(grid.count)
        for (r in 0 until grid.rows) for (c in 0 until grid.cols) {
            slices += refined.crop(c * cell.width, r * cell.height, cell.width, cell.height)
        }
        return SlicedImage(layout, source, slices)
    }
}
