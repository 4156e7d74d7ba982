import Foundation

/// Resize exactly as Pillow 13's `Image.resize(size, Image.BICUBIC)` does for 8-bit RGB (libImaging/Resample.c):
/// separable, two passes (horizontal first unless the height shrinks much more than the width); the kernel (a = -0.5)
/// widened by the downscale factor; each output pixel's weights normalised to sum 1, then turned into 22-bit fixed
/// point; accumulation in integers from a rounding bias of 1/2, clipped to 0..255 after each pass. Same operations,
/// same order: same bytes. (Swift's Int is 64-bit; the sums stay far below 2^31, as in C's 32-bit ints.)
public enum PillowBicubic {
    private static let PRECISION_BITS = 32 - 8 - 2

    private static func bicubic(_ x0: Double) -> Double {
        let a = -0.5
        let x = x0 < 0.0 ? -x0 : x0
        if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
        if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
        return 0.0
    }

    /// Per output pixel: first input index, tap count, and `ksize` fixed-point weights.
    private struct Coeffs {
        let ksize: Int
        let bounds: [Int]
        let weights: [Int]
    }

    private static func coeffs(_ inSize: Int, _ outSize: Int) -> Coeffs {
        let support0 = 2.0  // bicubic
        let scale = Double(inSize) / Double(outSize)
        let filterScale = scale < 1.0 ? 1.0 : scale
        let support = support0 * filterScale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var bounds = [Int](repeating: 0, count: outSize * 2)
        var weights = [Int](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            var ww = 0.0
            let ss = 1.0 / filterScale
            var xmin = Int(center - support + 0.5)  // C (int) truncates toward zero
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax -= xmin
            for i in 0..<ksize { k[i] = 0.0 }
            for x in 0..<xmax {
                let w = bicubic((Double(x + xmin) - center + 0.5) * ss)
                k[x] = w
                ww += w
            }
            for x in 0..<xmax where ww != 0.0 { k[x] /= ww }
            for x in 0..<ksize {
                let v = k[x] * Double(1 << PRECISION_BITS)
                weights[xx * ksize + x] = k[x] < 0 ? Int(-0.5 + v) : Int(0.5 + v)
            }
            bounds[xx * 2] = xmin
            bounds[xx * 2 + 1] = xmax
        }
        return Coeffs(ksize: ksize, bounds: bounds, weights: weights)
    }

    @inline(__always) private static func clip8(_ v: Int) -> UInt8 {
        if v >= (1 << PRECISION_BITS << 8) { return 255 }
        if v <= 0 { return 0 }
        return UInt8(truncatingIfNeeded: v >> PRECISION_BITS)
    }

    public static func resize(_ src: RgbImage, _ width: Int, _ height: Int) throws -> RgbImage {
        guard width >= 1 && height >= 1 else { throw ImageInputError("target size \(width)x\(height) has no pixels") }
        if width == src.width && height == src.height { return RgbImage(checked: width, height, src.pixels) }
        let needH = width != src.width
        let needV = height != src.height
        // Pillow 13: when the height shrinks by more than twice what the width shrinks, the vertical pass runs first
        // (the two orders round differently between the passes; older Pillow always went horizontal first).
        let dy = src.height - height
        let horizontalFirst = !(dy > 0 && dy > (src.width - width) * 2)
        let h = coeffs(src.width, width)
        let v = coeffs(src.height, height)
        if !horizontalFirst {
            let tall = needV ? vertical(src, height, v) : src
            return needH ? horizontal(tall, width, 0, height, h) : tall
        }
        var img = src
        var vBounds = v.bounds
        if needH {
            // Only the rows the vertical pass reads are resampled horizontally (as Pillow does).
            let first = v.bounds[0]
            let last = v.bounds[height * 2 - 2] + v.bounds[height * 2 - 1]
            for i in 0..<height { vBounds[i * 2] -= first }
            img = horizontal(src, width, first, last - first, h)
        }
        if needV { img = vertical(img, height, Coeffs(ksize: v.ksize, bounds: vBounds, weights: v.weights)) }
        return img
    }

    private static func horizontal(_ src: RgbImage, _ outW: Int, _ firstRow: Int, _ rows: Int, _ c: Coeffs) -> RgbImage {
        var out = [UInt8](repeating: 0, count: outW * rows * 3)
        let p = src.pixels
        let half = 1 << (PRECISION_BITS - 1)
        for yy in 0..<rows {
            let rowBase = (yy + firstRow) * src.width * 3
            for xx in 0..<outW {
                let xmin = c.bounds[xx * 2]
                let xmax = c.bounds[xx * 2 + 1]
                let kb = xx * c.ksize
                var s0 = half, s1 = half, s2 = half
                for x in 0..<xmax {
                    let w = c.weights[kb + x]
                    let i = rowBase + (x + xmin) * 3
                    s0 += Int(p[i]) * w
                    s1 += Int(p[i + 1]) * w
                    s2 += Int(p[i + 2]) * w
                }
                let o = (yy * outW + xx) * 3
                out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2)
            }
        }
        return RgbImage(checked: outW, rows, out)
    }

    private static func vertical(_ src: RgbImage, _ outH: Int, _ c: Coeffs) -> RgbImage {
        let w = src.width
        var out = [UInt8](repeating: 0, count: w * outH * 3)
        let p = src.pixels
        let half = 1 << (PRECISION_BITS - 1)
        for yy in 0..<outH {
            let ymin = c.bounds[yy * 2]
            let ymax = c.bounds[yy * 2 + 1]
            let kb = yy * c.ksize
            for xx in 0..<w {
                var s0 = half, s1 = half, s2 = half
                for y in 0..<ymax {
                    let k = c.weights[kb + y]
                    let i = ((y + ymin) * w + xx) * 3
                    s0 += Int(p[i]) * k
                    s1 += Int(p[i + 1]) * k
                    s2 += Int(p[i + 2]) * k
                }
                let o = (yy * w + xx) * 3
                out[o] = clip8(s0); out[o + 1] = clip8(s1); out[o + 2] = clip8(s2)
            }
        }
        return RgbImage(checked: w, outH, out)
    }
}
