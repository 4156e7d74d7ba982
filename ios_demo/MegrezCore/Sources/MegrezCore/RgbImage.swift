import Foundation

/// 8-bit RGB pixels, row-major interleaved (HWC), the form every decoder can give us.
public final class RgbImage {
    public let width: Int
    public let height: Int
    public let pixels: [UInt8]

    /// `pixels`: width * height * 3 bytes; nil gives a black image. Throws when the sizes disagree.
    public init(_ width: Int, _ height: Int, _ pixels: [UInt8]? = nil) throws {
        guard width >= 1 && height >= 1 else { throw ImageInputError("image \(width)x\(height) has no pixels") }
        let data = pixels ?? [UInt8](repeating: 0, count: width * height * 3)
        guard data.count == width * height * 3 else {
            throw ImageInputError("expected \(width * height * 3) bytes for \(width)x\(height) RGB")
        }
        self.width = width
        self.height = height
        self.pixels = data
    }

    /// For sizes the core computed itself (never from outside data).
    init(checked width: Int, _ height: Int, _ pixels: [UInt8]) {
        precondition(width >= 1 && height >= 1 && pixels.count == width * height * 3)
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    public func get(_ x: Int, _ y: Int, _ c: Int) -> Int { Int(pixels[(y * width + x) * 3 + c]) }

    public func crop(_ left: Int, _ top: Int, _ w: Int, _ h: Int) throws -> RgbImage {
        guard left >= 0 && top >= 0 && w >= 1 && h >= 1 && left + w <= width && top + h <= height else {
            throw ImageInputError("crop outside the image")
        }
        var out = [UInt8](repeating: 0, count: w * h * 3)
        for y in 0..<h {
            let from = ((top + y) * width + left) * 3
            out.replaceSubrange(y * w * 3..<(y + 1) * w * 3, with: pixels[from..<from + w * 3])
        }
        return RgbImage(checked: w, h, out)
    }

    /// Planar uint8 [3, H, W]: what the runner's image input and the vision encoder take.
    public func toChw() -> [UInt8] {
        let plane = width * height
        var out = [UInt8](repeating: 0, count: 3 * plane)
        for i in 0..<plane {
            out[i] = pixels[i * 3]
            out[plane + i] = pixels[i * 3 + 1]
            out[2 * plane + i] = pixels[i * 3 + 2]
        }
        return out
    }

    /// From packed ARGB ints (Kotlin: Android Bitmap.getPixels): alpha dropped, as Pillow's convert("RGB") does
    /// (no compositing).
    public static func fromArgb(_ width: Int, _ height: Int, _ argb: [UInt32]) throws -> RgbImage {
        guard width >= 1 && height >= 1 && argb.count == width * height else {
            throw ImageInputError("expected \(width * height) ARGB pixels for \(width)x\(height)")
        }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for i in 0..<width * height {
            let p = argb[i]
            out[i * 3] = UInt8(truncatingIfNeeded: p >> 16)
            out[i * 3 + 1] = UInt8(truncatingIfNeeded: p >> 8)
            out[i * 3 + 2] = UInt8(truncatingIfNeeded: p)
        }
        return RgbImage(checked: width, height, out)
    }

    /// iOS only: from interleaved 8-bit RGBA (or RGBX) rows, e.g. a CGContext's buffer; alpha dropped.
    /// `bytesPerRow` may exceed width * 4 (row padding).
    public static func fromRgba(_ width: Int, _ height: Int, _ rgba: [UInt8], bytesPerRow: Int) throws -> RgbImage {
        guard width >= 1 && height >= 1 && bytesPerRow >= width * 4 && rgba.count >= bytesPerRow * (height - 1) + width * 4
        else { throw ImageInputError("RGBA buffer too small for \(width)x\(height)") }
        var out = [UInt8](repeating: 0, count: width * height * 3)
        for y in 0..<height {
            for x in 0..<width {
                let i = y * bytesPerRow + x * 4
                let o = (y * width + x) * 3
                out[o] = rgba[i]; out[o + 1] = rgba[i + 1]; out[o + 2] = rgba[i + 2]
            }
        }
        return RgbImage(checked: width, height, out)
    }
}
