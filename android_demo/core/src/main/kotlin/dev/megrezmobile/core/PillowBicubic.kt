package dev.megrezmobile.core

import kotlin.math.ceil

/**
 * Resize exactly as Pillow 13's `Image.resize(size, Image.BICUBIC)` does for 8-bit RGB (libImaging/Resample.c):
 * separable, two passes (horizontal first unless the height shrinks much more than the width); the kernel (a = -0.5) widened by the downscale factor; each output
 * pixel's weights normalised to sum 1, then turned into 22-bit fixed point; accumulation in 32-bit ints from
 * a rounding bias of 1/2, clipped to 0..255 after each pass. Same operations, same order: same bytes.
 */
object PillowBicubic {
    private const val PRECISION_BITS = 32 - 8 - 2

    private fun bicubic(x0: Double): Double {
        val a = -0.5
        val x = if (x0 < 0.0) -x0 else x0
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a
        return 0.0
    }

    /** Per output pixel: first input index, tap count, and `ksize` fixed-point weights. */
    private class Coeffs(val ksize: Int, val bounds: IntArray, val weights: IntArray)

    private fun coeffs(inSize: Int, outSize: Int): Coeffs {
        val support0 = 2.0  // bicubic
        val scale = inSize.toDouble() / outSize
        val filterScale = if (scale < 1.0) 1.0 else scale
        val support = support0 * filterScale
        val ksize = ceil(support).toInt() * 2 + 1
        val bounds = IntArray(outSize * 2)
        val weights = IntArray(outSize * ksize)
        val k = DoubleArray(ksize)
        for (xx in 0 until outSize) {
            val center = (xx + 0.5) * scale
            var ww = 0.0
            val ss = 1.0 / filterScale
            var xmin = (center - support + 0.5).toInt()  // C (int) truncates toward zero
            if (xmin < 0) xmin = 0
            var xmax = (center + support + 0.5).toInt()
            if (xmax > inSize) xmax = inSize
            xmax -= xmin
            java.util.Arrays.fill(k, 0.0)
            for (x in 0 until xmax) {
                val w = bicubic((x + xmin - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for (x in 0 until xmax) if (ww != 0.0) k[x] /= ww
            for (x in 0 until ksize) {
                val v = k[x] * (1 shl PRECISION_BITS)
                weights[xx * ksize + x] = if (k[x] < 0) (-0.5 + v).toInt() else (0.5 + v).toInt()
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        return Coeffs(ksize, bounds, weights)
    }

    private fun clip8(v: Int): Byte = when {
        v >= (1 shl PRECISION_BITS shl 8) -> 255.toByte()
        v <= 0 -> 0
        else -> (v shr PRECISION_BITS).toByte()
    }

    fun resize(src: RgbImage, width: Int, height: Int): RgbImage {
        require(width >= 1 && height >= 1) { "target size ${width}x$height has no pixels" }
        if (width == src.width && height == src.height) return RgbImage(width, height, src.pixels.copyOf())
        val needH = width != src.width
        val needV = height != src.height
        // Pillow 13: when the height shrinks by more than twice what the width shrinks, the vertical pass runs first
        // (the two orders round differently between the passes; older Pillow always went horizontal first).
        val dy = src.height - height
        val horizontalFirst = !(dy > 0 && dy > (src.width - width) * 2)
        val h = coeffs(src.width, width)
        val v = coeffs(src.height, height)
        if (!horizontalFirst) {
            val tall = if (needV) vertical(src, height, v) else src
            return if (needH) horizontal(tall, width, 0, height, h) else tall
        }
        var img = src
        var vBounds = v.bounds
        if (needH) {
            // Only the rows the vertical pass reads are resampled horizontally (as Pillow does).
            val first = v.bounds[0]
            val last = v.bounds[height * 2 - 2] + v.bounds[height * 2 - 1]
            vBounds = v.bounds.copyOf().also { b -> for (i in 0 until height) b[i * 2] -= first }
            img = horizontal(src, width, first, last - first, h)
        }
        if (needV) img = vertical(img, height, Coeffs(v.ksize, vBounds, v.weights))
        return img
    }

    private fun horizontal(src: RgbImage, outW: Int, firstRow: Int, rows: Int, c: Coeffs): RgbImage {
        val out = ByteArray(outW * rows * 3)
        val p = src.pixels
        val half = 1 shl (PRECISION_BITS - 1)
        for (yy in 0 until rows) {
            val rowBase = (yy + firstRow) * src.width * 3
            for (xx in 0 until outW) {
                val xmin = c.bounds[xx * 2]
                val xmax = c.bounds[xx * 2 + 1]
                val kb = xx * c.ksize
                var s0 = half; var s1 = half; var s2 = half
                for (x in 0 until xmax) {
                    val w = c.weights[kb + x]
                    val i = rowBase + (x + xmin) * 3
                    s0 += (p[i].toInt() and 0xff) * w
                    s1 += (p[i + 1].toInt() and 0xff) * w
                    s2 += (p[i + 2].toInt() and 0xff) * w
                }
                val o = (yy * outW + xx) * 3
                out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2)
            }
        }
        return RgbImage(outW, rows, out)
    }

    private fun vertical(src: RgbImage, outH: Int, c: Coeffs): RgbImage {
        val w = src.width
        val out = ByteArray(w * outH * 3)
        val p = src.pixels
        val half = 1 shl (PRECISION_BITS - 1)
        for (yy in 0 until outH) {
            val ymin = c.bounds[yy * 2]
            val ymax = c.bounds[yy * 2 + 1]
            val kb = yy * c.ksize
            for (xx in 0 until w) {
                var s0 = half; var s1 = half; var s2 = half
                for (y in 0 until ymax) {
                    val k = c.weights[kb + y]
                    val i = ((y + ymin) * w + xx) * 3
                    s0 += (p[i].toInt() and 0xff) * k
                    s1 += (p[i + 1].toInt() and 0xff) * k
                    s2 += (p[i + 2].toInt() and 0xff) * k
                }
                val o = (yy * w + xx) * 3
                out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2)
            }
        }
        return RgbImage(w, outH, out)
    }
}
