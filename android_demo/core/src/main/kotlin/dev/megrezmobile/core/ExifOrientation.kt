package dev.megrezmobile.core

/**
 * EXIF orientation: read the tag from a JPEG's APP1 segment and apply it to decoded pixels, as Pillow's
 * `ImageOps.exif_transpose` does in megrez_mobile/processing/image.py `load_image`. Camera photos are stored
 * sideways with orientation 6 or 8; ignoring it (as ExecuTorch's sample app does) feeds the model a rotated picture.
 */
object ExifOrientation {
    /** The orientation (1..8) of a JPEG file's first EXIF block; 1 when there is none or it is unreadable. */
    fun readJpeg(bytes: ByteArray): Int = try { parseJpeg(bytes) } catch (e: IndexOutOfBoundsException) { 1 }

    private fun u16be(b: ByteArray, i: Int) = ((b[i].toInt() and 0xff) shl 8) or (b[i + 1].toInt() and 0xff)

    private fun parseJpeg(b: ByteArray): Int {
        if (b.size < 4 || u16be(b, 0) != 0xFFD8) return 1
        var i = 2
        while (i + 4 <= b.size) {
            if (b[i].toInt() and 0xff != 0xFF) return 1
            val marker = b[i + 1].toInt() and 0xff
            if (marker == 0xFF) { i++; continue }  // fill byte
            if (marker == 0xDA || marker == 0xD9) return 1  // image data starts: no EXIF before it
            val length = u16be(b, i + 2)
            if (marker == 0xE1 && length >= 8 && String(b, i + 4, 6, Charsets.ISO_8859_1) == "Exif\u0000\u0000") {
                return tiffOrientation(b, i + 10, i + 2 + length)
            }
            i += 2 + length
        }
        return 1
    }

    private fun tiffOrientation(b: ByteArray, start: Int, end: Int): Int {
        val little = when (String(b, start, 2, Charsets.ISO_8859_1)) { "II" -> true; "MM" -> false; else -> return 1 }
        fun u16(o: Int): Int {
            // A hostile IFD offset may point anywhere (even overflow Int): out of the block reads as "no EXIF".
            if (o < 0 || start.toLong() + o + 2 > end) throw IndexOutOfBoundsException("EXIF offset $o")
            val i = start + o
            return if (little) (b[i].toInt() and 0xff) or ((b[i + 1].toInt() and 0xff) shl 8) else u16be(b, i) }
        fun u32(o: Int): Long = if (little) u16(o).toLong() or (u16(o + 2).toLong() shl 16)
            else (u16(o).toLong() shl 16) or u16(o + 2).toLong()
        if (u16(2) != 42) return 1
        val ifd = u32(4).toInt()
        val count = u16(ifd)
        for (n in 0 until count) {
            val entry = ifd + 2 + n * 12
            if (u16(entry) == 0x0112) {  // Orientation, SHORT
                val v = u16(entry + 8)
                return if (v in 1..8) v else 1
            }
        }
        return 1
    }

    /** `image` as it should be displayed for `orientation` (Pillow's transposes: 2 mirror ... 8 rotate 90 CCW). */
    fun apply(image: RgbImage, orientation: Int): RgbImage {
        if (orientation !in 2..8) return image
        val w = image.width
        val h = image.height
        val swap = orientation >= 5
        val ow = if (swap) h else w
        val oh = if (swap) w else h
        val out = ByteArray(ow * oh * 3)
        for (y in 0 until oh) for (x in 0 until ow) {
            // Source pixel for output (x, y).
            val (sx, sy) = when (orientation) {
                2 -> Pair(w - 1 - x, y)              // FLIP_LEFT_RIGHT
                3 -> Pair(w - 1 - x, h - 1 - y)      // ROTATE_180
                4 -> Pair(x, h - 1 - y)              // FLIP_TOP_BOTTOM
                5 -> Pair(y, x)                      // TRANSPOSE
                6 -> Pair(y, h - 1 - x)              // ROTATE_270 (90 degrees clockwise)
                7 -> Pair(w - 1 - y, h - 1 - x)      // TRANSVERSE
                else -> Pair(w - 1 - y, x)           // 8: ROTATE_90 (counter-clockwise)
            }
            System.arraycopy(image.pixels, (sy * w + sx) * 3, out, (y * ow + x) * 3, 3)
        }
        return RgbImage(ow, oh, out)
    }
}
