import Foundation

public struct Size: Equatable {
    public let width: Int
    public let height: Int

    public init(_ width: Int, _ height: Int) {
        self.width = width
        self.height = height
    }
}

public struct SliceGrid: Equatable {
    public let cols: Int
    public let rows: Int

    public init(_ cols: Int, _ rows: Int) {
        self.cols = cols
        self.rows = rows
    }

    public var count: Int { cols * rows }
}

/// Source thumbnail size, the slices' size (all equal) and the grid; no grid = the image is not sliced.
public struct SliceLayout: Equatable {
    public let source: Size
    public let slice: Size?
    public let grid: SliceGrid?

    public var sliceCount: Int { grid?.count ?? 0 }
}

/// MiniCPM-V 2.6 slicing geometry, a line-by-line port of megrez_mobile/processing/image.py `slice_sizes`
/// with the same double operations in the same order, so every size rounds the same way.
public enum SliceGeometry {
    public static func layout(_ width: Int, _ height: Int, _ cfg: ImageConfig = ImageConfig()) throws -> SliceLayout {
        guard width >= 1 && height >= 1 else {
            throw ImageInputError("image size \(width)x\(height) has no pixels; pass a non-empty image")
        }
        let s = cfg.scaleResolution
        let grid = cfg.sliceMode ? slicedGrid(width, height, cfg.maxSliceNums, s) : nil
        guard let g = grid else {
            return SliceLayout(source: bestResize(Double(width), Double(height), cfg, true), slice: nil, grid: nil)
        }
        let source = bestResize(Double(width), Double(height), cfg, false)
        let cellW = Double(ensureDivide(Double(width), g.cols)) / Double(g.cols)
        let cellH = Double(ensureDivide(Double(height), g.rows)) / Double(g.rows)
        return SliceLayout(source: source, slice: bestResize(cellW, cellH, cfg, true), grid: g)
    }

    public static func imageTokens(_ width: Int, _ height: Int, _ cfg: ImageConfig = ImageConfig()) throws -> Int {
        try (1 + layout(width, height, cfg).sliceCount) * cfg.imageFeatureSize
    }

    /// Python's round() is half-to-even: .toNearestOrEven (Kotlin: Math.rint).
    private static func ensureDivide(_ length: Double, _ divisor: Int) -> Int {
        max(Int((length / Double(divisor)).rounded(.toNearestOrEven)) * divisor, divisor)
    }

    private static func bestResize(_ w0: Double, _ h0: Double, _ cfg: ImageConfig, _ allowUpscale: Bool) -> Size {
        var width = w0
        var height = h0
        let s = Double(cfg.scaleResolution)
        if width * height > s * s || allowUpscale {
            let r = width / height
            height = (s / r.squareRoot()).rounded(.towardZero)  // int() truncates toward zero
            width = (height * r).rounded(.towardZero)
        }
        return capSliceSize(Size(ensureDivide(width, cfg.patchSize), ensureDivide(height, cfg.patchSize)), cfg)
    }

    /// image.py `cap_slice_size`: a side beyond what the exported vision program takes (only past 16:1) is scaled
    /// down to max_slice_side, the other side with it; grid and token count never change.
    public static func capSliceSize(_ size: Size, _ cfg: ImageConfig = ImageConfig()) -> Size {
        let longest = max(size.width, size.height)
        if longest <= cfg.maxSliceSide { return size }
        let scale = Double(cfg.maxSliceSide) / Double(longest)
        return Size(ensureDivide(Double(size.width) * scale, cfg.patchSize),
                    ensureDivide(Double(size.height) * scale, cfg.patchSize))
    }

    private static func slicedGrid(_ width: Int, _ height: Int, _ maxSliceNums: Int, _ scaleResolution: Int) -> SliceGrid? {
        let logRatio = log(Double(width) / Double(height))
        let ratio = Double(width) * Double(height) / (Double(scaleResolution) * Double(scaleResolution))
        let multiple = min(Int(ratio.rounded(.up)), maxSliceNums)
        if multiple <= 1 { return nil }
        let counts = [multiple - 1, multiple, multiple + 1].filter { $0 != 1 && $0 <= maxSliceNums }
        var best: SliceGrid? = nil
        var minError = Double.infinity
        for count in counts {
            for cols in 1...count {
                if count % cols != 0 { continue }
                let error = abs(logRatio - log(Double(cols) / Double(count / cols)))
                if error < minError { best = SliceGrid(cols, count / cols); minError = error }
            }
        }
        return best
    }
}
