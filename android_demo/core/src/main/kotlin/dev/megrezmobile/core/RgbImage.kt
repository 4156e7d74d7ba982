package dev.megrezmobile.core

/** 8-bit RGB pixels, row-major interleaved (HWC), the form every decoder can give us. */
class RgbImage(val width: Int, val height: Int, val pixels: ByteArray = ByteArray(width * height * 3)) {
    init {
        require(width >= 1 && height >= 1) { "image ${width}x$height has no pixels" }
        require(pixels.size == width * height * 3) { "expected ${width * height * 3} bytes for ${width}x$height RGB" }
    }

    fun get(x: Int, y: Int, c: Int): Int = pixels[(y * width + x) * 3 + c].toInt() and 0xff

    fun crop(left: Int, top: Int, w: Int, h: Int): RgbImage {
        require(left >= 0 && top >= 0 && left + w <= width && top + h <= height) { "crop outside the image" }
        val out = ByteArray(w * h * 3)
        for (y in 0 until h) System.arraycopy(pixels, ((top + y) * width + left) * 3, out, y * w * 3, w * 3)
        return RgbImage(w, h, out)
    }

    /** Planar uint8 [3, H, W]: what `LlmModule.prefillImages` and the vision encoder take. */
    fun toChw(): ByteArray {
        val plane = width * height
        val out = ByteArray(3 * plane)
        for (i in 0 until plane) {
            out[i] = pixels[i * 3]
            out[plane + i] = pixels[i * 3 + 1]
            out[2 * plane + i] = pixels[i * 3 + 2]
        }
        return out
    }

    companion object {
        /** From packed ARGB ints (Android Bitmap.getPixels, java.awt BufferedImage.getRGB): alpha dropped, as Pillow's
         *  convert("RGB") does (no compositing). */
        fun fromArgb(width: Int, height: Int, argb: IntArray): RgbImage {
            val out = ByteArray(width * height * 3)
            for (i in 0 until width * height) {
                val p = argb[i]
                out[i * 3] = (p shr 16).toByte(); out[i * 3 + 1] = (p shr 8).toByte(); out[i * 3 + 2] = p.toByte()
            }
            return RgbImage(width, height, out)
        }
    }
}
