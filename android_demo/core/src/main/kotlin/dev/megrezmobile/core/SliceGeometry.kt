package dev.megrezmobile.core

import kotlin.math.abs
import kotlin.math.ceil
import kotlin.math.ln
import kotlin.math.max
import kotlin.math.sqrt

data class Size(val width: Int, val height: Int)

data class SliceGrid(val cols: Int, val rows: Int) {
    val count: Int get() = cols * rows
}

/** Source thumbnail size, the slices' size (all equal) and the grid; no grid = the image is not sliced. */
data class SliceLayout(val source: Size, val slice: Size?, val grid: SliceGrid?) {
    val sliceCount: Int get() = grid?.count ?: 0
}

/**
 * MiniCPM-V 2.6 slicing geometry, a line-by-line port of megrez_mobile/processing/image.py `slice_sizes`
 * with the same double operations in the same order, so every size rounds the same way.
 */
object SliceGeometry {
    fun layout(width: Int, height: Int, cfg: ImageConfig = ImageConfig()): SliceLayout {
        require(width >= 1 && height >= 1) { "image size ${width}x$height has no pixels; pass a non-empty image" }
        val s = cfg.scaleResolution
        val grid = if (cfg.sliceMode) slicedGrid(width, height, cfg.maxSliceNums, s) else null
        if (grid == null) return SliceLayout(bestResize(width.toDouble(), height.toDouble(), cfg, true), null, null)
        val source = bestResize(width.toDouble(), height.toDouble(), cfg, false)
        val cellW = ensureDivide(width.toDouble(), grid.cols) / grid.cols.toDouble()
        val cellH = ensureDivide(height.toDouble(), grid.rows) / grid.rows.toDouble()
        return SliceLayout(source, bestResize(cellW, cellH, cfg, true), grid)
    }

    fun imageTokens(width: Int, height: Int, cfg: ImageConfig = ImageConfig()): Int =
        (1 + layout(width, height, cfg).sliceCount) * cfg.imageFeatureSize

    /** Python's round() is half-to-even: Math.rint. */
    private fun ensureDivide(length: Double, divisor: Int): Int =
        max(Math.rint(length / divisor).toInt() * divisor, divisor)

    private fun bestResize(w0: Double, h0: Double, cfg: ImageConfig, allowUpscale: Boolean): Size {
        var width = w0
        var height = h0
        val s = cfg.scaleResolution.toDouble()
        if (width * height > s * s || allowUpscale) {
            val r = width / height
            height = (s / sqrt(r)).toLong().toDouble()  // int() truncates toward zero
            width = (height * r).toLong().toDouble()
        }
        return capSliceSize(Size(ensureDivide(width, cfg.patchSize), ensureDivide(height, cfg.patchSize)), cfg)
    }

    /** image.py `cap_slice_size`: a side beyond what the exported vision program takes (only past 16:1) is scaled
     *  down to max_slice_side, the other side with it; grid and token count never change. */
    fun capSliceSize(size: Size, cfg: ImageConfig = ImageConfig()): Size {
        val longest = max(size.width, size.height)
        if (longest <= cfg.maxSliceSide) return size
        val scale = cfg.maxSliceSide.toDouble() / longest
        return Size(ensureDivide(size.width * scale, cfg.patchSize), ensureDivide(size.height * scale, cfg.patchSize))
    }

    private fun slicedGrid(width: Int, height: Int, maxSliceNums: Int, scaleResolution: Int): SliceGrid? {
        val logRatio = ln(width.toDouble() / height.toDouble())
        val ratio = width.toDouble() * height.toDouble() / (scaleResolution.toDouble() * scaleResolution.toDouble())
        val multiple = minOf(ceil(ratio).toInt(), maxSliceNums)
        if (multiple <= 1) return null
        val counts = listOf(multiple - 1, multiple, multiple + 1).filter { it != 1 && it <= maxSliceNums }
        var best: SliceGrid? = null
        var minError = Double.POSITIVE_INFINITY
        for (count in counts) {
            for (cols in 1..count) {
                if (count % cols != 0) continue
                val error = abs(logRatio - ln(cols.toDouble() / (count / cols).toDouble()))
                if (error < minError) { best = SliceGrid(cols, count / cols); minError = error }
            }
        }
        return best
    }
}
