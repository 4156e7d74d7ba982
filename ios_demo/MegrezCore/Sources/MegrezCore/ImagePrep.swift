import Foundation

/// An image that cannot be used, in words (megrez_mobile/processing/image.py's ImageError).
public struct ImageInputError: Error, LocalizedError, CustomStringConvertible {
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
    public var errorDescription: String? { message }
}

/// The source thumbnail and the grid slices of one image, each ready for one image input of the runner.
public final class SlicedImage {
    public let layout: SliceLayout
    public let source: RgbImage
    public let slices: [RgbImage]

    init(_ layout: SliceLayout, _ source: RgbImage, _ slices: [RgbImage]) {
        self.layout = layout
        self.source = source
        self.slices = slices
    }
}

/// megrez_mobile/processing/image.py `slice_image`: the same geometry, Pillow's bicubic, row-major crops.
public enum ImagePrep {
    /// Refuse before decoding (the decoder's bounds-only pass gives the size): decompression bombs.
    public static func checkSize(_ width: Int, _ height: Int, _ cfg: ImageConfig = ImageConfig()) throws {
        if width <= 0 || height <= 0 { throw ImageInputError("the image has no pixels (\(width)x\(height))") }
        if Int64(width) * Int64(height) > cfg.maxPixels {
            throw ImageInputError("the image is \(width)x\(height) = \(Int64(width) * Int64(height)) pixels, more " +
                                  "than the \(cfg.maxPixels) limit; downscale it first")
        }
    }

    /// `oriented`: decoded RGB with the EXIF orientation already applied (ExifOrientation.apply).
    public static func slice(_ oriented: RgbImage, _ cfg: ImageConfig = ImageConfig()) throws -> SlicedImage {
        let layout = try SliceGeometry.layout(oriented.width, oriented.height, cfg)
        let source = try PillowBicubic.resize(oriented, layout.source.width, layout.source.height)
        guard let grid = layout.grid, let cell = layout.slice else { return SlicedImage(layout, source, []) }
        let refined = try PillowBicubic.resize(oriented, cell.width * grid.cols, cell.height * grid.rows)
        var slices: [RgbImage] = []
        slices.reserveCapacity(grid.count)
        for r in 0..<grid.rows {
            for c in 0..<grid.cols {
                slices.append(try refined.crop(c * cell.width, r * cell.height, cell.width, cell.height))
            }
        }
        return SlicedImage(layout, source, slices)
    }
}
